"""The fast Caffe build (.caffe-fast/, tools/caffe_build/patches/fast/) against stock.

Each build runs in its own `bin/python` subprocess (CAFFE=stock / CAFFE=fast), on the same
nets, weights and inputs:

* the fast build runs every preset's Convolution and Deconvolution by oneDNN (its verbose
  log lists one forward convolution primitive per layer: a stride-1 Deconvolution's forward
  runs as the equal Convolution with flipped, transposed weights), and REDNET_DNNL=0 turns
  that off;
* every preset's deploy forward on an odd size (a batch of 3 images of 13x11) agrees with
  stock to 1e-5 (max |fast - stock| / max |stock|): oneDNN's direct convolution sums each
  output's 576 products (64 maps x 3x3) in another order than OpenBLAS's GEMM over the
  im2col matrix, and a float32 rounding difference of a few 1e-7 per layer grows through
  the 10-30 layers of a net with He-random weights (measured: 0.9e-6 to 2.0e-6);
* with REDNET_DNNL=0 (the batch-parallel GEMM path) the same forward is bitwise that of
  stock run with one OpenBLAS thread: each image goes through the same GEMM calls (same
  shapes, same OpenBLAS kernel, one thread each), so each output element is the same sum in
  the same order, whichever OpenMP thread computes it. Stock with two OpenBLAS threads is
  not always bitwise stock with one: with OpenBLAS's Haswell and Zen kernels
  (OPENBLAS_CORETYPE=Haswell, as the AMD EPYC machines here set it) red10 differs by
  1.36e-6 between the two, with the SkylakeX kernel not;
* one training step's parameter gradients (the deploy net plus a Euclidean loss) agree to
  1e-5 (max |fast - stock| / max |stock| per blob), and a second backward pass doubles
  them (the layers add to the parameter diffs, as Caffe's solver expects);
* a synthetic net with what the presets lack (groups, 1x1, strides, no bias) likewise;
* 300 Adam iterations of RED10 (width 64, depth 10, 16x16 patches) on the same tiny
  database: every logged training loss within 1 %;
* with the activations kept in oneDNN's layout between layers (patch 0004), every blob's data
  and diff after a RED30 training step reads as in stock (pycaffe sees Caffe's NCHW), and a
  RED10 and a RED30 step run no reorder of a 64-channel activation and are bitwise those of
  REDNET_DNNL_LAYOUT=0 (activations reordered into NCHW at every layer);
* the fast build resumes a SIGKILLed run bitwise (within the fast build, fixed threads);
* once oneDNN runs, OpenBLAS runs single-threaded unless OPENBLAS_NUM_THREADS is set.

Skipped with the reason where the fast build is absent; CI builds it (`make setup`).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / "bin" / "python")
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytestmark = [
    pytest.mark.skipif(not (ROOT / ".caffe" / "env").is_file(), reason="Caffe not set up (make setup)"),
    pytest.mark.skipif(not (ROOT / ".caffe-fast" / "env").is_file(),
                       reason="the batch-parallel build .caffe-fast/ is absent (make setup builds it)"),
]

PRESETS = ("red10", "red20", "red30", "red30-official")
THREADS = "2"        # OpenMP threads of the fast build in these tests (the batch is split in 2)

WORKER = r'''
import json, re, sys
import numpy as np
import caffe
caffe.set_mode_cpu()
spec = json.loads(sys.argv[1])
text = open(spec["net"]).read()
N, C, H, W = spec["shape"]
probe = caffe.Net(spec["net"], caffe.TEST)
out_name = probe.outputs[0]
probe.blobs["data"].reshape(N, C, H, W)
probe.reshape()
out_shape = probe.blobs[out_name].data.shape
out_dims = " ".join("dim: %d" % d for d in out_shape)
del probe
if spec["grads"]:
    text += """
layer { name: "target" type: "Input" top: "target" input_param { shape { %s } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "%s" bottom: "target" top: "loss" }
""" % (out_dims, out_name)
# the data Input at the size asked, so that the net is set up at it from the start
text = re.sub(r"(input_param\s*\{\s*shape\s*\{)[^}]*\}", r"\g<1> dim: %d dim: %d dim: %d dim: %d }" % (N, C, H, W),
              text, count=1)
net_path = spec["out"] + ".prototxt"
open(net_path, "w").write(text)
net = caffe.Net(net_path, caffe.TRAIN if spec["grads"] else caffe.TEST)
assert net.blobs["data"].data.shape == (N, C, H, W)
rng = np.random.default_rng(spec.get("seed", 0))
for name, blobs in net.params.items():
    w = blobs[0].data
    w[...] = rng.normal(0, np.sqrt(2.0 / np.prod(w.shape[1:])), w.shape)
    for b in list(blobs)[1:]:
        b.data[...] = rng.normal(0, 0.01, b.data.shape)
net.blobs["data"].data[...] = rng.uniform(0, 1, (N, C, H, W))
res = {}
if spec["grads"]:
    net.blobs["target"].data[...] = rng.uniform(0, 1, net.blobs["target"].data.shape)
    for blobs in net.params.values():
        for b in blobs:
            b.diff[...] = 0
    net.forward()
    net.backward()
    res["loss"] = np.array(net.blobs["loss"].data)
    for name, blobs in net.params.items():
        for i, b in enumerate(blobs):
            res["%s/%d" % (name, i)] = np.array(b.diff)
    # Caffe's layers add to the parameter diffs: a second backward doubles them
    net.backward()
    for name, blobs in net.params.items():
        for i, b in enumerate(blobs):
            g = res["%s/%d" % (name, i)]
            assert np.abs(b.diff - 2 * g).max() <= 1e-5 * np.abs(g).max(), ("diff not accumulated", name, i)
else:
    net.forward()
# the end of the computation in the log (oneDNN's verbose lines go through C's stdio)
import ctypes, os
ctypes.CDLL(None).fflush(None)
os.write(1, b"\nCOMPUTED\n")
res["output"] = np.array(net.blobs[out_name].data)
if spec.get("all_blobs"):
    for name, b in net.blobs.items():
        res["data:" + name] = np.array(b.data)
        if spec["grads"]:
            res["diff:" + name] = np.array(b.diff)
np.savez(spec["out"], **res)
'''

# what the presets lack: groups, a 1x1 convolution, strides 2, no bias, a strided deconvolution
SYNTHETIC = """name: "synthetic"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 16 dim: 16 } } }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 group: 2 } }
layer { name: "r1" type: "ReLU" bottom: "c1" top: "c1" }
layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param { num_output: 12 kernel_size: 3 stride: 2 pad: 1 bias_term: false } }
layer { name: "c3" type: "Convolution" bottom: "c2" top: "c3" convolution_param { num_output: 6 kernel_size: 1 } }
layer { name: "d1" type: "Deconvolution" bottom: "c3" top: "d1"
  convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 group: 2 } }
layer { name: "d2" type: "Deconvolution" bottom: "d1" top: "d2" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "d2" bottom: "data" top: "output" }
"""


def env_for(build: str, **extra) -> dict:
    # (OPENBLAS_CORETYPE, where the machine sets it, is passed on as it is)
    return {**os.environ, "CAFFE": build, "OMP_NUM_THREADS": THREADS, "OPENBLAS_NUM_THREADS": "2", **extra}


def run_worker(build: str, net: Path, shape, grads: bool, out: Path, all_blobs: bool = False,
               log: list | None = None, **extra) -> dict:
    """The worker's arrays (with all_blobs: every blob's data, and diff with grads, as pycaffe
    reads them); its stdout up to the end of the computation is appended to log."""
    script = out.parent / "worker.py"
    script.write_text(WORKER)
    spec = dict(net=str(net), shape=list(shape), grads=grads, out=str(out), all_blobs=all_blobs)
    r = subprocess.run([PY, str(script), json.dumps(spec)], cwd=ROOT, env=env_for(build, **extra),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{build}: {r.stderr[-2000:]}"
    if log is not None:
        log.append(r.stdout[:r.stdout.index("\nCOMPUTED\n")])
    with np.load(str(out) + ".npz") as z:
        return {k: z[k] for k in z.files}


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (a blob's scale, not each element's: gradients cross zero)."""
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a.astype(np.float64) - b))) / (scale if scale > 0 else 1.0)


def compare(net: Path, shape, grads: bool, tmp: Path, stock_env: dict | None = None,
            all_blobs: bool = False, **fast_env) -> tuple[dict, dict]:
    (tmp / "stock").mkdir(parents=True)
    (tmp / "fast").mkdir()
    s = run_worker("stock", net, shape, grads, tmp / "stock" / "r", all_blobs, **(stock_env or {}))
    f = run_worker("fast", net, shape, grads, tmp / "fast" / "r", all_blobs, **fast_env)
    assert s.keys() == f.keys()
    return s, f


# --------------------------------------------------------------------------------------------
def test_the_two_builds_are_selected_by_CAFFE():
    out = {}
    for build in ("stock", "fast"):
        r = subprocess.run([PY, "-c", "import caffe, os; from rednet import paths; print(paths.caffe_build(), caffe.__file__)"],
                           cwd=ROOT, env=dict(os.environ, CAFFE=build), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out[build] = r.stdout.split()
        assert out[build][0] == build
    assert ".caffe-fast" in out["fast"][1] and ".caffe-fast" not in out["stock"][1]
    # unset: the fast build, where it is built (as here)
    env = {k: v for k, v in os.environ.items() if k != "CAFFE"}
    r = subprocess.run([PY, "-c", "import caffe; print(caffe.__file__)"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and ".caffe-fast" in r.stdout, r.stderr
    r = subprocess.run([str(ROOT / "bin" / "caffe"), "--version"], env=dict(os.environ, CAFFE="nonsense"),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "CAFFE=stock or CAFFE=fast" in r.stderr


FORWARD_TOLERANCE = 1e-5   # oneDNN against OpenBLAS's GEMM, relative; measured 0.9e-6 to 2.0e-6


@pytest.mark.parametrize("preset", PRESETS)
def test_deploy_forward_equals_stock(preset, tmp_path):
    s, f = compare(ROOT / "gen" / preset / "deploy.prototxt", (3, 1, 13, 11), False, tmp_path)
    assert s["output"].shape == (3, 1, 13, 11)
    assert np.isfinite(s["output"]).all() and np.abs(s["output"]).max() > 0
    err = rel_err(f["output"], s["output"])
    assert err <= FORWARD_TOLERANCE, f"{preset}: forward differs from stock by {err:.2e} (relative)"


@pytest.mark.parametrize("preset", ("red10", "red30"))
def test_deploy_forward_without_onednn_is_bitwise_stock(preset, tmp_path):
    # stock with one OpenBLAS thread: the batch-parallel path runs each image's GEMMs on one
    # (a threaded GEMM of OpenBLAS's Haswell kernels rounds differently from its 1-thread one)
    s, f = compare(ROOT / "gen" / preset / "deploy.prototxt", (3, 1, 13, 11), False, tmp_path,
                   stock_env=dict(OPENBLAS_NUM_THREADS="1"), REDNET_DNNL="0")
    err = rel_err(f["output"], s["output"])
    assert np.array_equal(f["output"], s["output"]), f"{preset}: forward differs from stock by {err:.2e} (relative)"


def _primitives(preset: str, **extra) -> tuple[list[str], list[str]]:
    """The preset's Convolution/Deconvolution layers, and the oneDNN primitives that one
    forward pass of its deploy net in the fast build executes (ONEDNN_VERBOSE=1)."""
    code = ("import caffe; caffe.set_mode_cpu(); from caffe.proto import caffe_pb2; "
            "from google.protobuf import text_format; import sys; p = sys.argv[1]; "
            "n = caffe_pb2.NetParameter(); text_format.Merge(open(p).read(), n); "
            "print('LAYERS', *[l.type for l in n.layer if l.type in ('Convolution', 'Deconvolution')]); "
            "net = caffe.Net(p, caffe.TEST); net.blobs['data'].reshape(2, 1, 12, 10); net.reshape(); "
            "print('FORWARD', flush=True); net.forward()")
    r = subprocess.run([PY, "-c", code, str(ROOT / "gen" / preset / "deploy.prototxt")], cwd=ROOT,
                       env=env_for("fast", ONEDNN_VERBOSE="1", **extra), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    layers = next(line.split()[1:] for line in r.stdout.splitlines() if line.startswith("LAYERS"))
    after = r.stdout[r.stdout.index("FORWARD"):]
    execs = [tuple(line.split(",")[3:6:2]) for line in after.splitlines()
             if line.startswith("onednn_verbose,exec,cpu,") and ",reorder," not in line]
    return layers, execs


@pytest.mark.parametrize("preset", ("red10", "red30-official"))
def test_fast_build_runs_convolutions_by_onednn(preset):
    layers, execs = _primitives(preset)
    # every layer one forward convolution: the presets' Deconvolutions have stride 1, and
    # their forward runs as a convolution with the flipped, transposed weights
    assert "Deconvolution" in layers
    assert execs == [("convolution", "forward_training")] * len(layers), (layers, execs)
    layers, execs = _primitives(preset, REDNET_DNNL="0")
    assert execs == [], execs


BLAS_THREADS = r'''
import ctypes, sys
import caffe
caffe.set_mode_cpu()
blas = ctypes.CDLL("libopenblas.so.0")    # the OpenBLAS that libcaffe loaded
before = blas.openblas_get_num_threads()
net = caffe.Net(sys.argv[1], caffe.TEST)
net.blobs["data"].reshape(1, 1, 12, 10)
net.reshape()
net.forward()
print(before, blas.openblas_get_num_threads())
'''


def _blas_threads(build: str, **env) -> tuple[int, int]:
    """OpenBLAS's thread count in a pycaffe process before and after one RED10 forward."""
    base = {k: v for k, v in env_for(build).items() if k != "OPENBLAS_NUM_THREADS"}
    r = subprocess.run([PY, "-c", BLAS_THREADS, str(ROOT / "gen" / "red10" / "deploy.prototxt")], cwd=ROOT,
                       env=dict(base, **env), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    before, after = map(int, r.stdout.split()[-2:])
    return before, after


def test_onednn_makes_openblas_single_threaded_unless_asked():
    """Once oneDNN runs, the fast build's OpenBLAS runs in the calling thread (its idle threads
    would spin beside oneDNN's); OPENBLAS_NUM_THREADS, stock and REDNET_DNNL=0 keep the count."""
    before, after = _blas_threads("fast")
    if before < 2:
        pytest.skip("OpenBLAS runs one thread here anyway")
    assert after == 1
    assert _blas_threads("fast", OPENBLAS_NUM_THREADS="2") == (2, 2)
    assert _blas_threads("fast", REDNET_DNNL="0") == (before, before)
    assert _blas_threads("stock") == (before, before)


@pytest.mark.parametrize("preset", ("red10", "red30"))
def test_training_gradients_equal_stock(preset, tmp_path):
    s, f = compare(ROOT / "gen" / preset / "deploy.prototxt", (5, 1, 13, 11), True, tmp_path)
    assert float(f["loss"]) == pytest.approx(float(s["loss"]), rel=1e-6)
    worst = max((rel_err(f[k], s[k]), k) for k in s if "/" in k)
    assert worst[0] <= 1e-5, f"{preset}: gradient of {worst[1]} differs from stock by {worst[0]:.2e}"
    assert all(np.abs(s[k]).max() > 0 for k in s if "/" in k), "a parameter got no gradient"


def test_groups_1x1_strides_and_no_bias_equal_stock(tmp_path):
    net = tmp_path / "synthetic.prototxt"
    net.write_text(SYNTHETIC)
    for grads in (False, True):
        s, f = compare(net, (3, 2, 16, 16), grads, tmp_path / str(grads))
        for k in s:
            err = rel_err(f[k], s[k])
            if "/" in k:
                assert err <= 1e-5, f"gradient {k}: {err:.2e}"
            else:
                assert err <= FORWARD_TOLERANCE, f"{k} (grads={grads}): {err:.2e}"


# ------------------------------------------------- activations in oneDNN's layout (patch 0004)
def test_every_blob_reads_as_in_stock(tmp_path):
    """The fast build leaves the activations between RED30's convolutions in oneDNN's blocked
    layout; pycaffe's blob.data and blob.diff still show Caffe's NCHW: every blob's data and
    diff after a training step's forward and backward agrees with stock's."""
    s, f = compare(ROOT / "gen" / "red30" / "deploy.prototxt", (3, 1, 13, 11), True, tmp_path, all_blobs=True)
    blobs = [k for k in s if k.startswith(("data:", "diff:"))]
    assert len(blobs) > 60 and any("split" in k for k in blobs)
    worst = max((rel_err(f[k], s[k]), k) for k in blobs)
    assert worst[0] <= FORWARD_TOLERANCE, f"blob {worst[1]} differs from stock by {worst[0]:.2e}"


def _activation_reorders(log: str, shape: str) -> int:
    """oneDNN reorders of a tensor of shape NxCxHxW ('3x64x13x11') in a verbose log."""
    return sum(1 for line in log.splitlines()
               if line.startswith("onednn_verbose,exec,cpu,reorder,") and line.split(",")[-2] == shape)


@pytest.mark.parametrize("preset", ("red10", "red30"))
def test_layouts_kept_between_layers_change_no_bit(preset, tmp_path):
    """With the activations kept in oneDNN's layout (the default) a training step reorders no
    64-channel activation and every value is bitwise that of REDNET_DNNL_LAYOUT=0 (reordered
    into NCHW and back at every layer, as before): losses, parameter gradients, every blob's
    data and diff."""
    runs = {}
    for mode in ("kept", "nchw"):
        (tmp_path / mode).mkdir()
        log: list = []
        extra = dict(REDNET_DNNL_LAYOUT="0") if mode == "nchw" else {}
        arrays = run_worker("fast", ROOT / "gen" / preset / "deploy.prototxt", (3, 1, 13, 11), True,
                            tmp_path / mode / "r", True, log, ONEDNN_VERBOSE="1", **extra)
        runs[mode] = (arrays, _activation_reorders(log[0], "3x64x13x11"))
    (kept, kept_reorders), (nchw, nchw_reorders) = runs["kept"], runs["nchw"]
    assert nchw_reorders > 0, "without the layouts kept, each layer reorders its activations"
    assert kept_reorders == 0, f"{kept_reorders} reorders of 64-channel activations in one step"
    assert kept.keys() == nchw.keys()
    differ = [k for k in kept if not np.array_equal(kept[k], nchw[k])]
    assert differ == [], f"not bitwise equal: {differ[:5]}"


def test_the_bench_reads_onednns_reorder_time_per_pass(tmp_path):
    """`make bench`'s layout column from a real ONEDNN_VERBOSE log of `bin/caffe time`: the same
    convolution primitives in both modes, activation reorders (batch-first 4-D) only where the
    activations go back to NCHW at each layer, the weights' reorders in both."""
    sys.path.insert(0, str(ROOT / "tools"))
    from rednet import bench
    text = (ROOT / "gen" / "red10" / "deploy.prototxt").read_text()
    text = text.replace('name: "red10"\n', 'name: "red10"\nforce_backward: true\n', 1)
    text = text.replace("dim: 1 dim: 1 dim: 64 dim: 64", "dim: 2 dim: 1 dim: 20 dim: 20")
    assert "force_backward" in text and "dim: 2 dim: 1 dim: 20" in text
    net = tmp_path / "net.prototxt"
    net.write_text(text)
    prof = {}
    for mode, extra in (("kept", {}), ("nchw", bench.LAYOUT_OFF)):
        out = bench.run_caffe(["time", "-model", str(net), "-iterations", "1"], tmp_path / f"{mode}.log",
                              env=env_for("fast", ONEDNN_VERBOSE="1", **extra))
        prof[mode] = bench.dnnl_profile(out, passes=2, batch=2)
    kept, nchw = prof["kept"], prof["nchw"]
    # RED10, one pass: 10 forward, 5+5 backward-data-or-weights primitives at least, equal in both
    assert kept["kinds"]["convolution"]["calls"] == nchw["kinds"]["convolution"]["calls"] >= 10
    assert kept["kinds"]["deconvolution"]["calls"] == nchw["kinds"]["deconvolution"]["calls"] >= 5
    assert nchw["reorder_activations"]["calls"] > kept["reorder_activations"]["calls"] + 20
    assert nchw["reorder_activations"]["ms"] > 0 and kept["reorder_other"]["calls"] > 0
    total = sum(k["calls"] for k in nchw["kinds"].values())
    assert total == pytest.approx(sum(1 for l in out.splitlines() if l.startswith("onednn_verbose,exec,cpu,")) / 2)


# --------------------------------------------------------------------------------------------
def _toy(folder: Path, max_iter: int, snapshot: int, width=64, depth=10, lr=1e-3) -> dict:
    """tests/test_train.py's toy run; by default RED10's width and depth."""
    from test_train import write_toy
    return write_toy(folder, max_iter=max_iter, snapshot=snapshot, width=width, depth=depth,
                     test_interval=max_iter // 2, lr=lr)


def _train(toy: dict, runs: Path, run: str, build: str, *extra) -> subprocess.CompletedProcess:
    from test_train import train_args
    return subprocess.run([PY, "-m", "rednet", *train_args(toy, runs, run, *extra)], cwd=ROOT,
                          env=env_for(build), capture_output=True, text=True, timeout=3600)


@pytest.mark.timeout(3600)
def test_red10_training_losses_agree_with_stock(tmp_path):
    """300 iterations of RED10 (the real width and depth, 16x16 patches, batch 16, Adam at
    1e-4) on the same data in both builds: every logged training loss within 1 % up to
    iteration 250, and the mean of every 20 consecutive logged losses within 1 % over all 300.

    (oneDNN sums in another order than stock's GEMM: one step's gradients differ by ~1e-6
    relative, and training magnifies that as it would any change of float order, e.g. another
    BLAS kernel.  Measured on the Intel Xeon, 2026-12-01, with the deconvolutions' forward as
    flipped convolutions: within 0.64 % up to iteration 250 (iteration 230), single losses then
    up to 2.0 % apart (iteration 289) while the 20-iteration means stay within 0.61 %; before
    that change 0.45 %, 2.4 % and 0.63 %.  At the toy's 1e-3 this net's loss jumps from 132 to 287 at
    iteration 4 and the builds part within 40 iterations.)"""
    from rednet import logparse
    toy = _toy(tmp_path / "toy", 300, 300, lr=1e-4)
    runs = tmp_path / "runs"
    losses = {}
    for build in ("stock", "fast"):
        r = _train(toy, runs, build, build)
        assert r.returncode == 0, r.stderr[-2000:]
        info = json.loads((runs / build / "run.json").read_text())
        assert info["caffe"]["build"] == build
        rows = logparse.parse_log(runs / build / "train.log").sorted_rows()
        losses[build] = {row.iteration: row.train_loss for row in rows if row.train_loss is not None}
    s, f = losses["stock"], losses["fast"]
    assert s.keys() == f.keys() and len(s) >= 300
    worst = max((abs(f[i] - s[i]) / abs(s[i]), i) for i in s if i <= 250)
    assert worst[0] <= 0.01, f"training loss at iteration {worst[1]}: fast {f[worst[1]]} vs stock {s[worst[1]]}"
    its = sorted(s)
    for a in range(0, len(its), 20):
        window = its[a:a + 20]
        ms, mf = (sum(d[i] for i in window) / len(window) for d in (s, f))
        assert abs(mf - ms) / ms <= 0.01, f"mean loss of iterations {window[0]}-{window[-1]}: fast {mf} vs stock {ms}"
    assert s[max(s)] < 0.5 * s[min(s)], "the toy training does not learn; the check would be vacuous"


def test_fast_build_resumes_after_kill_bitwise(tmp_path):
    """As tests/test_train.py's resume test (its toy net), in the fast build with 2 OpenMP threads."""
    from test_train import _wait_for, same_weights, train_args
    toy = _toy(tmp_path / "toy", 200, 50, width=16, depth=6)
    runs = tmp_path / "runs"
    ref = _train(toy, runs, "ref", "fast")
    assert ref.returncode == 0, ref.stderr[-2000:]
    final = "toy_denoise-s30_iter_200.caffemodel"
    killed = False
    for attempt in range(3):
        name = f"killed{attempt}"
        run = runs / name
        proc = subprocess.Popen([PY, "-m", "rednet", *train_args(toy, runs, name)], cwd=ROOT, env=env_for("fast"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def past_snapshot():
            log = run / "train.log"
            if not log.is_file():
                return False
            text = log.read_text()
            i = text.find("_iter_100.solverstate")
            return i >= 0 and "Iteration 10" in text[i:]
        ok = _wait_for(past_snapshot, timeout=1200)
        pid = int((run / "caffe.pid").read_text()) if (run / "caffe.pid").is_file() else None
        if ok and pid:
            os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=1200)
        killed = "Optimization Done." not in (run / "train.log").read_text()
        if killed:
            break
    assert killed, "could not kill caffe before it finished"
    r = _train(toy, runs, name, "fast")
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr[-2000:]
    assert same_weights(run / "snapshots" / final, runs / "ref" / "snapshots" / final)
