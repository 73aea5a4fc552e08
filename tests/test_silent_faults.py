"""Paths that once ended silently wrong (docs/faults.md, "Silent results"): each is done for
real, with the shipped models, pycaffe, `make` and `bin/caffe`, and each test fails on the
code before its fix.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from test_faults import ROOT, cli, needs_caffe, one_error_line

pytestmark = needs_caffe

SHIPPED = ("docs/results", "models")


def digest_tree(*folders: str) -> dict:
    out = {}
    for f in folders:
        for p in sorted((ROOT / f).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(ROOT))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# --------------------------------------------------------------------------- 1. zoo-results
def test_a_partial_zoo_results_is_refused_and_writes_nothing_shipped():
    before = digest_tree(*SHIPPED)
    r = make("zoo-results", "TABLES=1", "ENSEMBLE=0", "LIMIT=2")
    err = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert "TABLES=1 LIMIT=2 ENSEMBLE=0 is a partial or non-default evaluation" in err[0]
    assert digest_tree(*SHIPPED) == before
    assert not (ROOT / "results" / "zoo-single" / "per_image").exists() or before == digest_tree(*SHIPPED)


def test_zoo_results_passes_every_argument_once_whatever_its_value():
    """TABLES=1 SEED=1: the old recipe's filter-out also dropped SEED's value (equal to TABLES)."""
    r = make("-n", "zoo-results", "TABLES=1", "SEED=1")
    assert r.returncode == 0, r.stderr
    (line,) = [l for l in r.stdout.splitlines() if "rednet zoo-results" in l]
    assert "--tables '1'" in line and "--seed '1'" in line and line.count("rednet") == 1


def test_several_files_are_replaced_all_or_none(tmp_path):
    from rednet.errors import atomic_write_all
    a, blocker = tmp_path / "a.md", tmp_path / "not-a-folder"
    a.write_text("old")
    blocker.write_text("a file where a folder is expected")
    with pytest.raises(OSError):
        atomic_write_all({a: "new", blocker / "b.md": "new"})
    assert a.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "not-a-folder"]


@pytest.mark.datasets
def test_an_absurd_cell_is_never_written_into_a_card(tmp_path, monkeypatch, caffe, datasets_dir):
    """A model whose output is garbage (weights 40x too large, its card's sha1 right) gives a
    cell far below 0 dB: the cards are left as they were."""
    from test_restore import empty_zoo, make_model, make_zoo_model

    from rednet import tables, zoo
    from rednet.errors import UserError
    models = empty_zoo(tmp_path, monkeypatch)
    deploy, weights = make_model(tmp_path / "made", caffe, depth=4, width=8, seed=5, scale=2.0)
    folder = make_zoo_model(models, "red10_denoise-s30", "red10", "denoise-s30", deploy, weights)
    card_before = (folder / zoo.CARD).read_text()
    out = tmp_path / "out"
    tables.run(tables.EvalConfig(datasets=datasets_dir, ensemble=False, limit=1, tables=(1,), out=out, zoo_only=True))
    with pytest.raises(UserError, match=r"PSNR -\d+\.\d\d is not a real cell"):
        zoo.cells(out, root=models)
    assert (folder / zoo.CARD).read_text() == card_before


# --------------------------------------------------------------------------- 2. a damaged zoo model
@pytest.fixture
def damaged_zoo(tmp_path, monkeypatch):
    """A copy of the shipped red10_denoise-s30 in a zoo of its own, one exponent byte flipped."""
    from test_restore import empty_zoo

    from rednet import zoo
    models = empty_zoo(tmp_path, monkeypatch)
    src = ROOT / "models" / "red10_denoise-s30"
    folder = models / src.name
    shutil.copytree(src, folder)
    card = zoo.read_card(folder)
    w = folder / card["caffemodel"]
    data = bytearray(w.read_bytes())
    data[len(data) // 2 + 3] ^= 0x40
    w.write_bytes(bytes(data))
    return folder


def _noisy_png(path: Path) -> Path:
    from PIL import Image
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(path)
    return path


def test_a_damaged_zoo_model_is_refused_by_restore(damaged_zoo, tmp_path, capsys):
    from rednet.__main__ import main
    src = _noisy_png(tmp_path / "in.png")
    for model in ([], ["--model", str(damaged_zoo)],
                  ["--model", str(damaged_zoo / "red10_denoise-s30.caffemodel")]):
        rc = main(["restore", "--task", "denoise", "--sigma", "30", *model, str(src), str(tmp_path / "out.png")])
        err = capsys.readouterr().err
        one_error_line((rc, err), "red10_denoise-s30.caffemodel: sha1", "differs from its card's")
        assert not (tmp_path / "out.png").exists()


@pytest.mark.datasets
def test_a_damaged_zoo_model_gives_no_table_cell(damaged_zoo, tmp_path, datasets_dir):
    from rednet import tables
    from rednet.errors import UserError
    with pytest.raises(UserError, match="differs from its card's"):
        tables.run(tables.EvalConfig(datasets=datasets_dir, limit=1, tables=(1,), out=tmp_path / "out",
                                     zoo_only=True, ensemble=False))


# --------------------------------------------------------------------------- 3. a model of another task
def test_a_bare_copy_of_an_sr_model_is_refused_for_denoising(tmp_path):
    """The shipped SR weights copied without their card are still known by their sha1."""
    bare = tmp_path / "bare"
    bare.mkdir()
    src = ROOT / "models" / "red10_sr-x3"
    shutil.copyfile(src / "red10_sr-x3.caffemodel", bare / "model.caffemodel")
    shutil.copyfile(src / "deploy.prototxt", bare / "deploy.prototxt")
    img = _noisy_png(tmp_path / "in.png")
    r = cli("restore", "--task", "denoise", "--sigma", "30", "--model", str(bare / "model.caffemodel"),
            "--no-ensemble", str(img), str(tmp_path / "out.png"))
    one_error_line(r, "trained for sr-x3, not for denoise-s30")
    assert not (tmp_path / "out.png").exists()


def test_a_model_nothing_describes_says_so(tmp_path, caffe):
    from test_restore import make_model
    deploy, weights = make_model(tmp_path / "m", caffe, depth=4, width=8)
    img = _noisy_png(tmp_path / "in.png")
    r = cli("restore", "--task", "denoise", "--sigma", "30", "--model", str(weights), "--no-ensemble", str(img),
            str(tmp_path / "out.png"))
    assert r.returncode == 0, r.stderr
    assert "note: nothing says what" in r.stdout and "trained for denoise-s30" in r.stdout
    assert "? ?" not in r.stdout and "(trained for: unknown)" in r.stdout


def test_a_zoo_folder_is_accepted_as_model(tmp_path):
    img = _noisy_png(tmp_path / "in.png")
    r = cli("restore", "--task", "denoise", "--sigma", "30", "--model", str(ROOT / "models" / "red10_denoise-s30"),
            "--no-ensemble", str(img), str(tmp_path / "out.png"))
    assert r.returncode == 0, r.stderr
    assert "red10 denoise-s30" in r.stdout and (tmp_path / "out.png").is_file()


# --------------------------------------------------------------------------- 6. quoting
EVIL = "a'b; touch {pwned}; echo $$(touch {pwned}2) \"c d\""

#: every make target that runs a command, with the variables that reach it
TARGET_VARS = {
    "train": ["NET", "TASK", "SIGMA", "SCALE", "ITERS", "RUN", "MODE", "SNAPSHOT", "MINUTES", "BLAS_CORE",
              "FROM_MODEL", "MOMENT_BATCHES", "RECIPE", "LR", "LR_STEPS", "LR_GAMMA"],
    "data": ["TASK", "STRIDE", "NOISE_REPEATS", "SEED", "MAX_IMAGES", "MAX_PATCHES", "SHARD_SIZE", "AUGMENT",
             "DB_DIR", "DATA_WORKERS"],
    "tables": ["TABLES", "SR_PROTOCOL", "BSD200_SCALE", "SEED", "MAX_MEMORY", "LIMIT", "NO_ENSEMBLE_TABLES"],
    "tables-quick": ["TABLES", "LIMIT"],
    "restore": ["IN", "OUT", "TASK", "SIGMA", "SCALE", "MODEL"],
    "zoo-export": ["RUN", "NAME", "ZOO_ROOT"],
    "zoo-results": ["ZOO_NO_ENSEMBLE", "SEED", "TABLES"],
    "curves": ["RUNS"],
    "bench": ["BENCH_NETS"],
    "demo": ["BLAS_CORE"],
    "datasets": ["BSDS300_URL", "BSDS500_URL"],
}


@pytest.mark.parametrize("target", sorted(TARGET_VARS))
def test_every_make_variable_reaches_the_command_as_one_word(target, tmp_path):
    """Each variable set to a value with quotes, ';', $(...) and spaces arrives as one argument
    (the command is a recorder standing in for bin/python), and nothing in it is run."""
    dump = tmp_path / "argv.jsonl"
    recorder = tmp_path / "record.py"
    recorder.write_text("import json, os, sys\n"
                        f"open({str(dump)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    pwned = tmp_path / "PWNED"
    for var in TARGET_VARS[target]:
        value = EVIL.format(pwned=pwned)
        needed = {"restore": ["IN=in.png", "OUT=out.png", "TASK=denoise"], "data": ["TASK=denoise"],
                  "zoo-export": ["RUN=r"]}.get(target, [])
        extra = [n for n in needed if not n.startswith(f"{var}=")]
        r = subprocess.run(["make", "--no-print-directory", target, f"{var}={value}", *extra,
                            f"PY={os.environ.get('PYTHON', 'python3')} {recorder}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert not pwned.exists() and not Path(f"{pwned}2").exists(), (target, var, r.stderr)
        calls = [json.loads(l) for l in dump.read_text().splitlines()] if dump.exists() else []
        dump.unlink(missing_ok=True)
        want = value.replace("$$", "$")
        words = [w for call in calls for w in call]
        if var == "RUNS":      # a list: each of its words one argument
            assert calls and want.split() == calls[0][-len(want.split()):], (calls, r.stderr)
        else:
            assert any(want in w for w in words), (target, var, calls, r.stderr)
