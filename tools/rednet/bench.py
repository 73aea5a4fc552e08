"""Training throughput against the machine's compute bound: ``bin/python -m rednet bench``.

For each net (RED10, RED20, RED30, red30-official), measured in one run:

1. **train**: a real training run through ``rednet train`` (the code path of ``make train``:
   run folder, data schedule, ``bin/caffe train`` under the supervisor) of a few dozen
   iterations, with the net and the Adam solver rendered by ``rednet.netgen`` from the
   project's templates (batch 16) and a small real database of ``denoise-s30`` built by
   ``rednet.patches.build_db`` (50x50 patches of the first BSD images, their sha256 checked)
   -- seconds per iteration from the glog timestamps of the "Iteration N, loss" lines, the
   first iterations left out as warm-up and the line Caffe prints after training (after the
   final snapshot, a forward pass only) left out too.
   The shards are small (``--shard-size``, default 128 patches), so Caffe loads a new shard
   every 8 iterations: data loading is inside the timing, more often than in real training
   (8192-patch shards, one load every 512 iterations).
2. **time**: ``bin/caffe time`` on the run's own training net (forward + backward, no solver
   update), with Caffe's per-layer breakdown: time in Convolution/Deconvolution vs the rest.
3. **bound**: FLOPs per patch counted from the net (every Convolution and Deconvolution:
   ``2 x MACs`` forward, the same again for the weight gradient and for the input gradient,
   except for a layer whose input is the data), divided by the single-precision GEMM rate of
   *the BLAS Caffe links*, measured with ``bin/caffe time`` on two one-layer nets:
   - ``peak``: a 2048 x 2048 x 2048 product (InnerProduct forward);
   - ``shape``: a 1x1 Convolution from 9 x width channels to width channels on a 50x50 map,
     forward and backward (``force_backward``), i.e. exactly the three GEMMs Caffe runs for
     a 3x3, width -> width convolution or deconvolution of the net (im2col excluded).
   ``bound = FLOPs x batch / rate``; ``achieved/bound`` = bound time / measured time.
   The rates are measured again right before each net, so that bound and net see the
   same machine load.

4. **layout** (where the fast build is set up): that build with the activations kept in
   oneDNN's layout against ``REDNET_DNNL_LAYOUT=0``, side by side, with oneDNN's reorder time
   per pass from ``ONEDNN_VERBOSE=1`` (:func:`layout_rows`, :func:`dnnl_profile`); and, where
   ``import torch`` works, the same step in PyTorch in NCHW (``pytorch``) and channels_last
   (``pytorch-cl``).

Everything runs through ``bin/caffe`` (the build it selects, and its own libopenblas; the
stock and the batch-parallel build are also run side by side); numpy is
not used for the GEMM rate because it links its own OpenBLAS.  The machine load
(``os.getloadavg``) is recorded before and after each measurement: timings taken while
other work runs are not comparable.  Results: ``results/bench/bench.{md,json}``.
The database needs the BSD images: ``--datasets`` (default ``$DATASETS``, as ``rednet data``).
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import logparse, paths
from .errors import UserError, atomic_write_text
from .report import csv_text, md_table

NETS = ("red10", "red20", "red30", "red30-official")
#: (train iterations, caffe-time iterations) per net: fewer for the big ones (~10 min in all)
ITERS = {"red10": (40, 8), "red20": (30, 6), "red30": (24, 5), "red30-official": (12, 3)}
WARMUP = 3
PATCH = 50
BATCH = 16
#: the task the bench trains on (its database, nets and solver are the real ones of this task)
TASK = "denoise-s30"


# ------------------------------------------------------------------------ machine facts
def build_env_file(build: str | None = None) -> Path:
    """The env file of a Caffe build (default: the one bin/caffe uses now)."""
    build = build or paths.caffe_build()
    return paths.ROOT / (".caffe-fast" if build == "fast" else ".caffe") / "env"


def builds_available() -> list[str]:
    """The Caffe builds set up here: stock, and fast (the batch-parallel one) where built."""
    return [b for b in ("stock", "fast") if build_env_file(b).is_file()]


def caffe_binary() -> Path:
    """The real caffe binary behind bin/caffe (from .caffe/env or .caffe-fast/env)."""
    env = build_env_file()
    if env.is_file():
        m = re.search(r"^CAFFE_BIN='([^']*)'", env.read_text(), re.M)
        if m:
            return Path(m.group(1))
    return paths.caffe_bin()


def linked_blas(binary: Path) -> str | None:
    """The BLAS library the caffe binary loads (ldd), resolved to its real file."""
    env = dict(os.environ)
    envf = build_env_file()
    if envf.is_file():
        m = re.search(r"^CAFFE_LD_LIBRARY_PATH='([^']*)'", envf.read_text(), re.M)
        if m and m.group(1):
            env["LD_LIBRARY_PATH"] = m.group(1) + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, timeout=30).stdout
    except OSError:
        return None
    for line in out.splitlines():
        if "blas" in line and "=>" in line:
            p = line.split("=>")[1].split("(")[0].strip()
            return str(Path(p).resolve()) if p else None
    return None


def openblas_info(lib: str | None, env: dict | None = None) -> dict:
    """OpenBLAS's own description of itself (config string, core it picked, threads).

    With ``env``, asked in a child process under that environment: OpenBLAS reads its
    environment (OPENBLAS_CORETYPE, thread counts) once, when it is loaded.
    """
    if not lib:
        return {}
    if env is not None:
        code = "import json, sys; from rednet.bench import openblas_info; print(json.dumps(openblas_info(sys.argv[1])))"
        r = subprocess.run([sys.executable, "-c", code, lib], capture_output=True, text=True, env=env, timeout=60)
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else {}
    try:
        so = ctypes.CDLL(lib)
    except OSError:
        return {}
    info = {}
    for name in ("openblas_get_config", "openblas_get_corename"):
        f = getattr(so, name, None)
        if f is not None:
            f.restype = ctypes.c_char_p
            info[name.replace("openblas_get_", "")] = f().decode()
    f = getattr(so, "openblas_get_num_threads", None)
    if f is not None:
        info["threads"] = int(f())
    return info


def machine() -> dict:
    from .provenance import cpu_model
    cpu = cpu_model()
    binary = caffe_binary()
    lib = linked_blas(binary)
    flags = None
    mk = binary.parent.parent.parent / "Makefile" if binary.name == "caffe.bin" else None
    if mk and mk.is_file():
        m = re.search(r"COMMON_FLAGS \+= -DNDEBUG (\S+)", mk.read_text())
        flags = m.group(1) if m else None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "caffe_binary": str(binary), "caffe_build": paths.caffe_build(), "blas": lib, "openblas": openblas_info(lib),
        "caffe_release_flags": flags,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS",
                                               "OPENBLAS_CORETYPE") if os.environ.get(k)},
    }


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------------ running caffe
def run_caffe(args: list[str], log: Path, timeout: float = 1200, env: dict | None = None) -> str:
    """Run ``bin/caffe <args>`` from the repo root; return its log (also written to ``log``)."""
    env = dict(os.environ if env is None else env, GLOG_logtostderr="1")
    env.pop("GLOG_minloglevel", None)
    r = subprocess.run([str(paths.caffe_bin()), *args], cwd=paths.ROOT, capture_output=True, text=True,
                       env=env, timeout=timeout)
    out = r.stdout + r.stderr
    log.write_text(out)
    if r.returncode != 0:
        fatal = [l for l in out.splitlines() if l.startswith("F")]
        raise UserError(f"bin/caffe {args[0]} failed ({(fatal or out.splitlines() or ['?'])[-1][:200]}); log {log}")
    return out


RE_AVG = {k: re.compile(rf"Average {k}: ([0-9.]+) ms") for k in ("Forward pass", "Backward pass", "Forward-Backward")}
RE_LAYER = re.compile(r"\]\s+(\S+)\s+(forward|backward): ([0-9.]+) ms")


def parse_time(out: str) -> dict:
    """Averages (ms) and per-layer times from a ``caffe time`` log."""
    res = {}
    for k, rx in RE_AVG.items():
        m = rx.search(out)
        if m:
            res[k] = float(m.group(1))
    layers: dict[str, float] = {}
    for m in RE_LAYER.finditer(out):
        layers[m.group(1)] = layers.get(m.group(1), 0.0) + float(m.group(3))
    res["layers"] = layers
    if "Forward-Backward" not in res:
        raise UserError("caffe time: no 'Average Forward-Backward' in its output")
    return res


def train_seconds_per_iter(log_text: str, warmup: int = WARMUP, until: int | None = None) -> tuple[float, int]:
    """Mean seconds per iteration between the warm-up and the last iteration of a train log.

    ``until``: only the lines of iterations below it (a run's ``max_iter``: the line Caffe
    prints at ``max_iter`` comes after training, after the final snapshot and a forward pass
    without backward, and is not a training iteration)."""
    pts = []
    for line in log_text.splitlines():
        ev = logparse.parse_line(line)
        if ev is not None and ev.kind == "loss":
            pts.append((ev.iteration, ev.time))
    pts = [(i, t) for i, t in pts if i >= warmup and (until is None or i < until)]
    if len(pts) < 2:
        raise UserError("caffe train: too few iterations logged to time")
    (i0, t0), (i1, t1) = pts[0], pts[-1]
    return (t1 - t0) / (i1 - i0), i1 - i0


# ------------------------------------------------------------------------ nets and FLOPs
def conv_flops(deploy: Path, hw: int = PATCH) -> dict:
    """FLOPs per patch of the Convolution/Deconvolution layers of a deploy net at hw x hw.

    Forward ``2 x MACs``; backward the same for the weight gradient, and again for the
    input gradient unless the layer's input is the net's input (Caffe skips that one).
    """
    import caffe
    caffe.set_mode_cpu()
    net = caffe.Net(str(deploy), caffe.TEST)
    inp = net.inputs[0]
    c = net.blobs[inp].data.shape[1]
    net.blobs[inp].reshape(1, c, hw, hw)
    net.reshape()
    fwd = bwd = 0
    per_layer = []
    data_blobs = {inp}   # the input and its Split copies: no gradient is computed for them
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type == "Split" and net.bottom_names[name][0] in data_blobs:
            data_blobs.update(net.top_names[name])
        if layer.type not in ("Convolution", "Deconvolution"):
            continue
        w = net.params[name][0].data.shape
        bottom = net.bottom_names[name][0]
        top = net.top_names[name][0]
        if layer.type == "Convolution":
            spatial = net.blobs[top].data.shape[2] * net.blobs[top].data.shape[3]
        else:
            spatial = net.blobs[bottom].data.shape[2] * net.blobs[bottom].data.shape[3]
        groups = 1
        macs = int(w[0]) * int(w[1]) * int(w[2]) * int(w[3]) * spatial * groups
        f = 2 * macs
        b = 2 * macs + (0 if bottom in data_blobs else 2 * macs)
        fwd += f
        bwd += b
        per_layer.append((name, f, b))
    return {"forward": fwd, "backward": bwd, "total": fwd + bwd, "layers": per_layer}


GEMM_PEAK_NET = """name: "gemm_peak"
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {n} dim: {k} }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "y"
  inner_product_param {{ num_output: {m} bias_term: false weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
"""

GEMM_SHAPE_NET = """name: "gemm_shape"
force_backward: true
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {batch} dim: {cin} dim: {hw} dim: {hw} }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "x" top: "y"
  convolution_param {{ num_output: {cout} kernel_size: 1 bias_term: false weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
"""


def gemm_rates(work: Path, widths: list[int], iters: int = 5, env: dict | None = None) -> dict:
    """Single-precision GEMM rates (GFLOP/s) of Caffe's BLAS, measured with ``caffe time``."""
    out = {}
    n = 2048
    p = work / "gemm_peak.prototxt"
    p.write_text(GEMM_PEAK_NET.format(n=n, k=n, m=n))
    l0 = load()
    t = parse_time(run_caffe(["time", "-model", str(p), "-iterations", str(iters)], work / "gemm_peak.log", env=env))
    out["peak"] = {"shape": f"{n}x{n}x{n}", "ms": t["Forward pass"], "gflops": 2 * n ** 3 / t["Forward pass"] / 1e6,
                   "load": [l0, load()]}
    for w in widths:
        p = work / f"gemm_w{w}.prototxt"
        p.write_text(GEMM_SHAPE_NET.format(batch=BATCH, cin=9 * w, cout=w, hw=PATCH))
        l0 = load()
        t = parse_time(run_caffe(["time", "-model", str(p), "-iterations", str(iters)], work / f"gemm_w{w}.log", env=env))
        flops = 3 * 2 * w * 9 * w * PATCH * PATCH * BATCH
        out[f"w{w}"] = {"shape": f"1x1 conv {9 * w}->{w} on {PATCH}x{PATCH}, batch {BATCH}, fwd+bwd",
                        "ms": t["Forward-Backward"], "gflops": flops / t["Forward-Backward"] / 1e6,
                        "load": [l0, load()]}
    return out


IM2COL_DRIVER = r"""
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
namespace caffe {
template <typename Dtype> void im2col_cpu(const Dtype*, const int, const int, const int, const int, const int,
    const int, const int, const int, const int, const int, const int, Dtype*);
template <typename Dtype> void col2im_cpu(const Dtype*, const int, const int, const int, const int, const int,
    const int, const int, const int, const int, const int, const int, Dtype*);
}
int main(int argc, char** argv) {
  const int C = std::atoi(argv[1]), H = 50, W = 50, N = 16, REP = 7;
  std::vector<float> im(C * H * W, 1.0f), col(C * 9 * H * W), out(C * H * W);
  double bi = 1e9, bc = 1e9;
  for (int r = 0; r < REP; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int n = 0; n < N; ++n) caffe::im2col_cpu<float>(im.data(), C, H, W, 3, 3, 1, 1, 1, 1, 1, 1, col.data());
    auto t1 = std::chrono::steady_clock::now();
    for (int n = 0; n < N; ++n) caffe::col2im_cpu<float>(col.data(), C, H, W, 3, 3, 1, 1, 1, 1, 1, 1, out.data());
    auto t2 = std::chrono::steady_clock::now();
    bi = std::min(bi, std::chrono::duration<double, std::milli>(t1 - t0).count());
    bc = std::min(bc, std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::printf("%.4f %.4f %g\n", bi, bc, out[C * H * W / 2] + col[999]);
}
"""

#: compiler flags compared for Caffe's im2col/col2im: Caffe's release flags and two proposals
IM2COL_FLAGS = ("-O2", "-O2 -march=native", "-O3 -march=native")


def im2col_flags(work: Path, widths: list[int]) -> dict:
    """Time Caffe's own ``im2col_cpu``/``col2im_cpu`` (its src/caffe/util/im2col.cpp, compiled
    here with each of :data:`IM2COL_FLAGS`) for one batch of 16 50x50 maps of each width.

    These loops run single-threaded between the GEMMs (stock CPU Caffe has no OpenMP); a
    3x3 layer runs im2col twice and col2im once per image per iteration.  Returns {} when no
    C++ compiler or no Caffe source tree is at hand.
    """
    src = caffe_binary()
    tree = src.parents[2] if src.name == "caffe.bin" else None
    cpp = tree / "src" / "caffe" / "util" / "im2col.cpp" if tree else None
    gxx = shutil.which("g++")
    if not (cpp and cpp.is_file() and gxx):
        return {}
    text = cpp.read_text()
    text = text.replace('#include "caffe/util/im2col.hpp"', "").replace(
        '#include "caffe/util/math_functions.hpp"',
        "#include <algorithm>\n#include <cstring>\n#define DCHECK_LT(a, b) (void)0\n"
        "namespace caffe { using std::vector; template <typename Dtype> inline void caffe_set("
        "const int N, const Dtype alpha, Dtype* Y) { if (alpha == 0) { std::memset(Y, 0, sizeof(Dtype) * N);"
        " return; } for (int i = 0; i < N; ++i) Y[i] = alpha; } }")
    d = work / "im2col"
    d.mkdir(exist_ok=True)
    (d / "im2col.cpp").write_text(text)
    (d / "driver.cpp").write_text(IM2COL_DRIVER.replace("#include <cstdio>", "#include <cstdio>\n#include <cstdlib>"))
    exes = {}
    for flags in IM2COL_FLAGS:
        exe = d / ("b" + re.sub(r"\W+", "_", flags))
        r = subprocess.run([gxx, *flags.split(), "-std=c++11", "-o", str(exe), str(d / "driver.cpp"), str(d / "im2col.cpp")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return {}
        exes[flags] = exe
    out: dict = {}
    for _round in range(3):  # interleaved rounds, best of all: less sensitive to other load
        for flags, exe in exes.items():
            for w in widths:
                vals = subprocess.run([str(exe), str(w)], capture_output=True, text=True).stdout.split()
                cur = out.setdefault(flags, {}).setdefault(f"w{w}", {"im2col_ms": 1e9, "col2im_ms": 1e9})
                cur["im2col_ms"] = min(cur["im2col_ms"], float(vals[0]))
                cur["col2im_ms"] = min(cur["col2im_ms"], float(vals[1]))
    return out


def bench_db(work: Path, shard_size: int, shards: int, datasets=None) -> Path:
    """The bench's training database: a small real database of :data:`TASK`, built by
    ``rednet.patches.build_db`` into ``work/db/<task>/`` (``shards`` shards of ``shard_size``
    pairs from the first BSD images, their sha256 checked; validation as in every database).
    Returns its train list file."""
    from . import patches
    need = shard_size * shards
    per_image = 1500        # pairs one BSD image gives at the default stride and noise draws (1,725)
    return patches.build_db(TASK, work / "db" / TASK, datasets=datasets, max_images=-(-need // per_image),
                            max_patches=need, shard_size=shard_size, workers=1, progress=False)


@contextlib.contextmanager
def _env(extra: dict):
    """``extra`` set in this process's environment for the block (``rednet train`` passes its
    environment on to bin/caffe)."""
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _caffe_build(build: str | None):
    """``CAFFE=build`` in this process's environment for the block (``rednet train`` passes its
    environment to bin/caffe and records the build from it)."""
    with _env({"CAFFE": build} if build is not None else {}):
        yield


def run_dir(work: Path, run: str) -> Path:
    """The folder of the bench's training run ``run`` (runs of the bench live in ``work/runs``)."""
    return work / "runs" / run


def train_run(name: str, work: Path, run: str, db_list: Path, iters: int, build: str | None = None) -> dict:
    """Train ``name`` for ``iters`` iterations through ``rednet.train.train`` (the code path of
    ``make train``: the run renders its solver and nets from the templates) in
    ``work/runs/<run>/``, on the database ``db_list`` (and its val.txt), the loss logged every iteration; ``build``: the
    Caffe build (``CAFFE``).  Returns the run record; the log is ``train.log`` in the run."""
    from . import train
    out = io.StringIO()
    with _caffe_build(build), contextlib.redirect_stdout(out):
        rec = train.train(name, TASK, iters=iters, run=run, runs_dir=work / "runs", resume=False,
                          files=train.TrainFiles(data=str(db_list), val=str(db_list.parent / "val.txt")),
                          options=train.SessionOptions(display=1, progress=False))
    atomic_write_text(run_dir(work, run) / "bench_stdout.txt", out.getvalue())
    return rec


def bench_net(name: str, work: Path, db_list: Path, train_iters: int, time_iters: int) -> dict:
    # 1. real training, through rednet train (the run renders its nets from the templates)
    l0 = load()
    t0 = time.monotonic()
    rec = train_run(name, work, name, db_list, train_iters)
    flops = conv_flops(run_dir(work, name) / "deploy.prototxt")
    batch = rec["batch_size"]
    res = {"net": name, "batch": batch, "flops_per_patch": flops["total"], "flops_forward": flops["forward"]}
    spi, n = train_seconds_per_iter((run_dir(work, name) / "train.log").read_text(), until=train_iters)
    res["train"] = {"iterations": train_iters, "timed": n, "s_per_iter": spi, "patches_per_s": batch / spi,
                    "wall_s": time.monotonic() - t0, "load": [l0, load()]}
    # 2. caffe time, on the run's own training net
    l0 = load()
    t = parse_time(run_caffe(["time", "-model", str(run_dir(work, name) / "train.prototxt"), "-iterations",
                              str(time_iters)], run_dir(work, name) / "time.log"))
    conv_ms = sum(v for k, v in t["layers"].items() if k.startswith(("conv", "deconv")) and "relu" not in k
                  and "sum" not in k)
    res["time"] = {"iterations": time_iters, "ms_fwd_bwd": t["Forward-Backward"],
                   "patches_per_s": batch / t["Forward-Backward"] * 1000,
                   "ms_conv_layers": conv_ms, "ms_other_layers": sum(t["layers"].values()) - conv_ms,
                   "load": [l0, load()]}
    return res


def train_iters(name: str, quick: bool) -> tuple[int, int]:
    """(train iterations, caffe-time iterations) of ``name``: :data:`ITERS`, or a handful (quick)."""
    return (WARMUP + 3, 1) if quick else ITERS[name]


def run_bench(nets=NETS, shard_size: int = 128, quick: bool = False, out_dir: Path | None = None,
              threads_compare: bool = True, torch_compare: bool = True, builds_compare: bool = True,
              datasets=None) -> dict:
    from . import netgen
    for n in nets:
        netgen.get_preset(n)  # UserError for unknown names
    out_dir = Path(out_dir) if out_dir else paths.RESULTS / "bench"
    work = Path(tempfile.mkdtemp(prefix="bench.", dir=paths.ROOT / "data" / "cache"
                                 if (paths.ROOT / "data" / "cache").is_dir() else None))
    try:
        # the database first: without the BSD images (DATASETS) the bench stops before measuring
        shards = max(2, (max(train_iters(n, quick)[0] for n in nets) + 2) * BATCH // shard_size + 1)
        db = bench_db(work, shard_size, min(shards, 8), datasets)
        info = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": machine(),
                "load_start": load(), "shard_size": shard_size, "warmup_iterations": WARMUP, "task": TASK,
                "database": paths.rel(db.parent), "nets": []}
        print(f"machine: {info['machine']['cpu']}, {info['machine']['cores']} cores; BLAS "
              f"{info['machine']['blas']} ({info['machine']['openblas'].get('corename', '?')}, "
              f"{info['machine']['openblas'].get('threads', '?')} threads); load {info['load_start']}")
        widths = sorted({netgen.get_preset(n).width for n in nets})
        print("measuring Caffe's GEMM rate (bin/caffe time on one-layer nets) ...", flush=True)
        info["gemm"] = gemm_rates(work, widths, iters=2 if quick else 5)
        for k, v in info["gemm"].items():
            print(f"  GEMM {k:5s} {v['shape']}: {v['gflops']:.1f} GFLOP/s (load {v['load'][0]})")
        print("timing Caffe's im2col/col2im compiled with different flags ...", flush=True)
        info["im2col"] = im2col_flags(work, widths)
        for flags, v in info["im2col"].items():
            print(f"  {flags:18s} " + "; ".join(f"{k}: im2col {x['im2col_ms']:.2f} ms, col2im {x['col2im_ms']:.2f} ms "
                                              f"(batch 16)" for k, x in v.items()))
        for n in nets:
            ti, tt = train_iters(n, quick)
            print(f"{n}: caffe train {ti} iterations, caffe time {tt} ...", flush=True)
            w = netgen.get_preset(n).width
            # the GEMM rate again right before this net: the bound and the net see the same load
            g = gemm_rates(work, [w], iters=2 if quick else 5)
            r = bench_net(n, work, db, ti, tt)
            r["gemm"] = g
            for k, rate in (("peak", g["peak"]["gflops"]), ("shape", g[f"w{w}"]["gflops"])):
                bound = r["flops_per_patch"] * r["batch"] / (rate * 1e9)
                r[f"bound_{k}_s"] = bound
                r[f"ratio_train_{k}"] = bound / r["train"]["s_per_iter"]
                r[f"ratio_time_{k}"] = bound / (r["time"]["ms_fwd_bwd"] / 1000)
            gemm_ms = r["bound_shape_s"] * 1000
            r["breakdown_ms"] = {
                "gemm_at_net_shapes": gemm_ms,
                "conv_layers_beyond_gemm": r["time"]["ms_conv_layers"] - gemm_ms,
                "other_layers": r["time"]["ms_other_layers"],
                "solver_update_and_rest": r["train"]["s_per_iter"] * 1000 - r["time"]["ms_fwd_bwd"],
            }
            info["nets"].append(r)
            print("  " + _line(r), flush=True)
        if threads_compare and "red30" in nets:
            tr = run_dir(work, "red30") / "train.prototxt"
            l0 = load()
            env1 = dict(os.environ, OPENBLAS_NUM_THREADS="1")
            t1 = parse_time(run_caffe(["time", "-model", str(tr), "-iterations", "2" if quick else str(ITERS["red30"][1])],
                                      work / "red30_t1.log", env=env1))
            # the peak GEMM with one thread too: what the other cores add to the GEMM rate, the most
            # that a build splitting the work over the cores can gain on the GEMM part of the time
            g1 = gemm_rates(work, [], iters=2 if quick else 5, env=env1)["peak"]
            info["red30_one_blas_thread"] = {"ms_fwd_bwd": t1["Forward-Backward"], "load": [l0, load()],
                                             "gemm_peak_gflops": g1["gflops"]}
            print(f"red30 caffe time with OPENBLAS_NUM_THREADS=1: {t1['Forward-Backward'] / 1000:.3f} s; "
                  f"GEMM peak with one thread {g1['gflops']:.1f} GFLOP/s", flush=True)
        if threads_compare and "red30" in nets and os.environ.get("OPENBLAS_CORETYPE"):
            # the environment forces an OpenBLAS kernel: measure OpenBLAS's own choice too
            tr = run_dir(work, "red30") / "train.prototxt"
            env_auto = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
            core = openblas_info(info["machine"]["blas"], env_auto).get("corename")
            l0 = load()
            g = gemm_rates(work, [64], iters=2 if quick else 5, env=env_auto)
            ta = parse_time(run_caffe(["time", "-model", str(tr), "-iterations", "2" if quick else str(ITERS["red30"][1])],
                                      work / "red30_auto.log", env=env_auto))
            info["red30_blas_autodetect"] = {"corename": core, "gemm": g, "ms_fwd_bwd": ta["Forward-Backward"],
                                             "load": [l0, load()]}
            print(f"red30 caffe time with OPENBLAS_CORETYPE unset (OpenBLAS picks {core}): "
                  f"{ta['Forward-Backward'] / 1000:.3f} s; GEMM {g['peak']['gflops']:.0f} / {g['w64']['gflops']:.0f} GFLOP/s",
                  flush=True)
        if builds_compare and len(builds_available()) == 2:
            info["builds"] = build_rows(nets, work, quick, db)
        if builds_compare and "fast" in builds_available():
            info["layout"] = layout_rows(nets, work, quick, db)
        if torch_compare:
            info["torch"] = torch_rows(info["nets"], quick)
        info["load_end"] = load()
        info["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        atomic_write_text(out_dir / "bench.json", json.dumps(info, indent=2) + "\n")
        md = report(info)
        atomic_write_text(out_dir / "bench.md", md)
        atomic_write_text(out_dir / "summary.csv", summary_csv(info))
        print()
        print(md)
        print(f"written: {paths.rel(out_dir / 'bench.md')}, {paths.rel(out_dir / 'bench.json')}")
        return info
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: memory budget (MB) of the bench's 256x256 restore: enough for all 8 orientations of the
#: whole image in one batch in either build (RED30: the stock build's im2col buffers take most
#: of it); the restore command's default (2048) would tile RED30 in the stock build
RESTORE_MEMORY_MB = 12288

RESTORE_CODE = """
import json, os, sys, tempfile, time
import numpy as np
import caffe
from rednet.restore import Restorer
caffe.set_mode_cpu()
deploy, reps, mb = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
net = caffe.Net(deploy, caffe.TEST)
rng = np.random.default_rng(0)
for blobs in net.params.values():
    w = blobs[0].data
    w[...] = rng.normal(0, np.sqrt(2.0 / np.prod(w.shape[1:])), w.shape)
    for b in list(blobs)[1:]:
        b.data[...] = 0
x = rng.random((256, 256), dtype=np.float32)
with tempfile.TemporaryDirectory() as tmp:
    weights = os.path.join(tmp, "random.caffemodel")
    net.save(weights)
    del net
    r = Restorer(deploy, weights, max_memory_mb=mb, progress=False)
    ts = []
    for _ in range(reps):
        del r.passes[:]
        t0 = time.perf_counter()
        r.restore(x, ensemble=True)
        ts.append(time.perf_counter() - t0)
    out = {"seconds": min(ts), "batches": [p[0] for p in r.passes], "threads": r.threads}
    if len(sys.argv) > 4 and sys.argv[4] == "opencv":
        # the same restore in OpenCV's dnn module (its own Caffe importer and kernels): the
        # orientations of one shape in one batch, as above; checked against Caffe's result
        import cv2
        from rednet.restore import orient, unorient
        cvnet = cv2.dnn.readNetFromCaffe(deploy, weights)
        want = r.restore(x, ensemble=True)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            acc = np.zeros_like(x)
            for flips in (((False, 0), (False, 2), (True, 0), (True, 2)), ((False, 1), (False, 3), (True, 1), (True, 3))):
                xs = np.stack([orient(x, f, k) for f, k in flips])[:, None]
                cvnet.setInput(np.ascontiguousarray(xs, dtype=np.float32))
                ys = cvnet.forward()
                for (f, k), y in zip(flips, ys):
                    acc += unorient(y[0], f, k)
            ts.append(time.perf_counter() - t0)
        out = {"seconds": min(ts), "batches": [4, 4], "threads": cv2.getNumThreads(),
               "max_abs_diff_vs_caffe": float(np.abs(acc / 8 - want).max())}
print(json.dumps(out))
"""


def restore_timing(build: str, deploy: Path, reps: int, max_memory_mb: float = RESTORE_MEMORY_MB,
                   engine: str = "caffe", extra_env: dict | None = None) -> dict:
    """The 8-orientation ensemble restore of a 256x256 image (``Restorer.restore``, random
    weights, orientations batched as ``max_memory_mb`` allows) in ``build``: ``seconds`` (the
    best of ``reps``), ``batches`` (the batch size of each forward pass), ``threads`` (images
    of a batch the build runs in parallel).  ``engine="opencv"``: the same ensemble through
    OpenCV's dnn module (``cv2.dnn.readNetFromCaffe``) instead, with ``max_abs_diff_vs_caffe``."""
    r = subprocess.run([str(paths.ROOT / "bin" / "python"), "-c", RESTORE_CODE, str(deploy), str(reps),
                        str(max_memory_mb), engine],
                       cwd=paths.ROOT, capture_output=True, text=True, env=dict(os.environ, CAFFE=build, **(extra_env or {})),
                       timeout=3600)
    if r.returncode != 0:
        raise UserError(f"restore timing ({build}) failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def restore_seconds(build: str, deploy: Path, reps: int) -> float:
    """Seconds of the 8-orientation ensemble restore of a 256x256 image (:func:`restore_timing`)."""
    return restore_timing(build, deploy, reps)["seconds"]


def build_rows(nets, work: Path, quick: bool, db_list: Path, rounds: int = 2) -> list[dict]:
    """The stock and the batch-parallel Caffe build side by side: the same training run as
    above (:func:`train_run`: solver, nets and database of bench_net, through rednet train),
    alternated stock, fast, stock, fast, ..., so that both see the same load; the median s/iter
    of each.  Also the 256x256 ensemble restore (:func:`restore_timing`: 8 orientations, batched)."""
    import statistics
    rows = []
    for n in nets:
        d = run_dir(work, n)            # bench_net's run of the net: its deploy net
        ti = train_iters(n, quick)[0]
        spi = {"stock": [], "fast": []}
        l0 = load()
        for k in range(1 if quick else rounds):
            for b in ("stock", "fast"):
                train_run(n, work, f"{n}_{b}_{k}", db_list, ti, build=b)
                spi[b].append(train_seconds_per_iter((run_dir(work, f"{n}_{b}_{k}") / "train.log").read_text(),
                                                     until=ti)[0])
        s, f = statistics.median(spi["stock"]), statistics.median(spi["fast"])
        r = {"net": n, "s_per_iter": spi, "stock_s_per_iter": s, "fast_s_per_iter": f, "speedup": s / f,
             "load": [l0, load()], "omp_threads": os.environ.get("OMP_NUM_THREADS")}
        msg = f"{n}: stock {s:.3f} s/it, fast {f:.3f} s/it: {r['speedup']:.2f}x"
        if n == restore_net(nets):
            reps = 1 if quick else 2
            timing = {b: restore_timing(b, d / "deploy.prototxt", reps) for b in ("stock", "fast")}
            r.update(restore_256_s={b: t["seconds"] for b, t in timing.items()},
                     restore_256_batches={b: t["batches"] for b, t in timing.items()},
                     restore_max_memory_mb=RESTORE_MEMORY_MB, restore_reps=reps)
            msg += (f"; restore 256x256 (ensemble) {r['restore_256_s']['stock']:.3f} s / "
                    f"{r['restore_256_s']['fast']:.3f} s in batches of {_batches(r['restore_256_batches']['stock'])} / "
                    f"{_batches(r['restore_256_batches']['fast'])}")
            if importlib.util.find_spec("cv2") is not None:
                r["restore_256_opencv"] = restore_timing("stock", d / "deploy.prototxt", reps, engine="opencv")
                msg += (f"; OpenCV dnn {r['restore_256_opencv']['seconds']:.3f} s (max |diff| vs Caffe "
                        f"{r['restore_256_opencv']['max_abs_diff_vs_caffe']:.1e})")
        rows.append(r)
        print(msg + f" (load {l0})", flush=True)
    return rows


def restore_net(nets) -> str:
    """The net whose 256x256 ensemble restore the bench times: RED30 (the issue's figure), else
    the first net measured (one restore timing per bench: each is 8 forward passes per engine)."""
    return "red30" if "red30" in nets else list(nets)[0]


def _batches(sizes: list[int]) -> str:
    """Batch sizes of a restore's forward passes, e.g. ``8`` or ``4+4`` or ``1x8``."""
    if not sizes:
        return "?"
    if len(set(sizes)) == 1 and len(sizes) > 2:
        return f"{sizes[0]}x{len(sizes)}"
    return "+".join(map(str, sizes))


def summary_csv(info: dict) -> str:
    """One row per net and engine: net,engine,train_patches_per_s,restore_256_s,pct_gemm_bound."""
    rows = []
    builds = {r["net"]: r for r in info.get("builds") or []}
    for r in info["nets"]:
        bound = r["bound_peak_s"]
        b = builds.get(r["net"])
        if b:
            restore = b.get("restore_256_s") or {}
            for e in ("stock", "fast"):
                t = b[f"{e}_s_per_iter"]
                rows.append([r["net"], f"caffe-{e}", f"{r['batch'] / t:.2f}",
                             f"{restore[e]:.4f}" if e in restore else "", f"{100 * bound / t:.1f}"])
            if b.get("restore_256_opencv"):
                rows.append([r["net"], "opencv", "", f"{b['restore_256_opencv']['seconds']:.4f}", ""])
        else:
            t = r["train"]["s_per_iter"]
            rows.append([r["net"], f"caffe-{info['machine'].get('caffe_build', 'stock')}", f"{r['batch'] / t:.2f}", "",
                         f"{100 * bound / t:.1f}"])
        lay = {x["net"]: x for x in info.get("layout") or []}.get(r["net"])
        if lay:
            t = lay["off_s_per_iter"]
            restore = (lay.get("restore_256_s") or {}).get("off")
            rows.append([r["net"], "caffe-fast-nchw", f"{r['batch'] / t:.2f}",
                         f"{restore:.4f}" if restore is not None else "", f"{100 * bound / t:.1f}"])
    for t in (info.get("torch") or {}).get("nets", []):
        rows.append([t["net"], t.get("engine", "pytorch"), f"{t['patches_per_s']:.2f}", "",
                     f"{100 * t['vs_bound_peak']:.1f}"])
    return csv_text(["net", "engine", "train_patches_per_s", "restore_256_s", "pct_gemm_bound"], rows)


def torch_rows(caffe_rows: list[dict], quick: bool) -> dict:
    """The same nets' training step in PyTorch (optional: only where ``import torch`` works)."""
    from . import bench_torch, netgen
    version = bench_torch.torch_version()
    if version is None:
        print("PyTorch comparison: torch is not installed in the project's Python (optional; docs/training.md)")
        return {"version": None, "nets": []}
    rows = []
    for r in caffe_rows:
        ti = 2 if quick else max(3, ITERS[r["net"]][0] // 2)
        for engine, fmt in bench_torch.MEMORY_FORMATS.items():
            print(f"{r['net']}: PyTorch {version} training step ({fmt}), {ti} iterations ...", flush=True)
            l0 = load()
            t = bench_torch.train_step_rate(netgen.get_preset(r["net"]), batch=r["batch"], patch=PATCH, iters=ti,
                                            warmup=1 if quick else WARMUP, memory_format=fmt)
            t.update(net=r["net"], engine=engine, load=[l0, load()],
                     vs_caffe_train=t["patches_per_s"] / r["train"]["patches_per_s"],
                     vs_bound_peak=r["bound_peak_s"] / t["s_per_iter"])
            rows.append(t)
            print(f"  {t['s_per_iter']:.3f} s/it = {t['patches_per_s']:.1f} patches/s "
                  f"({t['vs_caffe_train']:.2f}x Caffe's train)", flush=True)
    return {"version": version, "nets": rows}


#: the fast build's switch for keeping activations in oneDNN's layout (0004): off, every
#: activation is reordered to and from Caffe's NCHW at each convolution (the build before 0004)
LAYOUT_OFF = {"REDNET_DNNL_LAYOUT": "0"}


def dnnl_profile(log_text: str, passes: int, batch: int = BATCH) -> dict:
    """oneDNN's own timing of its primitives (``ONEDNN_VERBOSE=1`` lines ``onednn_verbose,exec,
    cpu,<kind>,...,<shape>,<ms>``), per forward+backward pass (``passes`` of them in the log):
    ``ms`` and ``calls`` per primitive kind, and the reorders split into those of activations
    (4-D, the batch first) and the rest (weights)."""
    kinds: dict[str, dict] = {}
    acts = {"ms": 0.0, "calls": 0}
    for line in log_text.splitlines():
        if not line.startswith("onednn_verbose,exec,cpu,"):
            continue
        f = line.split(",")
        try:
            ms = float(f[-1])
        except ValueError:
            continue
        k = kinds.setdefault(f[3], {"ms": 0.0, "calls": 0})
        k["ms"] += ms
        k["calls"] += 1
        if f[3] == "reorder":
            dims = f[-2].split("x")
            if len(dims) == 4 and dims[0] == str(batch):
                acts["ms"] += ms
                acts["calls"] += 1
    per = {k: {"ms": v["ms"] / passes, "calls": v["calls"] / passes} for k, v in sorted(kinds.items())}
    re_all = per.get("reorder", {"ms": 0.0, "calls": 0})
    return {"passes": passes, "kinds": per,
            "reorder_activations": {"ms": acts["ms"] / passes, "calls": acts["calls"] / passes},
            "reorder_other": {"ms": re_all["ms"] - acts["ms"] / passes,
                              "calls": re_all["calls"] - acts["calls"] / passes}}


def layout_rows(nets, work: Path, quick: bool, db_list: Path, rounds: int = 2) -> list[dict]:
    """The fast build with the activations kept in oneDNN's layout (its default) against the same
    build with :data:`LAYOUT_OFF`: the same training run as above, alternated off, on, off, on
    (median s/iter of each), and oneDNN's reorder time per forward+backward pass in each
    (``ONEDNN_VERBOSE=1`` on ``bin/caffe time`` of the run's training net: one pass before the
    timed ones, all counted); for the restore net also the 256x256 ensemble restore."""
    import statistics
    rows = []
    for n in nets:
        ti = train_iters(n, quick)[0]
        tt = 1 if quick else 2
        spi = {"off": [], "on": []}
        l0 = load()
        for k in range(1 if quick else rounds):
            for mode in ("off", "on"):
                run = f"{n}_layout-{mode}_{k}"
                with _env(LAYOUT_OFF if mode == "off" else {}):
                    train_run(n, work, run, db_list, ti, build="fast")
                spi[mode].append(train_seconds_per_iter((run_dir(work, run) / "train.log").read_text(), until=ti)[0])
        off, on = statistics.median(spi["off"]), statistics.median(spi["on"])
        r = {"net": n, "s_per_iter": spi, "off_s_per_iter": off, "on_s_per_iter": on, "speedup": off / on,
             "load": [l0, load()], "profile": {}}
        tr = run_dir(work, n) / "train.prototxt"
        for mode in ("off", "on"):
            env = dict(os.environ, CAFFE="fast", ONEDNN_VERBOSE="1", **(LAYOUT_OFF if mode == "off" else {}))
            out = run_caffe(["time", "-model", str(tr), "-iterations", str(tt)],
                            work / f"{n}_verbose_{mode}.log", env=env)
            r["profile"][mode] = dnnl_profile(out, tt + 1)
        msg = (f"{n}: fast, activations in NCHW {off:.3f} s/it, kept in oneDNN's layout {on:.3f} s/it: "
               f"{r['speedup']:.2f}x; activation reorders per pass "
               f"{r['profile']['off']['reorder_activations']['ms']:.0f} / "
               f"{r['profile']['on']['reorder_activations']['ms']:.0f} ms")
        if n == restore_net(nets):
            reps = 1 if quick else 2
            d = run_dir(work, n)
            r["restore_256_s"] = {"off": restore_timing("fast", d / "deploy.prototxt", reps, extra_env=LAYOUT_OFF)["seconds"],
                                  "on": restore_timing("fast", d / "deploy.prototxt", reps)["seconds"]}
            msg += f"; restore 256x256 (ensemble) {r['restore_256_s']['off']:.3f} / {r['restore_256_s']['on']:.3f} s"
        rows.append(r)
        print(msg + f" (load {l0})", flush=True)
    return rows


def _line(r: dict) -> str:
    return (f"train {r['train']['s_per_iter']:.3f} s/it = {r['train']['patches_per_s']:.1f} patches/s; "
            f"time {r['time']['ms_fwd_bwd'] / 1000:.3f} s; bound {r['bound_peak_s']:.3f} s (peak GEMM), "
            f"{r['bound_shape_s']:.3f} s (net-shape GEMM); achieved/bound {r['ratio_train_peak']:.0%} / "
            f"{r['ratio_train_shape']:.0%}")


def layout_report(info: dict) -> list[str]:
    """bench.md's section on the activations kept in oneDNN's layout (:func:`layout_rows`), with
    the ratios the layout work is judged by: kept against NCHW in the same build, and the fast
    build against the faster of the PyTorch rows."""
    lines = ["", "The fast build with the activations kept in oneDNN's layout (its default) and with "
             "`REDNET_DNNL_LAYOUT=0` (every activation reordered to and from NCHW at each convolution, as "
             "before 0004): the same `caffe train`, alternated NCHW, kept, NCHW, kept (median s/iter); "
             "oneDNN's own time per forward+backward pass (`ONEDNN_VERBOSE=1`, `bin/caffe time` of the "
             "training net): the reorders of activations (batch-first 4-D tensors) and of the rest "
             "(weights), and the convolution primitives.", ""]

    def prof(p: dict, key: str) -> str:
        x = p[key] if key.startswith("reorder") else p["kinds"].get(key, {"ms": 0.0, "calls": 0})
        return f"{x['ms']:.0f} ({x['calls']:.0f})"
    rows = []
    for x in info["layout"]:
        po, pn = x["profile"]["off"], x["profile"]["on"]
        rs = x.get("restore_256_s")
        rows.append([x["net"], f"{x['off_s_per_iter']:.3f}", f"{x['on_s_per_iter']:.3f}", f"{x['speedup']:.2f}x",
                     f"{prof(po, 'reorder_activations')} / {prof(pn, 'reorder_activations')}",
                     f"{prof(po, 'reorder_other')} / {prof(pn, 'reorder_other')}",
                     f"{prof(po, 'convolution')} / {prof(pn, 'convolution')}",
                     f"{prof(po, 'deconvolution')} / {prof(pn, 'deconvolution')}",
                     f"{rs['off']:.3f} / {rs['on']:.3f}" if rs else "(not timed)", x["load"][0]])
    lines += md_table(["net", "NCHW: s/iter", "kept: s/iter", "kept / NCHW (training)",
                       "activation reorders, ms (calls) per pass, NCHW / kept", "other reorders, NCHW / kept",
                       "convolution primitives, NCHW / kept", "deconvolution primitives, NCHW / kept",
                       "restore 256x256 (ensemble) NCHW / kept s", "load"], rows)
    torch_by_net: dict[str, list] = {}
    for t in (info.get("torch") or {}).get("nets", []):
        torch_by_net.setdefault(t["net"], []).append(t)
    builds = {b["net"]: b for b in info.get("builds") or []}
    for x in info["layout"]:
        line = f"{x['net']}: training with the activations kept {x['speedup']:.2f}x the NCHW activations"
        ts = torch_by_net.get(x["net"])
        if ts:
            best = max(ts, key=lambda t: t["patches_per_s"])
            fast = BATCH / x["on_s_per_iter"]
            line += (f"; the fast build {fast:.2f} patches/s against the faster PyTorch row ({best.get('engine', 'pytorch')}) "
                     f"{best['patches_per_s']:.2f}: {fast / best['patches_per_s']:.2f}x")
        b = builds.get(x["net"])
        if b:
            line += f"; {b['stock_s_per_iter'] / x['on_s_per_iter']:.2f}x stock"
        lines += ["", line + "."]
    return lines


def report(info: dict) -> str:
    m = info["machine"]
    g = info["gemm"]
    lines = [
        "# Training throughput vs the GEMM bound (`make bench`)",
        "",
        f"{info['started']}; {m['cpu']}, {m['cores']} cores; load average {info['load_start']} at start, "
        f"{info.get('load_end')} at the end (timings taken under load are not comparable).",
        f"Caffe: `{m['caffe_binary']}` (release flags {m.get('caffe_release_flags')}); BLAS `{m['blas']}` "
        f"(OpenBLAS core {m['openblas'].get('corename', '?')}, {m['openblas'].get('threads', '?')} threads; "
        f"env {m['env'] or 'none set'}).",
        "",
        "GEMM rate of that BLAS, measured with `bin/caffe time` at the start: " + "; ".join(
            f"{k}: {v['gflops']:.1f} GFLOP/s ({v['shape']})" for k, v in g.items()) + "; and right before each "
        "net (used for its bound): " + "; ".join(
            f"{r['net']}: {r['gemm']['peak']['gflops']:.0f} / " + " / ".join(
                f"{v['gflops']:.0f}" for k, v in r["gemm"].items() if k != "peak") for r in info["nets"]) +
        " GFLOP/s (peak / net shape).",
        "",
    ]

    def net_row(r):
        t = r["time"]
        share = t["ms_conv_layers"] / max(1e-9, t["ms_conv_layers"] + t["ms_other_layers"])
        return [r["net"], r["batch"], f"{r['flops_per_patch'] / 1e9:.2f}",
                f"{r['train']['s_per_iter']:.3f} ({r['train']['timed']} it)", f"{r['train']['patches_per_s']:.1f}",
                f"{t['ms_fwd_bwd'] / 1000:.3f} ({t['iterations']} it)", f"{share:.0%}", f"{r['bound_peak_s']:.3f}",
                f"{r['bound_shape_s']:.3f}", f"{r['ratio_train_peak']:.0%}", f"{r['ratio_train_shape']:.0%}"]
    lines += md_table(["net", "batch", "GFLOP/patch (fwd+bwd)", "train: s/iter", "train: patches/s", "caffe time: s",
                       "conv/deconv share", "bound (peak) s", "bound (net GEMM) s", "achieved/bound (peak)",
                       "achieved/bound (net GEMM)"], [net_row(r) for r in info["nets"]])
    lines += ["", "Where the time goes (ms per iteration of batch 16): GEMM at the net's shapes (the bound), "
              "what the conv/deconv layers take beyond it (im2col/col2im, bias), the other layers (ReLU, "
              "Eltwise, Split, data, loss; from `caffe time`), and the rest of a training iteration "
              "(Adam update, snapshots/logging; train minus caffe time):", ""]
    lines += md_table(["net", "GEMM (bound)", "conv layers beyond GEMM", "other layers", "update + rest"],
                      [[r["net"]] + [f"{r['breakdown_ms'][k]:.0f}" for k in
                                     ("gemm_at_net_shapes", "conv_layers_beyond_gemm", "other_layers",
                                      "solver_update_and_rest")] for r in info["nets"]])
    if info.get("im2col"):
        lines += ["", "Caffe's own im2col/col2im (src/caffe/util/im2col.cpp) compiled with other flags, one batch "
                  "of 16 50x50 maps, 3x3 (a layer runs im2col twice and col2im once per iteration):", ""]
        lines += md_table(["flags"] + [f"{k}: im2col / col2im ms" for k in next(iter(info["im2col"].values()))],
                          [[f"`{flags}`"] + [f"{x['im2col_ms']:.2f} / {x['col2im_ms']:.2f}" for x in v.values()]
                           for flags, v in info["im2col"].items()])
    tc = info.get("torch")
    if tc is not None and tc["nets"]:
        lines += ["", f"The same networks' training step in {tc['nets'][0]['framework']} on the same CPU "
                  f"({tc['nets'][0]['threads']} threads, oneDNN {'on' if tc['nets'][0]['mkldnn'] else 'off'}): "
                  "same batch, EuclideanLoss, Adam, no data loading (`rednet.bench_torch`; a test checks that it "
                  "computes what the Caffe net computes). The bound is the one above (OpenBLAS GEMM in Caffe); "
                  "PyTorch's own kernels can exceed it.", ""]
        caffe_by_net = {r["net"]: r for r in info["nets"]}
        lines += md_table(["net", "engine", "Caffe train: patches/s", "PyTorch: s/iter", "PyTorch: patches/s",
                           "PyTorch / Caffe", "bound (peak) / PyTorch time"],
                          [[t["net"], f"{t.get('engine', 'pytorch')} ({t.get('memory_format', 'contiguous')})",
                            f"{caffe_by_net[t['net']]['train']['patches_per_s']:.1f}",
                            f"{t['s_per_iter']:.3f} ({t['iterations']} it)", f"{t['patches_per_s']:.1f}",
                            f"{t['vs_caffe_train']:.2f}x", f"{t['vs_bound_peak']:.0%}"] for t in tc["nets"]])
    elif tc is not None:
        lines += ["", "PyTorch comparison: not run (torch is not installed in the project's Python; optional, "
                  "see docs/training.md)."]
    if info.get("builds"):
        lines += ["", "The stock and the batch-parallel build (`.caffe-fast`, tools/caffe_build/patches/fast/) "
                  "side by side: the same `caffe train`, alternated stock, fast, stock, fast (median s/iter); "
                  "restore: the 8-orientation ensemble of a 256x256 image (`Restorer.restore`, random weights; "
                  "the orientations in batches as a memory budget of "
                  f"{info['builds'][0].get('restore_max_memory_mb', RESTORE_MEMORY_MB)} MB allows; best of "
                  f"{info['builds'][0].get('restore_reps', 2)}).", ""]

        def restore_cells(b: dict) -> list[str]:
            if not b.get("restore_256_s"):
                return ["(not timed)", ""]
            bt = b.get("restore_256_batches") or {}
            return [f"{b['restore_256_s']['stock']:.3f} / {b['restore_256_s']['fast']:.3f}",
                    f"{_batches(bt.get('stock', []))} / {_batches(bt.get('fast', []))}"]
        lines += md_table(["net", "stock: s/iter", "fast: s/iter", "fast / stock (training)",
                           "restore 256x256 (ensemble) stock / fast s", "restore batches stock / fast", "load"],
                          [[b["net"], f"{b['stock_s_per_iter']:.3f}", f"{b['fast_s_per_iter']:.3f}", f"{b['speedup']:.2f}x",
                            *restore_cells(b), b["load"][0]] for b in info["builds"]])
        for b in info["builds"]:
            o = b.get("restore_256_opencv")
            if o:
                lines += ["", f"OpenCV's dnn module (`cv2.dnn.readNetFromCaffe`, {o['threads']} threads) runs the same "
                          f"{b['net']} ensemble restore (two batches of 4 orientations) in {o['seconds']:.3f} s; its result "
                          f"differs from Caffe's by at most {o['max_abs_diff_vs_caffe']:.1e}."]
    if info.get("layout"):
        lines += layout_report(info)
    if info.get("red30_blas_autodetect"):
        a = info["red30_blas_autodetect"]
        r30 = next((r for r in info["nets"] if r["net"] == "red30"), None)
        lines += ["", f"The environment sets `OPENBLAS_CORETYPE={m['env'].get('OPENBLAS_CORETYPE')}`. Without it "
                  f"OpenBLAS picks `{a['corename']}` on this CPU: GEMM {a['gemm']['peak']['gflops']:.0f} GFLOP/s "
                  f"(peak) / {a['gemm']['w64']['gflops']:.0f} GFLOP/s (64-map shapes), RED30 `caffe time` "
                  f"{a['ms_fwd_bwd'] / 1000:.3f} s (with the forced core: {r30['time']['ms_fwd_bwd'] / 1000:.3f} s; "
                  f"load {a['load'][0]})."]
    if info.get("red30_one_blas_thread"):
        t = info["red30_one_blas_thread"]
        r30 = next((r for r in info["nets"] if r["net"] == "red30"), None)
        lines += ["", f"RED30 `caffe time` with `OPENBLAS_NUM_THREADS=1`: {t['ms_fwd_bwd'] / 1000:.3f} s "
                  f"(default threads: {r30['time']['ms_fwd_bwd'] / 1000:.3f} s; load {t['load'][0]})."]
        if t.get("gemm_peak_gflops"):
            g2 = r30["gemm"]["peak"]["gflops"]
            lines += [f"Peak GEMM with one BLAS thread {t['gemm_peak_gflops']:.0f} GFLOP/s, with the default threads "
                      f"{g2:.0f} GFLOP/s: the other cores add {g2 / t['gemm_peak_gflops']:.2f}x to the GEMM rate (the "
                      "most a build that splits the work over the cores can gain on the GEMM part of the time)."]
    lines += [
        "",
        f"train: `bin/caffe train` through `rednet train` (the generated Adam solver and nets, a small "
        f"{info.get('task', TASK)} database of `rednet data` in HDF5 shards of {info['shard_size']} patches, a "
        f"shard load every {info['shard_size'] // 16} iterations), first {info['warmup_iterations']} iterations "
        "and the line after the last one not timed. "
        "caffe time: forward+backward of the same net, no solver update. bound: FLOPs x batch / GEMM rate. "
        "See docs/training.md.",
        "",
    ]
    return "\n".join(lines)


def cmd_bench(args) -> int:
    nets = args.nets.split(",") if args.nets else list(NETS)
    run_bench(nets, shard_size=args.shard_size, quick=args.quick, out_dir=args.out,
              threads_compare=not args.no_threads_compare, torch_compare=not args.no_torch,
              builds_compare=not args.no_builds, datasets=args.datasets)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="training throughput vs the BLAS GEMM bound (make bench)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--nets", help=f"comma-separated presets (default {','.join(NETS)})")
    p.add_argument("--shard-size", type=int, default=128, help="patches per HDF5 shard of the bench db")
    p.add_argument("--quick", action="store_true", help="a few iterations only (for tests)")
    p.add_argument("--out", help="output folder (default results/bench)")
    p.add_argument("--datasets", default=None,
                   help="benchmark image folder, for the bench's database (default $DATASETS)")
    p.add_argument("--no-threads-compare", action="store_true", help="skip the RED30 run with one BLAS thread")
    p.add_argument("--no-torch", action="store_true",
                   help="skip the PyTorch comparison (run only where torch is installed)")
    p.add_argument("--no-builds", action="store_true",
                   help="skip the stock vs batch-parallel Caffe comparison (run only where both are built)")
    p.set_defaults(func=cmd_bench)
