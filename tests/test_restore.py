"""Restoration with pycaffe: real nets, real weights files, real images.

The nets here are small RED-Nets written as literal prototxts (conv/deconv 3x3, a mirrored
skip, the input added at the end, final top ``output``: the layout of gen/<net>/deploy.prototxt)
with random weights saved to a real ``.caffemodel`` by pycaffe.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def red_prototxt(depth: int = 4, width: int = 8, channels: int = 1, h: int = 32, w: int = 32,
                 name: str = "tiny") -> str:
    """A RED-Net deploy prototxt: depth/2 convs, depth/2 deconvs, skips every 2 layers, residual."""
    half = depth // 2
    L = [f'name: "{name}"',
         f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: {channels} dim: {h} dim: {w} }} }} }}']
    bottom = "data"
    for i in range(1, half + 1):
        L.append(f'layer {{ name: "conv{i}" type: "Convolution" bottom: "{bottom}" top: "c{i}" '
                 f'convolution_param {{ num_output: {width} kernel_size: 3 pad: 1 }} }}')
        L.append(f'layer {{ name: "relu_c{i}" type: "ReLU" bottom: "c{i}" top: "c{i}" }}')
        bottom = f"c{i}"
    for j in range(1, half + 1):
        last = j == half
        out = channels if last else width
        L.append(f'layer {{ name: "deconv{j}" type: "Deconvolution" bottom: "{bottom}" top: "d{j}" '
                 f'convolution_param {{ num_output: {out} kernel_size: 3 pad: 1 }} }}')
        top = f"d{j}"
        mirror = half - j    # conv feature map of the same size on the other side
        if not last and j % 2 == 1 and mirror >= 1:
            L.append(f'layer {{ name: "skip{j}" type: "Eltwise" bottom: "d{j}" bottom: "c{mirror}" '
                     f'top: "s{j}" eltwise_param {{ operation: SUM }} }}')
            top = f"s{j}"
        if not last:
            L.append(f'layer {{ name: "relu_d{j}" type: "ReLU" bottom: "{top}" top: "{top}" }}')
        bottom = top
    L.append(f'layer {{ name: "residual" type: "Eltwise" bottom: "{bottom}" bottom: "data" top: "output" '
             f'eltwise_param {{ operation: SUM }} }}')
    return "\n".join(L) + "\n"


def make_model(folder: Path, caffe, depth: int = 4, width: int = 8, channels: int = 1,
               seed: int = 0, scale: float = 0.05) -> tuple[Path, Path]:
    """Write deploy.prototxt and a random-weight model.caffemodel into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    deploy = folder / "deploy.prototxt"
    deploy.write_text(red_prototxt(depth, width, channels))
    net = caffe.Net(str(deploy), caffe.TEST)
    rng = np.random.default_rng(seed)
    for name, blobs in net.params.items():
        blobs[0].data[...] = rng.normal(0, scale, blobs[0].data.shape)
        if len(blobs) > 1:
            blobs[1].data[...] = rng.normal(0, 0.01, blobs[1].data.shape)
    weights = folder / "model.caffemodel"
    net.save(str(weights))
    return deploy, weights


def make_zoo_model(root: Path, name: str, net: str, task: str, deploy: Path, weights: Path) -> Path:
    """A zoo folder ``root/name/`` (deploy net, weights, a card with every key) for tests."""
    import shutil

    from rednet import zoo
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(deploy, folder / "deploy.prototxt")
    shutil.copyfile(weights, folder / f"{name}.caffemodel")
    card = {k: None for k in zoo.CARD_KEYS}
    card.update(name=name, caffemodel=f"{name}.caffemodel", sha1=zoo.sha1_file(folder / f"{name}.caffemodel"),
                net=net, task=task, iterations=1, batch=16, patches_seen=16, cells=[])
    zoo.write_card(folder, card, "test model\n")
    return folder


def empty_zoo(tmp_path: Path, monkeypatch) -> Path:
    """An empty models/ and runs/ under ``tmp_path`` that the model registry (rednet.models:
    restore, tables, demo) searches instead of the repository's; returns the models/ folder."""
    from rednet import models as registry
    models, runs = tmp_path / "models", tmp_path / "runs"
    models.mkdir()
    runs.mkdir()
    monkeypatch.setattr(registry, "MODELS", models)
    monkeypatch.setattr(registry, "RUNS", runs)
    return models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, caffe):
    return make_model(tmp_path_factory.mktemp("tiny"), caffe, depth=6, width=8)


def test_receptive_radius_counts_layers(tmp_path, caffe):
    from rednet.restore import receptive_radius
    for depth in (4, 6, 10):
        p = tmp_path / f"d{depth}.prototxt"
        p.write_text(red_prototxt(depth))
        assert receptive_radius(p) == depth
    p = tmp_path / "strided.prototxt"
    p.write_text(red_prototxt(4).replace("kernel_size: 3 pad: 1 }", "kernel_size: 3 pad: 1 stride: 2 }", 1))
    assert receptive_radius(p) is None


def test_any_size_and_output_differs_from_input(tiny):
    from rednet.restore import Restorer
    r = Restorer(*tiny)
    rng = np.random.default_rng(1)
    for h, w in ((37, 53), (20, 11)):
        x = rng.random((h, w), dtype=np.float32)
        y = r.forward(x)
        assert y.shape == x.shape
        assert np.abs(y - x).max() > 1e-3     # the random net does something


def test_self_ensemble_is_mean_of_8_mapped_back(tiny):
    """restore(ensemble) equals the mean of the 8 forward passes, each mapped back by hand."""
    from rednet.restore import Restorer
    r = Restorer(*tiny)
    x = np.random.default_rng(2).random((29, 41), dtype=np.float32)
    by_hand = []
    for flip in (False, True):
        xf = np.fliplr(x) if flip else x
        for k in range(4):
            y = r.forward(np.ascontiguousarray(np.rot90(xf, k)))
            y = np.rot90(y, -k)
            by_hand.append(np.fliplr(y) if flip else y)
    want = np.mean(by_hand, axis=0)
    got = r.restore(x, ensemble=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # and the 8 passes really differ (so the test would catch a wrong mapping)
    assert max(np.abs(b - by_hand[0]).max() for b in by_hand) > 1e-4
    assert np.abs(got - r.restore(x, ensemble=False)).max() > 1e-5


def test_tiling_equals_untiled(tiny):
    from rednet.restore import Restorer
    x = np.random.default_rng(3).random((70, 57), dtype=np.float32)
    whole = Restorer(*tiny, tile=0).forward(x)
    for t in (16, 23, 40):
        tiled = Restorer(*tiny, tile=t).forward(x)
        np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    # a margin smaller than the receptive radius is visibly wrong: the overlap matters
    bad = Restorer(*tiny, tile=16)
    bad.radius = 2
    assert np.abs(bad.forward(x) - whole).max() > 1e-4


def test_memory_budget_picks_tiles(tiny):
    from rednet.restore import Restorer
    r = Restorer(*tiny, max_memory_mb=0.2)
    t = r.tile_size(300, 300)
    assert t < 300
    assert (t + 2 * r.radius) ** 2 * r._bytes_per_pixel <= 0.2 * 2 ** 20 * 1.5 or t == 16


def test_mismatched_caffemodel_names_layers(tmp_path, caffe):
    from rednet.errors import UserError
    from rednet.restore import Restorer
    deploy, _ = make_model(tmp_path / "a", caffe, depth=6, width=8)
    _, other_depth = make_model(tmp_path / "b", caffe, depth=4, width=8)
    with pytest.raises(UserError, match=r"missing layers conv3, deconv3"):
        Restorer(deploy, other_depth)
    _, other_width = make_model(tmp_path / "c", caffe, depth=6, width=4)
    with pytest.raises(UserError, match=r"mis-shaped conv1 \(file 4x1x3x3\+4, net 8x1x3x3\+8\)"):
        Restorer(deploy, other_width)
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\xff\xfe not a protobuf \x00\x01")
    with pytest.raises(UserError, match="junk.caffemodel"):
        Restorer(deploy, junk)


def _run_cli(*args, cwd=ROOT):
    env = dict(os.environ, GLOG_minloglevel="2")
    return subprocess.run([str(ROOT / "bin" / "python"), "-m", "rednet", "restore", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def set5(datasets_dir):
    return datasets_dir / "Set5"


def test_cli_denoise_real_image(tmp_path, tiny, datasets_dir):
    from rednet.restore import Restorer, read_image
    deploy, weights = tiny
    src = datasets_dir / "Set12" / "01.png"
    out = tmp_path / "out.png"
    p = _run_cli("--model", weights, "--task", "denoise", "--sigma", 30, "--no-ensemble", src, out)
    assert p.returncode == 0, p.stderr
    got = read_image(out)
    clean = read_image(src)
    assert got.shape == clean.shape and got.dtype == np.uint8
    want = Restorer(deploy, weights).forward(clean.astype(np.float32) / 255)
    want = np.clip(np.floor(np.clip(want, 0, 1) * 255 + 0.5), 0, 255).astype(np.uint8)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3   # float rounding ties only


def test_cli_sr_colour_folder(tmp_path, tiny, set5):
    """A folder of RGB low-resolution images -> folder of x2 RGB images (Y by the net)."""
    from rednet import matlab
    from rednet.restore import read_image
    _, weights = tiny
    src = tmp_path / "lr"
    src.mkdir()
    from PIL import Image
    hr = read_image(set5 / "bird.png")
    lr = matlab.imresize(hr, 0.25)
    Image.fromarray(lr).save(src / "bird_lr.png")
    outdir = tmp_path / "sr"
    p = _run_cli("--model", weights, "--task", "sr", "--scale", 2, src, outdir)
    assert p.returncode == 0, p.stderr
    got = read_image(outdir / "bird_lr.png")
    assert got.shape == (lr.shape[0] * 2, lr.shape[1] * 2, 3)
    # chroma is the bicubic one (up to uint8 rounding through ycbcr2rgb)
    bic = matlab.rgb2ycbcr(matlab.imresize(lr.astype(np.float64) / 255, 2.0))
    ycc = matlab.rgb2ycbcr(got.astype(np.float64) / 255)
    assert np.abs(ycc[..., 1:] - bic[..., 1:]).mean() < 2 / 255
    assert np.abs(ycc[..., 0] - bic[..., 0]).mean() > 1 / 255     # Y went through the net


@pytest.mark.parametrize("case", ["undecodable", "colour_for_gray", "gray_for_colour",
                                  "no_model", "task_mismatch", "mismatched_weights"])
def test_cli_bad_input(tmp_path, caffe, tiny, set5, case):
    deploy, weights = tiny
    out = tmp_path / "out.png"
    if case == "undecodable":
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        p = _run_cli("--model", weights, "--task", "denoise", "--sigma", 30, bad, out)
        msg = "bad.png: cannot decode image"
    elif case == "colour_for_gray":
        p = _run_cli("--model", weights, "--task", "denoise", "--sigma", 30, set5 / "bird.png", out)
        msg = "colour image, but the model denoises gray"
    elif case == "gray_for_colour":
        d3, w3 = make_model(tmp_path / "rgb", caffe, depth=4, width=4, channels=3)
        from PIL import Image
        Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / "g.png")
        p = _run_cli("--model", w3, "--task", "denoise", "--sigma", 30, tmp_path / "g.png", out)
        msg = "grayscale image, but the model expects colour"
    elif case == "no_model":
        # (σ 37 lies within the mixed model's span 10-70, which restores it)
        p = _run_cli("--task", "denoise", "--sigma", 90, set5 / "bird.png", out)
        msg = "no model for task denoise-s90"
    elif case == "task_mismatch":
        run = tmp_path / "runs" / "r1"
        (run / "snapshots").mkdir(parents=True)
        (run / "deploy.prototxt").write_text(deploy.read_text())
        (run / "snapshots" / "x_iter_10.caffemodel").write_bytes(weights.read_bytes())
        (run / "run.json").write_text('{"net": "tiny", "task": "denoise-s30"}')
        p = _run_cli("--model", run, "--task", "denoise", "--sigma", 50, set5 / "bird.png", out)
        msg = "trained for denoise-s30, not for denoise-s50"
    else:
        d2, _ = make_model(tmp_path / "deep", caffe, depth=8, width=8)
        (tmp_path / "deep" / "model.caffemodel").write_bytes(weights.read_bytes())
        p = _run_cli("--model", tmp_path / "deep" / "model.caffemodel", "--task", "denoise",
                     "--sigma", 30, set5 / "bird.png", out)
        msg = "missing layers conv4, deconv4"
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], p.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".out.png.tmp.*"))


def test_run_folder_takes_newest_snapshot(tmp_path, caffe):
    from rednet.models import from_run
    run = tmp_path / "r"
    (run / "snapshots").mkdir(parents=True)
    for n in (100, 2000, 300):
        (run / "snapshots" / f"red10_iter_{n}.caffemodel").write_bytes(b"x")
    (run / "deploy.prototxt").write_text(red_prototxt(4))
    (run / "run.json").write_text('{"net": "red10", "task": "sr-x3"}')
    spec = from_run(run)
    assert spec.weights.name == "red10_iter_2000.caffemodel"
    assert (spec.net, spec.task) == ("red10", "sr-x3")


@pytest.mark.parametrize("net", ["red10", pytest.param("red30", marks=pytest.mark.slow)])
def test_tiling_exact_on_generated_deploy_net(tmp_path, caffe, net):
    """The project's own deploy net (gen/<net>/deploy.prototxt) with random weights: the
    receptive radius read from it is its depth, and tiles with that margin equal the whole."""
    from rednet.restore import Restorer, receptive_radius
    deploy = ROOT / "gen" / net / "deploy.prototxt"
    if not deploy.is_file():
        pytest.skip(f"{deploy} not generated (make nets)")
    assert receptive_radius(deploy) == int(net[3:])
    n = caffe.Net(str(deploy), caffe.TEST)
    rng = np.random.default_rng(4)
    for blobs in n.params.values():
        blobs[0].data[...] = rng.normal(0, 0.05, blobs[0].data.shape)
        blobs[1].data[...] = rng.normal(0, 0.01, blobs[1].data.shape)
    weights = tmp_path / f"{net}.caffemodel"
    n.save(str(weights))
    x = rng.random((83, 71), dtype=np.float32)
    whole = Restorer(deploy, weights, tile=0).forward(x)
    tiled = Restorer(deploy, weights, tile=32).forward(x)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    assert np.abs(whole - x).max() > 1e-3


def test_input_output_pairs(tmp_path):
    from rednet.errors import UserError
    from rednet.restore import _pairs
    a, b = tmp_path / "a.png", tmp_path / "b.bmp"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    assert _pairs([str(a)], str(tmp_path / "o.png")) == [(a, tmp_path / "o.png")]
    out = tmp_path / "outdir"
    assert _pairs([str(a), str(b)], str(out)) == [(a, out / "a.png"), (b, out / "b.png")]
    assert _pairs([str(tmp_path)], str(out)) == [(a, out / "a.png"), (b, out / "b.png")]
    with pytest.raises(UserError, match="no such image file"):
        _pairs([str(tmp_path / "nope.png")], str(out))
    with pytest.raises(UserError, match="output suffix"):
        _pairs([str(a)], str(tmp_path / "o.txt"))
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(UserError, match="several inputs .*need an output folder"):
        _pairs([str(a), str(b)], str(tmp_path / "file.png"))
    # an image-suffixed OUT for several inputs is not turned into a folder
    with pytest.raises(UserError, match="several inputs"):
        _pairs([str(a), str(b)], str(tmp_path / "single.png"))
    assert not (tmp_path / "single.png").exists()
    # never overwrite an input, never write one output twice
    with pytest.raises(UserError, match="would overwrite the input"):
        _pairs([str(a)], str(a))
    with pytest.raises(UserError, match="would overwrite the input"):
        _pairs([str(tmp_path)], str(tmp_path))
    c = tmp_path / "sub" / "a.jpg"
    c.parent.mkdir()
    c.write_bytes(b"x")
    with pytest.raises(UserError, match="would both be written"):
        _pairs([str(a), str(c)], str(out))


def test_restore_never_overwrites_its_input(tiny, tmp_path):
    """`restore in.png in.png` and two inputs with OUT=single.png: one line, exit 2, nothing written."""
    from PIL import Image
    deploy, weights = tiny
    src = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 24)) * 255).astype(np.uint8)).save(src)
    before = src.read_bytes()
    py = str(Path(__file__).resolve().parents[1] / "bin" / "python")
    base = [py, "-m", "rednet", "restore", "--task", "denoise", "--sigma", "30", "--model", str(weights),
            "--no-ensemble"]
    r = subprocess.run(base + [str(src), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "would overwrite the input" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and src.read_bytes() == before
    other = tmp_path / "in2.png"
    other.write_bytes(before)
    r = subprocess.run(base + [str(src), str(other), str(tmp_path / "single.png")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "need an output folder" in r.stderr
    assert not (tmp_path / "single.png").exists()


# --------------------------------------------------------------------------- batched ensemble
#: runs in `bin/python` under CAFFE=stock or CAFFE=fast: the shipped RED10 on a noisy, odd,
#: non-square crop of a real image, the ensemble as it runs now (orientations of one shape in
#: one batch) and as before (one orientation at a time, mapped back, summed in order), whole
#: and in tiles; the input shape of every forward pass of the batched run is recorded
ENSEMBLE_WORKER = r'''
import json, sys
import numpy as np
import caffe
from rednet.restore import ORIENTATIONS, Restorer, orient, read_image, unorient
spec = json.loads(sys.argv[1])
shapes = []
plain_forward = caffe.Net.forward
def spy(self, *a, **k):
    shapes.append([int(d) for d in self.blobs[self.inputs[0]].data.shape])
    return plain_forward(self, *a, **k)
caffe.Net.forward = spy
clean = read_image(spec["image"])[37:82, 101:168].astype(np.float64)      # 45 x 67
x = ((clean + np.random.default_rng(7).normal(0, 30, clean.shape)) / 255).astype(np.float32)
res = {}
for case, tile in (("whole", None), ("tiled", 16)):
    r = Restorer(spec["deploy"], spec["weights"], tile=tile, progress=False)
    acc = None
    for flip, k in ORIENTATIONS:
        y = unorient(r.forward(np.ascontiguousarray(orient(x, flip, k))), flip, k).astype(np.float64)
        acc = y if acc is None else acc + y
    res[case + "_one_at_a_time"] = (acc / len(ORIENTATIONS)).astype(np.float32)
    del shapes[:]
    res[case] = r.restore(x, ensemble=True)
    res[case + "_shapes"] = np.array(shapes)
res["x"] = x
res["threads"] = np.array(getattr(r, "threads", 0))
np.savez(spec["out"], **res)
'''


@pytest.mark.parametrize("build", ["stock", pytest.param("fast", marks=pytest.mark.skipif(
    not (ROOT / ".caffe-fast" / "env").is_file(), reason="the batch-parallel build .caffe-fast/ is absent"))])
def test_batched_ensemble_equals_one_orientation_at_a_time(build, tmp_path, datasets_dir):
    """The shipped RED10 (models/red10_denoise-s30) on a noisy 45x67 crop of Set12/01.png, in
    each Caffe build (the fast one with 2 OpenMP threads): the ensemble runs the 4 orientations
    of 45x67 in one batch and the 4 of 67x45 in another (whole image; in 16-pixel tiles, 4 tiles
    a pass), and equals the 8 one-at-a-time passes to 1e-5."""
    model = ROOT / "models" / "red10_denoise-s30"
    script = tmp_path / "worker.py"
    script.write_text(ENSEMBLE_WORKER)
    spec = dict(deploy=str(model / "deploy.prototxt"), weights=str(model / "red10_denoise-s30.caffemodel"),
                image=str(datasets_dir / "Set12" / "01.png"), out=str(tmp_path / "r"))
    env = dict(os.environ, CAFFE=build, OMP_NUM_THREADS="2", GLOG_minloglevel="2")
    p = subprocess.run([str(ROOT / "bin" / "python"), str(script), json.dumps(spec)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    with np.load(str(tmp_path / "r.npz")) as z:
        r = {k: z[k] for k in z.files}
    assert [list(s) for s in r["whole_shapes"]] == [[4, 1, 45, 67], [4, 1, 67, 45]]
    assert int(r["threads"]) == (2 if build == "fast" else 1)
    tiled = r["tiled_shapes"]
    assert len(tiled) == 2 * 3 * 5 and (tiled[:, 0] == 4).all() and tiled[:, 2:].max() <= 16 + 2 * 10
    for case in ("whole", "tiled"):
        got, want = r[case], r[case + "_one_at_a_time"]
        assert got.shape == want.shape == (45, 67)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"{build} {case}")
    np.testing.assert_allclose(r["tiled"], r["whole"], atol=1e-5, rtol=0)
    assert np.abs(r["whole"] - r["x"]).mean() > 0.02      # the net does denoise


def test_ensemble_batches_respect_the_memory_budget(tiny):
    """A budget that holds 2 images of 29x41 but not 3: batches of 2 (the same result as one
    at a time); a budget under one image: tiles, one image at a time. No pass exceeds it."""
    from rednet.restore import Restorer
    x = np.random.default_rng(5).random((29, 41), dtype=np.float32)
    one = Restorer(*tiny, batch=1)
    want = one.restore(x)
    assert {p[0] for p in one.passes} == {1}
    probe = Restorer(*tiny)
    px = 29 * 41
    mb = px * (probe.bytes_per_pixel(2) + probe.bytes_per_pixel(3)) / 2 / 2 ** 20
    for budget, batch in ((mb, 2), (0.8 * px * probe.bytes_per_pixel(1) / 2 ** 20, 1)):
        r = Restorer(*tiny, max_memory_mb=budget, progress=False)
        got = r.restore(x)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        assert {p[0] for p in r.passes} == {batch}
        for n, c, h, w in r.passes:
            assert h * w * r.bytes_per_pixel(n) <= budget * 2 ** 20
        whole = all((h, w) in ((29, 41), (41, 29)) for n, c, h, w in r.passes)
        assert whole == (batch == 2)       # the whole image 2 at a time; tiles one at a time
    assert probe.bytes_per_pixel(3) > probe.bytes_per_pixel(2) > probe.bytes_per_pixel(1)


def test_a_pass_after_a_larger_batch_stays_in_the_budget(tiny):
    """Caffe keeps each blob at its largest size: a large one-image pass after a batch of 8
    small ones would hold the batch's blobs and the large image's buffers at once, over the
    budget; the net is recreated before that pass instead (same result). This is the im2col
    accounting (stock, or the GEMM path of the fast build), whose buffers do not grow with the
    batch; under oneDNN every buffer scales with it and the case does not arise."""
    from rednet.restore import Restorer
    r = Restorer(*tiny, max_memory_mb=1.0, progress=False)
    r.dnnl = False
    budget = 2 ** 20
    small = int(np.sqrt(budget / r.bytes_per_pixel(8)))
    large = int(np.sqrt(budget / r.bytes_per_pixel(1)))
    rng = np.random.default_rng(6)
    r.restore(rng.random((small, small), dtype=np.float32))
    assert r.passes == [(8, 1, small, small)]
    held = 4 * sum(r._held.values())
    assert held <= budget
    net = r.net
    big = rng.random((large, large), dtype=np.float32)
    got = r.forward(big)
    assert r.net is not net and 4 * sum(r._held.values()) <= budget
    np.testing.assert_allclose(got, Restorer(*tiny, tile=0).forward(big), atol=1e-6, rtol=0)


#: runs in `bin/python` under a given build: a 10-layer, 64-map RED-Net (random weights) run
#: on a batch of images; prints the peak memory the forward pass added (VmHWM, after a tiny
#: warm-up pass) beside Restorer's prediction
MEMORY_WORKER = r"""
import json, sys
import numpy as np
import caffe
from rednet.restore import Restorer
def hwm():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
deploy, weights, side, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = Restorer(deploy, weights, progress=False)
blob = r.net.blobs[r.input]
blob.reshape(n, 1, 8, 8); r.net.reshape(); r.net.forward()
before = hwm()
blob.reshape(n, 1, side, side); r.net.reshape()
blob.data[...] = np.random.default_rng(0).random((n, 1, side, side))
r.net.forward()
print(json.dumps({"measured": hwm() - before, "predicted": side * side * r.bytes_per_pixel(n),
                  "dnnl": getattr(r, "dnnl", None), "threads": r.threads}))
"""


@pytest.mark.parametrize("build,dnnl", [("stock", None), *[pytest.param("fast", d, marks=pytest.mark.skipif(
    not (ROOT / ".caffe-fast" / "env").is_file(), reason="the batch-parallel build .caffe-fast/ is absent"))
    for d in ("1", "0")]])
def test_memory_prediction_bounds_the_measured_peak(build, dnnl, tmp_path, caffe):
    """The memory Restorer plans with (bytes_per_pixel) is an upper bound of what a forward pass
    of 2 images of 128x128 really adds to the process's peak, and within 1.6x of it, in each
    build: stock (im2col buffers, one per layer), fast with oneDNN (no im2col buffer: blobs
    and oneDNN's scratch only; counting the buffers there overstated it about 7x, so RED30
    restores were cut into 9 tiles where 1 fits) and fast with REDNET_DNNL=0 (per-thread
    im2col buffers)."""
    deploy, weights = make_model(tmp_path, caffe, depth=10, width=64)
    script = tmp_path / "memory.py"
    script.write_text(MEMORY_WORKER)
    env = dict(os.environ, CAFFE=build, OMP_NUM_THREADS="2", GLOG_minloglevel="2")
    env.pop("REDNET_DNNL", None)
    if dnnl is not None:
        env["REDNET_DNNL"] = dnnl
    p = subprocess.run([str(ROOT / "bin" / "python"), str(script), str(deploy), str(weights), "128", "2"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["dnnl"] == (dnnl == "1")
    assert r["measured"] > 2 * 128 * 128 * 4 * 64          # at least one 64-map blob of the batch
    assert r["measured"] <= r["predicted"] <= 1.6 * r["measured"], r


# --------------------------------------------------------------------------- one order of preference
def test_restore_tables_and_demo_prefer_the_same_model(tmp_path, monkeypatch, caffe):
    """The registry's one order: red30 before red30-official before red20/red10, models/ before
    runs/, then the newest file; restore (no --model), tables (a RED30 column) and the demo's
    zoo comparison (rednet.models.pick_model) all take what it takes."""
    import os

    from rednet import models as registry
    from rednet import restore, tables
    from rednet.tasks import get_task
    models = empty_zoo(tmp_path, monkeypatch)
    deploy, weights = make_model(tmp_path / "made", caffe)
    for name, net in (("a_official", "red30-official"), ("b_red30", "red30"), ("c_red10", "red10")):
        make_zoo_model(models, name, net, "denoise-s30", deploy, weights)
    run = registry.RUNS / "r30"                       # a newer red30 in runs/: models/ still wins
    (run / "snapshots").mkdir(parents=True)
    (run / "snapshots" / "red30_denoise-s30_iter_5.caffemodel").write_bytes(weights.read_bytes())
    (run / "deploy.prototxt").write_text(deploy.read_text())
    (run / "run.json").write_text('{"net": "red30", "task": "denoise-s30"}')
    by_restore = restore.find_model(None, get_task("denoise-s30"))
    assert by_restore.net == "red30" and by_restore.source == "models/" and by_restore.weights.parent.name == "b_red30"
    cfg = tables.EvalConfig(out=tmp_path / "results")
    by_tables, _ = tables.find_red_model("RED30", tables.TABLES[1], 30, cfg)       # Table 1, sigma 30
    assert by_tables.weights == by_restore.weights
    assert registry.pick_model("denoise-s30", nets=cfg.red_nets["RED30"]).weights == by_restore.weights
    assert registry.pick_model("denoise-s30", "red10", zoo_only=True).weights.parent.name == "c_red10"
    # without the zoo's red30, the run's red30 is preferred to the zoo's red30-official
    import shutil
    shutil.rmtree(models / "b_red30")
    assert restore.find_model(None, get_task("denoise-s30")).source == "run r30"
    # among runs of one net, the newest weights file
    run2 = registry.RUNS / "r30b"
    shutil.copytree(run, run2)
    w2 = run2 / "snapshots" / "red30_denoise-s30_iter_5.caffemodel"
    os.utime(w2, (w2.stat().st_mtime + 10, w2.stat().st_mtime + 10))
    assert restore.find_model(None, get_task("denoise-s30")).source == "run r30b"
