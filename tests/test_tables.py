"""Tables 1-7: the paper's numbers file, and `tables` end to end with a real (tiny) Caffe model."""
from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rednet import tables
from rednet.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- data/paper_tables.csv
def test_paper_tables_shape():
    """7 tables, every cell of each (dataset x setting x method) present exactly once."""
    paper = tables.read_paper()
    assert sorted({k[0] for k in paper}) == [1, 2, 3, 4, 5, 6, 7]
    want = {(t, d, s, m) for t, spec in tables.TABLES.items() for d, s, m in spec.cells()}
    assert set(paper) == want
    counts = {t: sum(1 for k in paper if k[0] == t) for t in range(1, 8)}
    assert counts == {1: 36, 2: 36, 3: 27, 4: 27, 5: 27, 6: 8, 7: 9}
    for key, row in paper.items():
        assert row["status"] in ("paper", "quoted", "missing"), key
        if row["status"] == "missing":
            assert row["psnr"] is None and row["ssim"] is None, key
        else:
            assert row["source"] or row["status"] == "paper", key
            assert row["psnr"] is None or 15 < row["psnr"] < 45, key
            assert row["ssim"] is None or 0 < row["ssim"] < 1, key
            assert row["psnr"] is not None or row["ssim"] is not None, key


def test_paper_tables_reader_refuses_bad_files(tmp_path):
    good = tables.PAPER_CSV.read_text().splitlines()
    header = next(i for i, l in enumerate(good) if l.startswith("table,"))
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join(good + [good[header + 1]]) + "\n")
    with pytest.raises(UserError, match="duplicate cell"):
        tables.read_paper(dup)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(good[: header + 1] + ["1,denoise14,sigma=10,BM3D,abc,,paper,x"]) + "\n")
    with pytest.raises(UserError, match="psnr='abc' is not a number"):
        tables.read_paper(bad)


# --------------------------------------------------------------------------- end to end
@pytest.fixture
def model_dirs(tmp_path, monkeypatch, caffe):
    """A models/ folder with a tiny random RED net for red10 sr-x2 and denoise-s30; runs/ empty."""
    from test_restore import make_model
    from rednet import restore
    models, runs = tmp_path / "models", tmp_path / "runs"
    runs.mkdir()
    deploy, weights = make_model(models / "red10", caffe, depth=4, width=8, seed=5)
    (models / "red10" / "sr-x2.caffemodel").write_bytes(weights.read_bytes())
    (models / "red10" / "denoise-s30.caffemodel").write_bytes(weights.read_bytes())
    weights.unlink()
    monkeypatch.setattr(restore, "MODELS", models)
    monkeypatch.setattr(restore, "RUNS", runs)
    return models


def _read_csv(p):
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.datasets
def test_tables_end_to_end_with_a_real_model(tmp_path, model_dirs, datasets_dir):
    from rednet import metrics
    from rednet.datasets import load_set
    from rednet.restore import Restorer
    out = tmp_path / "results"
    cfg = tables.EvalConfig(datasets=datasets_dir, ensemble=False, limit=2, tables=(1, 3), out=out)
    res = tables.run(cfg)
    rows = _read_csv(out / "tables.csv")
    assert list(rows[0].keys()) == list(tables.CSV_COLUMNS)
    ours = {(r["table"], r["dataset"], r["setting"], r["method"]): r for r in rows if r["source"] == "ours"}
    assert set(ours) == {("1", "denoise14", "sigma=30", "RED10"),
                         ("3", "Set5", "x2", "RED10"),
                         ("3", "Set5", "x2", "Bicubic"), ("3", "Set5", "x3", "Bicubic"),
                         ("3", "Set5", "x4", "Bicubic")}
    # every cell of both tables has its paper row
    assert sum(1 for r in rows if r["source"] == "paper") == 36 + 3 * 10 - 3   # Bicubic: no paper row
    # the SR number is the protocol applied to the net by hand
    r = Restorer(model_dirs / "red10" / "deploy.prototxt", model_dirs / "red10" / "sr-x2.caffemodel")
    scores = []
    for _, img in load_set("Set5", datasets_dir)[:2]:
        hr, up = metrics.sr_pair(img, 2)
        scores.append(metrics.sr_scores(r.forward(up.astype(np.float32)), hr, 2, "authors"))
    assert float(ours[("3", "Set5", "x2", "RED10")]["psnr"]) == pytest.approx(np.mean([s[0] for s in scores]), abs=1e-3)
    assert float(ours[("3", "Set5", "x2", "RED10")]["ssim"]) == pytest.approx(np.mean([s[1] for s in scores]), abs=1e-4)
    # the denoising number uses the seeded noise
    dn = []
    for name, clean in load_set("denoise14", datasets_dir)[:2]:
        noisy = metrics.add_noise(clean, 30, f"denoise14/{name}")
        dn.append(metrics.denoise_scores(r.forward(noisy), clean)[0])
    assert float(ours[("1", "denoise14", "sigma=30", "RED10")]["psnr"]) == pytest.approx(np.mean(dn), abs=1e-3)
    # per-image CSVs and the markdown
    per = out / "per_image" / "t3_Set5_x2_RED10.csv"
    assert len(_read_csv(per)) == 2
    md = (out / "tables.md").read_text()
    assert "## Table 1" in md and "## Table 3" in md
    assert "RED20: **no model** for sr-x2, sr-x3, sr-x4" in md
    assert "RED10: **no model** for denoise-s10, denoise-s50, denoise-s70" in md
    assert "EPLL: not implemented in this project" in md
    assert "first 2 images" in md
    assert res["missing"][(3, "Set5", "x3", "RED10")].startswith("no model for sr-x3")
    # a second run reuses the cells; new weights make it recompute just that model's cells
    # (inode, not mtime: cells are written to a temporary name and renamed, so a rewrite is
    # a new inode, while two writes can share an mtime on a coarse-clock file system)
    ino, before = per.stat().st_ino, per.read_text()
    t1 = out / "per_image" / "t1_denoise14_sigma30_RED10.csv"
    t1_ino = t1.stat().st_ino
    tables.run(cfg)
    assert per.stat().st_ino == ino
    from test_restore import make_model
    import caffe
    _, w2 = make_model(tmp_path / "other", caffe, depth=4, width=8, seed=9)
    os.replace(w2, model_dirs / "red10" / "sr-x2.caffemodel")
    os.utime(model_dirs / "red10" / "sr-x2.caffemodel", ns=(0, 0))  # same size, any mtime: content decides
    tables.run(cfg)
    assert per.stat().st_ino != ino and per.read_text() != before
    assert t1.stat().st_ino == t1_ino   # the denoising model did not change


def test_tables_bm3d_uses_the_same_noise_and_cache(tmp_path, datasets_dir, monkeypatch):
    bm3d = pytest.importorskip("bm3d")
    from rednet import metrics
    from rednet.datasets import load_set
    monkeypatch.setattr(tables, "CACHE", tmp_path / "cache")
    cfg = tables.EvalConfig(datasets=datasets_dir, bm3d=True, limit=1, tables=(1,), out=tmp_path / "r")
    rows, what, reason = tables.evaluate_cell(tables.TABLES[1], "denoise14", "sigma=50", "BM3D", cfg, {})
    assert reason is None and len(rows) == 1
    name, clean = load_set("denoise14", datasets_dir)[0]
    noisy = metrics.add_noise(clean, 50, f"denoise14/{name}")
    want = metrics.denoise_scores(bm3d.bm3d(noisy.astype(np.float64), sigma_psd=50 / 255), clean)
    assert rows[0]["psnr"] == pytest.approx(want[0], abs=1e-3)
    assert list((tmp_path / "cache" / "bm3d").rglob("*.npy"))


def _cli(*args):
    env = dict(os.environ, GLOG_minloglevel="2")
    return subprocess.run([str(ROOT / "bin" / "python"), "-m", "rednet", "tables", *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,msg", [(["--tables", "9"], "--tables '9': expected numbers 1-7"),
                                      (["--sr-protocol", "x"], "--sr-protocol x: expected one of"),
                                      (["--limit", "0"], "--limit 0: expected a positive")])
def test_tables_cli_bad_input(tmp_path, args, msg):
    p = _cli(*args, "--out", tmp_path / "r")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], p.stderr
    assert not (tmp_path / "r" / "tables.md").exists()
