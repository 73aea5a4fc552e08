"""The generated nets in real Caffe: parse, load, run, and equal an independent numpy RED-Net.

- every generated prototxt parses into caffe_pb2 and loads in caffe.Net (train/test nets
  on a tiny HDF5 database in a temporary tree);
- every deploy net runs in ``bin/caffe time``; output shape = input shape (37x53);
- Caffe's forward pass equals rednet.refnet (numpy) for RED10, RED30 and the variants;
- Deconvolution semantics, checked against scipy directly;
- red30-official equals the authors' released deploy net, read from the released file;
- the generated solver trains (two iterations) in ``bin/caffe train``.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest
from scipy import signal

from rednet import netgen, paths, refnet
from rednet.netgen import PRESETS, NetConfig
from rednet.tasks import TASKS

ROOT = paths.ROOT
CAFFE_BIN = ROOT / "bin" / "caffe"


def _bin_caffe(*args, cwd=ROOT, timeout=300):
    """Run the stock caffe binary with its normal log (the caffe fixture quiets pycaffe's)."""
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    return subprocess.run([str(CAFFE_BIN), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pb(caffe):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    return caffe_pb2, text_format


def _parse(pb, text, kind="net"):
    caffe_pb2, text_format = pb
    msg = caffe_pb2.NetParameter() if kind == "net" else caffe_pb2.SolverParameter()
    text_format.Parse(text, msg)
    return msg


def _reshaped(pb, text, h, w):
    """The deploy net text with its Input shape set to 1 x C x h x w."""
    net = _parse(pb, text)
    shape = net.layer[0].input_param.shape[0]
    assert net.layer[0].type == "Input" and len(shape.dim) == 4
    shape.dim[2], shape.dim[3] = h, w
    return pb[1].MessageToString(net)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _set_random(net, cfg, seed):
    shapes = {k: (v[0].data.shape, v[1].data.shape) for k, v in net.params.items()}
    params = refnet.random_params(cfg, np.random.default_rng(seed), shapes)
    for k, (w, b) in params.items():
        net.params[k][0].data[...] = w
        net.params[k][1].data[...] = b
    return params


# -- every file parses --------------------------------------------------------------------
def test_every_generated_file_parses_and_is_consistent(pb):
    files = netgen.all_files(ROOT)
    for p in files:
        assert p.is_file(), f"missing {paths.rel(p)}: run `make nets`"
    for name, cfg in PRESETS.items():
        deploy = _parse(pb, (ROOT / "gen" / name / "deploy.prototxt").read_text())
        assert deploy.layer[0].type == "Input" and deploy.layer[0].top == ["data"]
        assert list(deploy.layer[0].input_param.shape[0].dim) == [1, cfg.channels, netgen.DEPLOY_HW, netgen.DEPLOY_HW]
        assert deploy.layer[-1].top == ["output"]
        assert deploy.layer[-1].type == "Eltwise" and list(deploy.layer[-1].bottom) == ["data", "d15" if cfg.depth == 30 else f"d{cfg.n}"]
        dparams = {l.name: (l.type, l.convolution_param) for l in deploy.layer if l.type in ("Convolution", "Deconvolution")}
        assert all(not l.param for l in deploy.layer)  # no lr/filler in deploy: unmatched weights stay 0
        for task in TASKS:
            for phase in ("train", "test"):
                net = _parse(pb, (ROOT / "gen" / name / task / f"{phase}.prototxt").read_text())
                data = net.layer[0]
                assert data.type == "HDF5Data" and list(data.top) == ["data", "label"]
                assert data.hdf5_data_param.source == f"data/db/{task}/{'train' if phase == 'train' else 'val'}.txt"
                assert data.hdf5_data_param.batch_size == 16
                assert data.hdf5_data_param.shuffle == (phase == "train")
                loss = net.layer[-1]
                assert loss.type == "EuclideanLoss" and list(loss.bottom) == ["output", "label"]
                tparams = {l.name: (l.type, l.convolution_param) for l in net.layer if l.type in ("Convolution", "Deconvolution")}
                # same names, types, shapes as deploy (fillers aside): snapshots load by name
                strip = lambda cp: (cp.num_output, list(cp.kernel_size), list(cp.stride), list(cp.pad))  # noqa: E731
                assert {k: (t, strip(c)) for k, (t, c) in tparams.items()} == {k: (t, strip(c)) for k, (t, c) in dparams.items()}
                for l in net.layer:
                    if l.type in ("Convolution", "Deconvolution"):
                        assert [(q.lr_mult, q.decay_mult) for q in l.param] == [(1, 1), (pytest.approx(0.1), 0)]
                        assert l.convolution_param.weight_filler.type == "xavier"
                        assert l.convolution_param.bias_filler.type == "constant"
            s = _parse(pb, (ROOT / "solvers" / f"{name}_{task}.prototxt").read_text(), "solver")
            assert s.type == "Adam" and s.base_lr == pytest.approx(1e-4)
            assert s.momentum == pytest.approx(0.9) and s.momentum2 == pytest.approx(0.999)
            assert s.train_net == f"gen/{name}/{task}/train.prototxt" and (ROOT / s.train_net).is_file()
            assert s.test_net == [f"gen/{name}/{task}/test.prototxt"] and (ROOT / s.test_net[0]).is_file()
            assert s.snapshot_prefix == f"runs/{name}_{task}/snapshots/{name}_{task}"
            assert s.solver_mode == pb[0].SolverParameter.CPU and s.HasField("random_seed")
            assert s.test_iter and s.test_interval > 0 and s.max_iter > 0 and s.snapshot > 0 and s.lr_policy


def test_every_solver_field_is_commented():
    for p in sorted((ROOT / "solvers").glob("*.prototxt")):
        lines = p.read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line.startswith("#"):
                assert lines[i - 1].startswith("#"), f"{p.name}: field without a comment above: {line}"


# -- every net loads ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory):
    """A tiny HDF5 patch database (16 patches 1x1x8x8) and its list file."""
    d = tmp_path_factory.mktemp("db")
    rng = np.random.default_rng(0)
    label = rng.random((20, 1, 8, 8)).astype(np.float32)
    data = (label + 0.1 * rng.standard_normal(label.shape)).astype(np.float32)
    with h5py.File(d / "patches.h5", "w") as f:
        f["data"], f["label"] = data, label
    (d / "list.txt").write_text(str(d / "patches.h5") + "\n")
    return d / "list.txt"


@pytest.mark.parametrize("name", list(PRESETS))
def test_train_and_test_nets_load_and_compute_the_loss(caffe, pb, tmp_path, tiny_db, name):
    for task in TASKS:
        for phase in ("train", "test"):
            text = (ROOT / "gen" / name / task / f"{phase}.prototxt").read_text()
            text = re.sub(r'source: "[^"]*"', f'source: "{tiny_db}"', text)
            net = caffe.Net(_write(tmp_path, f"{task}_{phase}.prototxt", text),
                            caffe.TRAIN if phase == "train" else caffe.TEST)
            assert net.blobs["data"].data.shape == (16, 1, 8, 8)
    # the last one: the loss is sum((data + residual - label)^2) / (2 N)
    out = net.forward()
    b = net.blobs
    restored = b["data"].data + b[netgen.PRESETS[name].output_bottom()].data
    np.testing.assert_allclose(b["output"].data, restored, rtol=1e-5, atol=1e-6)
    want = ((restored - b["label"].data) ** 2).sum() / (2 * 16)
    assert out["loss"] == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("name", list(PRESETS))
def test_deploy_keeps_odd_input_shape(caffe, pb, tmp_path, name):
    text = _reshaped(pb, (ROOT / "gen" / name / "deploy.prototxt").read_text(), 37, 53)
    net = caffe.Net(_write(tmp_path, "deploy.prototxt", text), caffe.TEST)
    net.blobs["data"].data[...] = 0.5
    assert net.forward()["output"].shape == (1, 1, 37, 53)
    # reshaping in place works too (any size)
    net.blobs["data"].reshape(1, 1, 20, 11)
    net.reshape()
    assert net.forward()["output"].shape == (1, 1, 20, 11)


def test_every_deploy_runs_in_caffe_time(pb, tmp_path):
    for name in PRESETS:
        text = _reshaped(pb, (ROOT / "gen" / name / "deploy.prototxt").read_text(), 17, 23)
        model = _write(tmp_path, f"{name}.prototxt", text)
        r = _bin_caffe("time", "-model", model, "-iterations", "1")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "Average Forward pass" in r.stderr and "input_sum\tforward" in r.stderr.replace(" ", "")


STRIDED = NetConfig("red10-s2", depth=10, width=8, stride=2, down=2)


def test_stride_variant_sizes(caffe, pb, tmp_path):
    """Sizes the net supports come out unchanged; others get a clear error (Caffe would abort)."""
    text = netgen.render_deploy(STRIDED, (36, 52))
    net = caffe.Net(_write(tmp_path, "ok.prototxt", text), caffe.TEST)
    assert net.blobs["c2"].data.shape[2:] == (9, 13)
    assert net.forward()["output"].shape == (1, 1, 36, 52)
    with pytest.raises(netgen.UserError, match="input height=37 .* multiple of 4"):
        netgen.render_deploy(STRIDED, (37, 53))
    # ...and the check is needed: on 37x53 the decoder comes back at 40x56; stock Caffe's
    # Eltwise shape CHECK (restored by tools/caffe_build/patches) stops the binary there.
    r = _bin_caffe("time", "-model", _write(tmp_path, "bad.prototxt", _reshaped(pb, text, 37, 53)),
                   "-iterations", "1")
    assert r.returncode != 0
    assert "Check failed" in r.stderr and "eltwise_layer" in r.stderr


# -- forward pass equals the independent numpy implementation ----------------------------
VARIANTS = {
    "red10": dataclasses.replace(PRESETS["red10"], width=8),
    "red30": dataclasses.replace(PRESETS["red30"], width=8),
    "red30-official-structure": dataclasses.replace(PRESETS["red30-official"], width=6),
    "stride2x2": STRIDED,
    "stride3": NetConfig("s3", depth=8, width=6, stride=3, down=1, channels=3),
    "block4": NetConfig("b4", depth=20, width=6, skip=4),
    "he-sequential": NetConfig("he", depth=12, width=6, skip=3, shortcuts="sequential"),
    "conv-decoder": NetConfig("cd", depth=10, width=6, decoder="conv"),
    "no-input-residual": NetConfig("nr", depth=10, width=6, input_residual=False),
    # Sec. 2.1.1's 5-layer fully convolutional net (odd depth), and He blocks on an odd one
    "conv-only-5": NetConfig("fcn5", depth=5, width=6, skip=None, decoder="conv"),
    "conv-only-7-he": NetConfig("fcn7he", depth=7, width=6, skip=2, shortcuts="sequential", decoder="conv"),
    # Figure 3(a): 5 stride-3 convolutions to 1x1 and back, no input residual, without/with skips
    "fig3a": NetConfig("f3a", depth=10, width=6, skip=None, stride=3, down=5, input_residual=False),
    "fig3a-skip": NetConfig("f3as", depth=10, width=6, skip=2, stride=3, down=5, input_residual=False),
}
_SIZES = {1: (37, 53), 3: (27, 18), 4: (36, 24), 243: (243, 243)}


def _caffe_and_numpy(caffe, tmp_path, cfg, h, w, seed=1):
    net = caffe.Net(_write(tmp_path, f"{cfg.name}.prototxt", netgen.render_deploy(cfg, (h, w))), caffe.TEST)
    params = _set_random(net, cfg, seed)
    x = np.random.default_rng(seed + 100).random((1, cfg.channels, h, w)).astype(np.float32)
    net.blobs["data"].data[...] = x
    out = net.forward()["output"][0].copy()
    return net, params, x, out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_equals_numpy_reference(caffe, tmp_path, variant):
    cfg = VARIANTS[variant]
    h, w = _SIZES[cfg.factor]
    net, params, x, out = _caffe_and_numpy(caffe, tmp_path, cfg, h, w)
    ref = refnet.forward(cfg, params, x[0].astype(np.float64))
    assert out.shape == x.shape[1:]
    residual = ref["output"] - x[0]
    assert np.abs(residual).max() > 0.05            # the net does something
    np.testing.assert_allclose(out, ref["output"], atol=1e-4, rtol=0)
    # intermediate blobs too (skip sums read post-ReLU conv features)
    for blob, val in ref.items():
        if blob in net.blobs and blob not in ("data", "output"):
            top = blob + "_sum" if blob + "_sum" in net.blobs else blob
            np.testing.assert_allclose(net.blobs[top].data[0], val, atol=1e-4, rtol=0, err_msg=blob)


@pytest.mark.parametrize("name", list(PRESETS))
def test_committed_deploy_equals_numpy_reference(caffe, pb, tmp_path, name):
    """The committed gen/<net>/deploy.prototxt itself, at full width, on a small odd image."""
    cfg = PRESETS[name]
    text = _reshaped(pb, (ROOT / "gen" / name / "deploy.prototxt").read_text(), 9, 7)
    net = caffe.Net(_write(tmp_path, "deploy.prototxt", text), caffe.TEST)
    params = _set_random(net, cfg, 5)
    x = np.random.default_rng(6).random((1, 1, 9, 7)).astype(np.float32)
    net.blobs["data"].data[...] = x
    out = net.forward()["output"][0]
    ref = refnet.forward(cfg, params, x[0].astype(np.float64))["output"]
    assert np.abs(ref - x[0]).max() > 0.05
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_reference_comparison_detects_wrong_wiring(caffe, tmp_path):
    """The comparison can fail: the same weights through other wirings give other outputs."""
    cfg = VARIANTS["red30"]
    _, params, x, out = _caffe_and_numpy(caffe, tmp_path, cfg, 19, 21)
    for wrong in (dataclasses.replace(cfg, skip=None), dataclasses.replace(cfg, skip=4),
                  dataclasses.replace(cfg, input_residual=False)):
        ref = refnet.forward(wrong, params, x[0].astype(np.float64))
        assert np.abs(out - ref["output"]).max() > 1e-2


def test_deconvolution_is_transposed_convolution(caffe, tmp_path):
    """Caffe Deconvolution: weights (C_in, C_out, kh, kw); stride 1 pad 1 = conv with flipped kernel."""
    net = caffe.Net(_write(tmp_path, "d.prototxt", """
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 7 dim: 9 } } }
        layer { name: "deconv" type: "Deconvolution" bottom: "data" top: "y"
                convolution_param { num_output: 3 kernel_size: 3 stride: 1 pad: 1 } }
        layer { name: "deconv2" type: "Deconvolution" bottom: "data" top: "z"
                convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 } }
    """), caffe.TEST)
    assert net.params["deconv"][0].data.shape == (2, 3, 3, 3)   # (C_in, C_out, kh, kw)
    rng = np.random.default_rng(3)
    W = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    W2 = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    net.params["deconv"][0].data[...], net.params["deconv"][1].data[...] = W, b
    net.params["deconv2"][0].data[...], net.params["deconv2"][1].data[...] = W2, b
    x = rng.standard_normal((2, 7, 9)).astype(np.float32)
    net.blobs["data"].data[0] = x
    net.forward()
    y = net.blobs["y"].data[0]
    # true 2-D convolution (scipy flips the kernel) = correlation with the flipped kernel
    want = np.stack([sum(signal.convolve2d(x[c], W[c, o], mode="same") for c in range(2)) + b[o]
                     for o in range(3)])
    np.testing.assert_allclose(y, want, atol=1e-5)
    not_flipped = np.stack([sum(signal.correlate2d(x[c], W[c, o], mode="same") for c in range(2)) + b[o]
                            for o in range(3)])
    assert np.abs(y - not_flipped).max() > 0.1
    np.testing.assert_allclose(y, refnet.deconv2d(x, W, b, 1, 1), atol=1e-5)
    # strided: out = s*(H-1) + k - 2p = 2H exactly with k = s + 2, p = 1
    z = net.blobs["z"].data[0]
    assert z.shape == (3, 14, 18)
    full = np.stack([sum(signal.convolve2d(np.kron(x[c], [[1, 0], [0, 0]])[:13, :17], W2[c, o], mode="full")
                         for c in range(2)) for o in range(3)])
    np.testing.assert_allclose(z, full[:, 1:15, 1:19] + b[:, None, None], atol=1e-4)
    np.testing.assert_allclose(z, refnet.deconv2d(x, W2, b, 2, 1), atol=1e-4)


# -- red30-official is the released net, read from the released file itself -------------
def _released_at(pb, path, h, w):
    """The released file's text with only its input size changed to 1 x 1 x h x w (it is
    written for 256 x 256, with the legacy ``input_dim`` header)."""
    net = _parse(pb, path.read_text())
    assert list(net.input) == ["data"] and len(net.input_dim) == 4, "legacy input header expected"
    untouched = pb[1].MessageToString(net)
    net.input_dim[2], net.input_dim[3] = h, w
    text = pb[1].MessageToString(net)
    changed = [(a, b) for a, b in zip(untouched.splitlines(), text.splitlines()) if a != b]
    assert len(changed) == 2 and all(a.startswith("input_dim") for a, _ in changed)
    return text


def test_red30_official_equals_the_released_net(caffe, pb, tmp_path, released_ch1):
    """Random weights in the released net load by name into gen/red30-official/deploy.prototxt,
    whose output is then the released output plus the input (netforward.m adds the input
    outside the net); the numpy reference net gives the same from the same weights."""
    h, w = 13, 11
    released = caffe.Net(_write(tmp_path, "released.prototxt", _released_at(pb, released_ch1, h, w)), caffe.TEST)
    names = [f"conv{j}" for j in range(1, 16)] + [f"deconv{i}" for i in range(1, 16)]
    assert list(released.params) == names
    rng = np.random.default_rng(7)
    for name, blobs in released.params.items():
        fan = np.prod(blobs[0].data.shape[1:])
        blobs[0].data[...] = rng.standard_normal(blobs[0].data.shape) / np.sqrt(fan)
        blobs[1].data[...] = rng.uniform(-0.1, 0.1, blobs[1].data.shape)
    weights = str(tmp_path / "released.caffemodel")
    released.save(weights)

    deploy = _reshaped(pb, (ROOT / "gen" / "red30-official" / "deploy.prototxt").read_text(), h, w)
    ours = caffe.Net(_write(tmp_path, "ours.prototxt", deploy), caffe.TEST, weights=weights)
    assert list(ours.params) == names                            # every layer matched, both ways
    for name in names:
        for a, b in zip(ours.params[name], released.params[name]):
            np.testing.assert_array_equal(a.data, b.data)       # really loaded (deploy has no fillers)
    x = np.random.default_rng(8).random((1, 1, h, w)).astype(np.float32)
    released.blobs["data"].data[...] = x
    ours.blobs["data"].data[...] = x
    r = released.forward()[released.outputs[0]].copy()
    o = ours.forward()["output"].copy()
    assert np.abs(r).max() > 0.05                               # the net does something
    np.testing.assert_allclose(o, r + x, atol=1e-5, rtol=0)
    params = {n: (released.params[n][0].data.copy(), released.params[n][1].data.copy()) for n in names}
    ref = refnet.forward(PRESETS["red30-official"], params, x[0].astype(np.float64))["output"]
    np.testing.assert_allclose(ref, r[0] + x[0], atol=1e-4, rtol=0)


# -- the solver trains in the stock binary --------------------------------------------------
def test_generated_solver_trains_in_bin_caffe(tmp_path):
    """Copy red10's files for one task into a tmp tree (paths as generated, relative to it),
    add a tiny database, and run two iterations of `bin/caffe train` there."""
    task = "denoise-s30"
    for rel in (f"gen/red10/{task}/train.prototxt", f"gen/red10/{task}/test.prototxt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    solver = (ROOT / "solvers" / f"red10_{task}.prototxt").read_text()
    solver = re.sub(r"max_iter: \d+", "max_iter: 2", solver)
    solver = re.sub(r"test_interval: \d+", "test_interval: 2", solver)
    solver = re.sub(r"test_iter: \d+", "test_iter: 1", solver)
    (tmp_path / "solvers").mkdir()
    (tmp_path / "runs" / f"red10_{task}" / "snapshots").mkdir(parents=True)  # rednet train makes it
    (tmp_path / "solvers" / "s.prototxt").write_text(solver)
    db = tmp_path / "data" / "db" / task
    db.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        label = rng.random((32, 1, 10, 10)).astype(np.float32)
        with h5py.File(db / f"{split}.h5", "w") as f:
            f["data"] = (label + 0.12 * rng.standard_normal(label.shape)).astype(np.float32)
            f["label"] = label
        (db / f"{split}.txt").write_text(f"data/db/{task}/{split}.h5\n")
    r = _bin_caffe("train", "-solver", "solvers/s.prototxt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Solving red10" in r.stderr and "Optimization Done" in r.stderr
    assert re.search(r"Test net output #0: loss = [0-9.e+-]+", r.stderr)
    snap = tmp_path / "runs" / f"red10_{task}" / "snapshots" / f"red10_{task}_iter_2.caffemodel"
    assert snap.is_file() and (snap.with_suffix(".solverstate")).is_file()
