"""rednet.bench: FLOP counting, parsing of real `caffe time`/`caffe train` output, the bench run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rednet import bench, netgen  # noqa: E402

pytestmark = pytest.mark.skipif(not (ROOT / ".caffe" / "env").is_file(), reason="Caffe not set up (make setup)")


@pytest.mark.parametrize("name", ["red10", "red30", "red30-official"])
def test_flops_per_patch_by_hand(name, tmp_path, caffe):
    """Counted from the net that Caffe builds = the closed form for 3x3, stride-1 RED nets."""
    cfg = netgen.get_preset(name)
    p = tmp_path / "deploy.prototxt"
    p.write_text(netgen.render_deploy(cfg))
    f = bench.conv_flops(p)
    w, hw, n = cfg.width, 50 * 50, cfg.depth
    inner = (n - 2) * 2 * 9 * w * w * hw      # width -> width layers, forward
    edge = 2 * 2 * 9 * w * 1 * hw             # first (1 -> w) and last (w -> 1) layer, forward
    assert f["forward"] == inner + edge
    # backward: weight + input gradients, no input gradient for the first layer
    assert f["backward"] == 2 * inner + 2 * edge - 2 * 9 * w * hw
    assert len(f["layers"]) == n


def test_parse_real_caffe_time_output(tmp_path):
    """`caffe time` on the one-layer GEMM net: averages and per-layer times are read."""
    p = tmp_path / "g.prototxt"
    p.write_text(bench.GEMM_SHAPE_NET.format(batch=4, cin=288, cout=32, hw=50))
    out = bench.run_caffe(["time", "-model", str(p), "-iterations", "2"], tmp_path / "g.log")
    t = bench.parse_time(out)
    assert t["Forward-Backward"] > 0 and t["Forward pass"] > 0 and t["Backward pass"] > 0
    assert set(t["layers"]) == {"x", "conv"}
    assert t["layers"]["conv"] <= t["Forward-Backward"] * 1.5 + 0.1


def test_seconds_per_iteration_from_a_real_train_log(tmp_path):
    from test_train import cli, train_args, write_toy
    toy = write_toy(tmp_path / "toy", max_iter=12, snapshot=12)
    assert cli(*train_args(toy, tmp_path / "runs", "b")).returncode == 0
    text = (tmp_path / "runs" / "b" / "train.log").read_text()
    spi, n = bench.train_seconds_per_iter(text, warmup=3)
    assert n == 12 - 3 and 0 < spi < 5


def test_bench_trains_through_rednet_data_and_rednet_train(tmp_path, datasets_dir):
    """The bench's database is a real one of rednet.patches (config.json, sha256-checked images),
    its training a run of rednet.train (solver and nets rendered from the templates); the
    timing leaves out the warm-up and the line Caffe prints after the last iteration."""
    import subprocess
    from rednet import paths, patches
    db = bench.bench_db(tmp_path, 32, 2, datasets_dir)
    cfg = json.loads((db.parent / "config.json").read_text())
    assert (cfg["task"], cfg["shard_size"], cfg["max_patches"]) == (bench.TASK, 32, 64)
    assert cfg["code"] and cfg["manifests"] and db.parent / "val.txt" in db.parent.iterdir()
    assert len(patches.read_list(db)) == 2
    iters = bench.WARMUP + 3
    r = bench.bench_net("red10", tmp_path, db, iters, 1)
    run = bench.run_dir(tmp_path, "red10")
    rec = json.loads((run / "run.json").read_text())
    assert rec["sources"]["solver"] == "prototxt_templates/solver.prototxt.j2"       # make train's way
    assert rec["sources"]["parameters"] == netgen.get_preset("red10").params()
    assert rec["data"]["train"]["list"] == paths.rel(db)
    assert rec["data"]["train"]["patches"] == 64 and rec["status"] == "done"
    assert "display: 1" in (run / "solver.prototxt").read_text()
    log = (run / "train.log").read_text()
    assert f"Iteration {iters}, loss" in log            # after training: logged, not timed
    assert r["train"]["timed"] == iters - 1 - bench.WARMUP and r["train"]["s_per_iter"] > 0
    assert r["batch"] == 16 and r["time"]["ms_fwd_bwd"] > 0
    assert bench.train_seconds_per_iter(log, until=iters)[1] == iters - 1 - bench.WARMUP
    assert bench.train_seconds_per_iter(log)[1] == iters - bench.WARMUP
    # without the images: one line naming the parameter, exit status 2, nothing written
    out = tmp_path / "out"
    p = subprocess.run([str(ROOT / "bin" / "python"), "-m", "rednet", "bench", "--nets", "red10", "--out", str(out),
                        "--datasets", str(tmp_path / "none")], cwd=ROOT, capture_output=True, text=True)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and err[0].startswith("error: DATASETS="), p.stderr
    assert not out.exists()


def test_machine_facts_name_caffes_blas():
    m = bench.machine()
    assert m["cores"] >= 1
    assert m["blas"] is None or "blas" in m["blas"]


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path, datasets_dir):
    """The whole bench on RED10 with a handful of iterations: numbers are positive and consistent."""
    info = bench.run_bench(["red10"], quick=True, out_dir=tmp_path, datasets=datasets_dir)
    r = info["nets"][0]
    assert r["train"]["patches_per_s"] > 0 and r["time"]["patches_per_s"] > 0
    assert r["bound_peak_s"] > 0 and 0 < r["ratio_train_peak"] < 2
    assert json.loads((tmp_path / "bench.json").read_text())["nets"][0]["net"] == "red10"
    md = (tmp_path / "bench.md").read_text()
    assert "| red10 |" in md
    if info["torch"]["version"]:        # the optional PyTorch row, where torch is installed
        t = info["torch"]["nets"][0]
        assert t["net"] == "red10" and t["patches_per_s"] > 0
        assert "PyTorch" in md and f"{t['patches_per_s']:.1f}" in md
    else:
        assert "PyTorch comparison: not run" in md


def test_summary_csv_has_a_row_per_net_and_engine():
    """results/bench/summary.csv: stock and fast rows where both builds ran side by side."""
    info = {"machine": {"caffe_build": "fast"},
            "nets": [{"net": "red10", "batch": 16, "bound_peak_s": 0.25, "train": {"s_per_iter": 0.5}},
                     {"net": "red30", "batch": 16, "bound_peak_s": 1.0, "train": {"s_per_iter": 2.0}}],
            "builds": [{"net": "red10", "stock_s_per_iter": 0.8, "fast_s_per_iter": 0.4,
                        "restore_256_s": {"stock": 0.3, "fast": 0.25}, "restore_256_opencv": {"seconds": 0.5}},
                       {"net": "red30", "stock_s_per_iter": 3.0, "fast_s_per_iter": 2.0}],
            "layout": [{"net": "red10", "off_s_per_iter": 0.5, "on_s_per_iter": 0.4, "restore_256_s": {"off": 0.27, "on": 0.25}}],
            "torch": {"nets": [{"net": "red10", "patches_per_s": 60.0, "vs_bound_peak": 0.9},
                               {"net": "red10", "engine": "pytorch-cl", "patches_per_s": 64.0, "vs_bound_peak": 0.96}]}}
    rows = bench.summary_csv(info).splitlines()
    assert rows[0] == "net,engine,train_patches_per_s,restore_256_s,pct_gemm_bound"
    assert rows[1:] == ["red10,caffe-stock,20.00,0.3000,31.2", "red10,caffe-fast,40.00,0.2500,62.5",
                        "red10,opencv,,0.5000,", "red10,caffe-fast-nchw,32.00,0.2700,50.0",
                        "red30,caffe-stock,5.33,,33.3", "red30,caffe-fast,8.00,,50.0",
                        "red10,pytorch,60.00,,90.0", "red10,pytorch-cl,64.00,,96.0"]
    # the restore is timed once per bench: for RED30 where measured, else the first net
    assert bench.restore_net(["red10", "red30"]) == "red30" and bench.restore_net(["red20", "red10"]) == "red20"


def test_opencv_restore_timing_is_the_same_net(tmp_path):
    """The OpenCV dnn row restores with the same deploy net and weights as Caffe: the same
    ensemble result (to float rounding), in two batches of 4 orientations."""
    pytest.importorskip("cv2")
    from test_restore import red_prototxt
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(red_prototxt(depth=4, width=4))
    t = bench.restore_timing("stock", deploy, 1, engine="opencv")
    assert t["batches"] == [4, 4] and t["seconds"] > 0
    assert t["max_abs_diff_vs_caffe"] < 1e-4


@pytest.mark.parametrize("build", ["stock", pytest.param("fast", marks=pytest.mark.skipif(
    not (ROOT / ".caffe-fast" / "env").is_file(), reason="the batch-parallel build .caffe-fast/ is absent"))])
def test_restore_timing_runs_the_batched_ensemble(build, tmp_path, monkeypatch):
    """The bench's 256x256 restore is the 8-orientation ensemble of `Restorer.restore`, all 8
    orientations (a square image) in one forward pass where the budget allows, fewer where not;
    the report and summary.csv show it."""
    from test_restore import red_prototxt
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(red_prototxt(depth=4, width=4))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    t = bench.restore_timing(build, deploy, 1)
    assert t["batches"] == [8] and t["seconds"] > 0
    assert t["threads"] == (2 if build == "fast" else 1)
    # 150 floats a pixel: this net's blobs take 29 a pixel and image; stock adds its im2col
    # buffers, 90 whatever the batch (29 n + 90: 2 fit); the fast build's oneDNN path has none,
    # only its scratch copies of the widest layer's input and output, 8 (37 n: 4 fit)
    small = bench.restore_timing(build, deploy, 1, max_memory_mb=256 * 256 * 4 * 150 / 2 ** 20)
    assert small["batches"] == ([2, 2, 2, 2] if build == "stock" else [4, 4])
    assert sorted(small["batches"], reverse=True) == small["batches"] and 1 < max(small["batches"]) < 8
    assert sum(small["batches"]) == 8
    assert bench._batches([8]) == "8" and bench._batches([4, 4]) == "4+4" and bench._batches([1] * 8) == "1x8"
