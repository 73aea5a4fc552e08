"""The demo: its zoo leg on a fresh copy of the project without any datasets folder (the
shipped models on the shipped images), and end to end (slow): the zoo leg, then a real
database from BSD300, RED10 trained by bin/caffe, Set12 scored with pycaffe.  Shortened
(one image per set; 1.5 minutes of training, a small database) but every step is real."""
from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest
from conftest import fresh_copy

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_end_to_end(datasets_dir, tmp_path):
    env = dict(os.environ, DATASETS=str(datasets_dir))
    # own run/results/db folders: do not disturb a real `make demo`
    code = (
        "import sys; from pathlib import Path; from rednet import paths, __main__ as m; "
        f"t = Path({str(tmp_path)!r}); paths.RUNS = t / 'runs'; paths.RESULTS = t / 'results'; "
        "paths.DB = t / 'db'; sys.exit(m.main(sys.argv[1:]))")
    r = subprocess.run([str(ROOT / "bin" / "python"), "-c", code, "demo", "--minutes", "1.5", "--iters", "400",
                        "--max-images", "20", "--max-patches", "2048", "--shard-size", "1024", "--no-progress"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    res = tmp_path / "results" / "demo"
    md = (res / "results.md").read_text()
    assert md.startswith("# Demo: the shipped models") and "# Demo, second leg: RED10 trained here" in md
    rows = list(csv.DictReader(open(res / "training.csv")))
    assert len(rows) == 13 and rows[-1]["image"] == "average"
    iters = int(rows[0]["iterations"])
    assert iters > 0 and f"trained for {iters} iterations" in md
    # a real gain over the noisy input on average (the noisy input is ~18.6 dB at sigma 30)
    assert float(rows[-1]["psnr_red10"]) > float(rows[-1]["psnr_noisy"]) + 1.0
    assert list(res.glob("set12_05_*.png"))
    # running it again resumes: nothing retrained beyond the budget, same iteration count
    r2 = subprocess.run([str(ROOT / "bin" / "python"), "-c", code, "demo", "--minutes", "1.5", "--iters", "400",
                         "--max-images", "20", "--max-patches", "2048", "--shard-size", "1024", "--no-progress"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert int(list(csv.DictReader(open(res / "training.csv")))[0]["iterations"]) >= iters


def test_demo_refuses_a_swapped_set12_image_before_training(datasets_dir, tmp_path):
    """Set12 is read through the verified loader: 01.png replaced by 02.png is named, exit 2,
    before any database is built or any training starts."""
    fake = tmp_path / "datasets"
    fake.mkdir()
    for d in datasets_dir.iterdir():
        if d.name != "Set12":
            (fake / d.name).symlink_to(d)
    (fake / "Set12").mkdir()
    for p in (datasets_dir / "Set12").iterdir():
        (fake / "Set12" / p.name).symlink_to(datasets_dir / "Set12" / ("02.png" if p.name == "01.png" else p.name))
    code = ("import sys; sys.argv[0] = 'rednet'; from rednet import paths; "
            f"paths.RUNS = paths.Path({str(tmp_path / 'runs')!r}); "
            f"paths.DB = paths.Path({str(tmp_path / 'db')!r}); "
            f"paths.RESULTS = paths.Path({str(tmp_path / 'results')!r}); "
            "from rednet.__main__ import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([str(ROOT / "bin" / "python"), "-c", code, "demo", "--datasets", str(fake), "--no-progress",
                        "--iters", "2", "--minutes", "0.2", "--max-images", "2", "--max-patches", "64",
                        "--shard-size", "64"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Set12/01.png" in r.stderr and "sha256" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "db").exists()


def test_demo_on_a_fresh_clone_without_datasets_starts_from_the_zoo(tmp_path):
    """`make demo` with no DATASETS and no network: the zoo leg writes its page from the
    shipped models and images (here one image per set), the training leg is skipped with one
    line naming the missing BSD300; each number is the cell the tables compute."""
    clone = fresh_copy(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if k not in ("DATASETS", "REFERENCE")}
    env["REDNET_OFFLINE"] = "1"
    r = subprocess.run(["make", "--no-print-directory", "demo", "LIMIT=1"], cwd=clone, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    skipped = [l for l in r.stdout.splitlines() if "training leg skipped" in l]
    assert len(skipped) == 1 and "BSD300: missing" in skipped[0] and "make datasets" in skipped[0]
    res = clone / "results" / "demo"
    md = (res / "results.md").read_text()
    assert md.startswith("# Demo: the shipped models") and "first 1 images" in md
    assert "Skipped:" in md and not (clone / "runs").exists() and not (clone / "data" / "db").exists()
    cells = list(csv.DictReader(open(res / "zoo.csv")))
    assert len(cells) == 7
    done = [c for c in cells if c["psnr_one_pass"]]
    shipped = {p.name for p in (ROOT / "models").iterdir() if (p / "readme.md").is_file()}
    # every shipped model of these tasks restores at least one cell, each with its picture
    used = {Path(c["weights"]).parent.name for c in done}
    from rednet import tables as T
    cfg = T.EvalConfig(ensemble=False, zoo_only=True, limit=1, out=tmp_path / "cells")
    for c in cells:           # each cell restored by the model the tables pick for it (per level first)
        spec = T.TABLES[int(c["table"])]
        m, _ = T.find_red_model(c["method"], spec, int("".join(ch for ch in c["setting"] if ch.isdigit())), cfg)
        assert (Path(c["weights"]).parent.name if c["psnr_one_pass"] else None) == (m and m.weights.parent.name), c
    assert used <= shipped and {"red10_denoise-s30", "red10_sr-x3", "red30_sr-mixed"} <= used
    assert used & {"red30_denoise-mixed", "red30_denoise-s30"}
    for c in done:
        pic = res / f"t{c['table']}_{c['dataset']}_{c['setting'].replace('=', '')}_{c['method']}.png"
        assert pic.is_file() and pic.name in md, pic
        assert f"{float(c['psnr_one_pass']):.2f}" in md
    for c in cells:
        if not c["psnr_one_pass"]:
            assert c["missing"], c
    # the numbers are the tables' own: the same cell computed here, one pass, first image
    c = next(c for c in done if c["method"] == "RED10" and c["dataset"] == "denoise14")
    cell = T.evaluate_cell(T.TABLES[int(c["table"])], c["dataset"], c["setting"], c["method"], cfg, {})
    assert abs(cell.rows[0]["psnr"] - float(c["psnr_one_pass"])) < 1e-3
