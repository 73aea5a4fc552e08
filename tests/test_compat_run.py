"""A run folder made before the restructuring of rednet.train still loads, resumes and restores.

``tests/fixtures/run_v1/runs/compat/`` was written by ``rednet train`` as of main 0b3c771
(see its README); the tests copy it and use it with today's code.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_train import cli, train_args

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "run_v1"
TOY = {"solver": "tests/fixtures/run_v1/toy/solver.prototxt", "data": "tests/fixtures/run_v1/toy/db/train.txt",
       "val": "tests/fixtures/run_v1/toy/db/val.txt", "deploy": "tests/fixtures/run_v1/toy/deploy.prototxt"}

pytestmark = pytest.mark.skipif(not (ROOT / ".caffe" / "env").is_file(), reason="Caffe not set up (make setup)")


@pytest.fixture
def old_run(tmp_path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURE / "runs" / "compat", runs / "compat")
    return runs / "compat"


def test_the_old_record_is_read_as_it_was_written(old_run):
    """Every key of the old run.json survives a load and a save (nothing dropped or renamed),
    and the model registry finds its newest snapshot and deploy net."""
    from rednet.models import from_run
    from rednet.runrecord import RunRecord
    before = json.loads((old_run / "run.json").read_text())
    rec = RunRecord.load(old_run)
    assert (rec.net, rec.task, rec.status, rec.iterations_trained) == ("toy", "denoise-s30", "done", 20)
    assert rec.to_dict() == before and list(rec.to_dict()) == list(before)
    rec.save()
    assert json.loads((old_run / "run.json").read_text()) == before
    spec = from_run(old_run)
    assert spec.weights.name == "toy_denoise-s30_iter_20.caffemodel" and spec.deploy == old_run / "deploy.prototxt"
    assert (spec.net, spec.task) == ("toy", "denoise-s30")


def test_the_old_run_resumes_and_restores(old_run, tmp_path):
    runs = old_run.parent
    r = cli(*train_args(TOY, runs, "compat", "--iters", "30"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "resuming compat: iteration 20 -> 30" in r.stdout
    info = json.loads((old_run / "run.json").read_text())
    assert len(info["sessions"]) == 2 and info["sessions"][-1]["start_iter"] == 20
    assert info["sessions"][-1]["schedule"]["train"]["start_sample"] == 20 * 16
    assert info["status"] == "done" and info["iterations_trained"] == 30
    assert info["created"] == json.loads((FIXTURE / "runs" / "compat" / "run.json").read_text())["created"]
    assert (old_run / "snapshots" / "toy_denoise-s30_iter_30.caffemodel").is_file()
    # restore an image with the run folder: its newest snapshot, its own deploy net
    from PIL import Image
    img = (np.random.default_rng(0).random((24, 20)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "noisy.png")
    r = cli("restore", "--model", str(old_run), "--task", "denoise", "--sigma", "30", "--no-ensemble",
            str(tmp_path / "noisy.png"), str(tmp_path / "out.png"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "toy_denoise-s30_iter_30.caffemodel" in r.stdout
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == img.shape and not np.array_equal(out, img)
