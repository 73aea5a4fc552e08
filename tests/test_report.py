"""rednet.report: the one writer of the result tables (tables, bench, demo)."""
from __future__ import annotations

import copy

from rednet import bench, demo
from rednet.report import csv_text, md_row, md_table


def test_markdown_and_csv_form():
    assert md_row(["a", 1, "", 2.5]) == "| a | 1 | | 2.5 |"
    assert md_table(["x", "y"], [["1", "2"], ["", "b"]]) == ["| x | y |", "|---|---|", "| 1 | 2 |", "| | b |"]
    assert md_table(["only"]) == ["| only |", "|---|"]
    assert csv_text(["a", "b"], [[1, ""], ["x,y", 2]]) == 'a,b\n1,\n"x,y",2\n'
    assert csv_text(["a"], [[1]], lineterminator="\r\n") == "a\r\n1\r\n"


def _net(name):
    return {"net": name, "batch": 16, "flops_per_patch": 3.2e9,
            "train": {"s_per_iter": 0.6, "timed": 10, "patches_per_s": 26.7},
            "time": {"ms_fwd_bwd": 550.0, "iterations": 3, "ms_conv_layers": 500.0, "ms_other_layers": 50.0},
            "bound_peak_s": 0.3, "bound_shape_s": 0.33, "ratio_train_peak": 0.5, "ratio_train_shape": 0.55,
            "gemm": {"peak": {"gflops": 90.0}, "w64": {"gflops": 80.0}},
            "breakdown_ms": {"gemm_at_net_shapes": 330, "conv_layers_beyond_gemm": 170, "other_layers": 50,
                             "solver_update_and_rest": 50}}


def test_bench_report_tables():
    """bench.md's tables, written by md_table: the rows as they were written by hand before."""
    info = {"started": "2026-12-01 00:00:00 UTC", "load_start": 1.0, "load_end": 2.0, "shard_size": 128,
            "warmup_iterations": 5,
            "machine": {"cpu": "Intel Xeon", "cores": 2, "caffe_binary": "bin/caffe", "caffe_release_flags": "-O2",
                        "blas": "libopenblas.so", "openblas": {"corename": "Haswell", "threads": 2}, "env": {}},
            "gemm": {"peak": {"gflops": 90.0, "shape": "a"}, "w64": {"gflops": 80.0, "shape": "b"}},
            "nets": [_net("red10")],
            "im2col": {"-O2": {"w64": {"im2col_ms": 1.0, "col2im_ms": 2.0}}},
            "builds": [{"net": "red10", "stock_s_per_iter": 0.8, "fast_s_per_iter": 0.4, "speedup": 2.0,
                        "restore_256_s": {"stock": 0.3, "fast": 0.25}, "restore_256_batches": {"stock": [8], "fast": [4, 4]},
                        "restore_256_opencv": {"seconds": 0.5, "threads": 2, "max_abs_diff_vs_caffe": 1e-6},
                        "load": [1.0, 1.1]},
                       {"net": "red30", "stock_s_per_iter": 3.0, "fast_s_per_iter": 2.0, "speedup": 1.5,
                        "load": [1.2, 1.3]}]}
    md = bench.report(copy.deepcopy(info)).splitlines()
    assert ("| net | batch | GFLOP/patch (fwd+bwd) | train: s/iter | train: patches/s | caffe time: s | "
            "conv/deconv share | bound (peak) s | bound (net GEMM) s | achieved/bound (peak) | "
            "achieved/bound (net GEMM) |") in md
    i = md.index("| red10 | 16 | 3.20 | 0.600 (10 it) | 26.7 | 0.550 (3 it) | 91% | 0.300 | 0.330 | 50% | 55% |")
    assert md[i - 1] == "|" + "---|" * 11
    assert "| red10 | 330 | 170 | 50 | 50 |" in md
    assert "| flags | w64: im2col / col2im ms |" in md and "| `-O2` | 1.00 / 2.00 |" in md
    assert "| red10 | 0.800 | 0.400 | 2.00x | 0.300 / 0.250 | 8 / 4+4 | 1.0 |" in md
    assert "| red30 | 3.000 | 2.000 | 1.50x | (not timed) | | 1.2 |" in md      # one restore timing per bench
    assert any(l.startswith("OpenCV's dnn module") and "0.500 s" in l and "1.0e-06" in l for l in md)
    assert not any("REDNET_DNNL_LAYOUT=0" in l for l in md)          # no layout rows: no section


def test_bench_report_layout_and_pytorch_rows():
    """The layout section (kept against NCHW in the fast build, oneDNN's reorder time per pass)
    and the two PyTorch engines, with the ratios the issue's targets name."""
    def prof(act_ms, act_calls):
        return {"passes": 3, "kinds": {"convolution": {"ms": 900.0, "calls": 45.0},
                                        "deconvolution": {"ms": 300.0, "calls": 15.0},
                                        "reorder": {"ms": act_ms + 9.0, "calls": act_calls + 30.0}},
                "reorder_activations": {"ms": act_ms, "calls": act_calls}, "reorder_other": {"ms": 9.0, "calls": 30.0}}
    info = {"started": "2026-12-08 00:00:00 UTC", "load_start": 1.0, "load_end": 2.0, "shard_size": 128,
            "warmup_iterations": 3,
            "machine": {"cpu": "AMD EPYC", "cores": 2, "caffe_binary": "bin/caffe", "caffe_release_flags": "-O2",
                        "blas": "libopenblas.so", "openblas": {"corename": "Zen", "threads": 2}, "env": {}},
            "gemm": {"peak": {"gflops": 90.0, "shape": "a"}, "w64": {"gflops": 80.0, "shape": "b"}},
            "nets": [dict(_net("red30"), train={"s_per_iter": 2.0, "timed": 20, "patches_per_s": 8.0})],
            "builds": [{"net": "red30", "stock_s_per_iter": 6.0, "fast_s_per_iter": 2.0, "speedup": 3.0,
                        "load": [1.0, 1.1]}],
            "layout": [{"net": "red30", "off_s_per_iter": 2.5, "on_s_per_iter": 2.0, "speedup": 1.25,
                        "profile": {"off": prof(372.4, 232.0), "on": prof(0.0, 0.0)},
                        "restore_256_s": {"off": 14.0, "on": 13.5}, "load": [1.5, 1.6]}],
            "torch": {"nets": [
                {"net": "red30", "engine": "pytorch", "memory_format": "contiguous", "framework": "PyTorch 2.13.0",
                 "threads": 2, "mkldnn": True, "s_per_iter": 2.6, "iterations": 12, "patches_per_s": 16 / 2.6,
                 "vs_caffe_train": 0.77, "vs_bound_peak": 0.4},
                {"net": "red30", "engine": "pytorch-cl", "memory_format": "channels_last", "framework": "PyTorch 2.13.0",
                 "threads": 2, "mkldnn": True, "s_per_iter": 2.5, "iterations": 12, "patches_per_s": 6.4,
                 "vs_caffe_train": 0.8, "vs_bound_peak": 0.42}]}}
    md = bench.report(info).splitlines()
    assert "| red30 | pytorch-cl (channels_last) | 8.0 | 2.500 (12 it) | 6.4 | 0.80x | 42% |" in md
    assert "| red30 | pytorch (contiguous) | 8.0 | 2.600 (12 it) | 6.2 | 0.77x | 40% |" in md
    assert ("| red30 | 2.500 | 2.000 | 1.25x | 372 (232) / 0 (0) | 9 (30) / 9 (30) | 900 (45) / 900 (45) | "
            "300 (15) / 300 (15) | 14.000 / 13.500 | 1.5 |") in md
    assert ("red30: training with the activations kept 1.25x the NCHW activations; the fast build 8.00 patches/s "
            "against the faster PyTorch row (pytorch-cl) 6.40: 1.25x; 3.00x stock.") in md


def test_demo_results_tables(tmp_path):
    rows = [{"image": "01", "name": "C.man", "size": "256x256", "psnr_noisy": 18.5, "psnr_red10": 26.0, "psnr_zoo": 27.0},
            {"image": "02", "name": "House", "size": "256x256", "psnr_noisy": 18.6, "psnr_red10": 27.5, "psnr_zoo": 28.0}]
    res = {"iterations": 500, "weights": "runs/demo/x.caffemodel", "rows": rows, "picture": None,
           "zoo": "red10_denoise-s30 (1,582 iterations)"}
    info = {"batch_size": 16, "sessions": [{"started": "2026-11-30T00:00:00", "ended": "2026-11-30T00:08:00"}]}
    lines = demo.training_section(res, info, tmp_path, False, {"patches": 2048})
    demo.write_page(tmp_path, ["# first leg"], lines)
    md = (tmp_path / "results.md").read_text().splitlines()
    assert md[0] == "# first leg" and "# Demo, second leg: RED10 trained here for a few minutes, Set12 at sigma = 30" in md
    assert ("| image | name | size | noisy input PSNR (dB) | RED10 PSNR (dB) | gain (dB) | zoo model (dB) |") in md
    assert "|---|---|---|---|---|---|---|" in md
    assert "| 01 | C.man | 256x256 | 18.50 | 26.00 | +7.50 | 27.00 |" in md
    assert "| **average** | | | **18.55** | **26.75** | **+8.20** | **27.50** |" in md
    assert (tmp_path / "training.csv").read_bytes().splitlines(keepends=True)[-1] == \
        b"average,,,18.5500,26.7500,8.2000,500,27.5000\r\n"
