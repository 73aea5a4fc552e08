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
import sys
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
    "figures": ["FIGURES", "FIGURES_ITERS", "LIMIT"],
    "bench": ["BENCH_NETS"],
    "demo": ["BLAS_CORE", "LIMIT"],
    "datasets": ["BSDS300_URL", "BSDS500_URL"],
}
#: variables that reach the command through its environment (any command may fetch a set)
ENV_VARS = ("BSDS300_URL", "BSDS500_URL")


@pytest.mark.parametrize("target", sorted(TARGET_VARS))
def test_every_make_variable_reaches_the_command_as_one_word(target, tmp_path):
    """Each variable set to a value with quotes, ';', $(...) and spaces arrives as one argument
    (the command is a recorder standing in for bin/python), and nothing in it is run."""
    dump = tmp_path / "argv.jsonl"
    recorder = tmp_path / "record.py"
    recorder.write_text("import json, os, sys\n"
                        f"env = [os.environ.get(k, '') for k in {ENV_VARS!r}]\n"
                        f"open({str(dump)!r}, 'a').write(json.dumps(sys.argv[1:] + env) + '\\n')\n")
    pwned = tmp_path / "PWNED"
    for var in TARGET_VARS[target]:
        value = EVIL.format(pwned=pwned)
        needed = {"restore": ["IN=in.png", "OUT=out.png", "TASK=denoise"], "data": ["TASK=denoise"],
                  "zoo-export": ["RUN=r"]}.get(target, [])
        extra = [n for n in needed if not n.startswith(f"{var}=")]
        r = subprocess.run(["make", "--no-print-directory", target, f"{var}={value}", *extra,
                            f"PY={sys.executable} {recorder}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert not pwned.exists() and not Path(f"{pwned}2").exists(), (target, var, r.stderr)
        calls = [json.loads(l) for l in dump.read_text().splitlines()] if dump.exists() else []
        dump.unlink(missing_ok=True)
        want = value.replace("$$", "$")
        words = [w for call in calls for w in call]
        if var == "RUNS":      # a list: each of its words one argument
            argv = calls[0][: -len(ENV_VARS)] if calls else []
            assert argv and want.split() == argv[-len(want.split()):], (calls, r.stderr)
        else:
            assert any(want in w for w in words), (target, var, calls, r.stderr)


# --------------------------------------------------------------------------- 4. a changed database
def _tiny_run(db: Path, runs: Path, iters: int):
    from test_train import cli as train_cli
    return train_cli("train", "--net", "red10", "--task", "denoise-s30", "--run", "r", "--runs-dir", str(runs),
                     "--data", str(db / "train.txt"), "--val", str(db / "val.txt"), "--iters", str(iters),
                     "--snapshot-every", "2", "--no-progress")


@pytest.mark.datasets
def test_resuming_on_a_rebuilt_database_is_refused(tmp_path, bsd_datasets):
    """The issue's case: the database rebuilt with SEED=7 under the same names."""
    db, runs = tmp_path / "db", tmp_path / "runs"
    build = ["data", "--task", "denoise-s30", "--out", str(db), "--datasets", str(bsd_datasets), "--max-images", "1",
             "--max-patches", "40", "--noise-repeats", "1", "--quiet", "--workers", "1"]
    assert cli(*build).returncode == 0
    r = _tiny_run(db, runs, 2)
    assert r.returncode == 0, r.stderr + r.stdout
    assert json.loads((runs / "r" / "run.json").read_text())["config"]["train_db_sha256"].startswith("config.json:")
    assert cli(*build, "--seed", "7").returncode == 0
    before = (runs / "r" / "run.json").read_text()
    r = _tiny_run(db, runs, 4)
    one_error_line(r, "holds other patches than when the run began", "train_db_sha256 differs")
    assert (runs / "r" / "run.json").read_text() == before


def test_a_list_of_hand_made_shards_is_fingerprinted_by_content(tmp_path):
    from test_train import write_db
    runs = tmp_path / "runs"
    train_list = write_db(tmp_path / "db", seed=0)
    write_db(tmp_path / "db", rows=(16,), seed=1, name="val")
    r = _tiny_run(tmp_path / "db", runs, 2)
    assert r.returncode == 0, r.stderr + r.stdout
    write_db(tmp_path / "db", seed=5)                   # the same names, other patches
    assert train_list.read_text() == (tmp_path / "db" / "train.txt").read_text()
    one_error_line(_tiny_run(tmp_path / "db", runs, 4), "holds other patches than when the run began")


# --------------------------------------------------------------------------- 8. disk reserves said
def test_the_snapshot_check_says_its_reserve_and_its_number_is_its_threshold():
    from rednet.errors import UserError
    from rednet.snapshots import DISK_RESERVE, check_disk, disk_need
    need, what = disk_need(300_000, 2, 5)
    assert f"a {DISK_RESERVE >> 20} MiB reserve" in what
    check_disk(Path("/tmp"), 300_000, 2, 5, free=need)
    with pytest.raises(UserError, match=f"needs about {need / 2**20:.0f} MiB .*{DISK_RESERVE >> 20} MiB reserve"):
        check_disk(Path("/tmp"), 300_000, 2, 5, free=need - 1)


def test_the_database_check_says_its_reserve(tmp_path, bsd_datasets):
    from test_faults import _tmpfs
    with _tmpfs(tmp_path / "small", "40m") as m:
        r = cli("data", "--task", "denoise-s30", "--out", str(m / "db"), "--datasets", str(bsd_datasets),
                "--max-images", "3", "--stride", "25", "--workers", "1", "--quiet")
        one_error_line(r, "the database needs", "64 MiB reserve", "but only")


def test_after_a_full_disk_the_printed_resume_works_once_the_stated_room_is_free(tmp_path):
    """Training stops on a disk filled beside it; its message says how much resuming needs; with
    exactly that much free, the command it prints trains to the end."""
    import re
    import time

    from test_faults import _tmpfs
    from test_train import train_args, write_toy
    toy = write_toy(tmp_path / "toy", max_iter=400, snapshot=20)
    with _tmpfs(tmp_path / "disk", "60m") as disk:
        runs = disk / "runs"
        args = train_args(toy, runs, "full", "--iters", "400")
        from test_faults import PY
        p = subprocess.Popen([PY, "-m", "rednet", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        t0 = time.time()
        while not list((runs / "full" / "snapshots").glob("*_iter_20.caffemodel")) and time.time() - t0 < 60:
            time.sleep(0.05)
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)   # fill the disk to the last byte
        for block in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
        os.close(fd)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2, (out, err)
        m = re.search(r"resuming needs about (\d+) MiB free.*then resume with: bin/python -m rednet (.*) "
                      r"\(or the same command again\)", err)
        assert m and "reserve included" in err, err
        need = int(m.group(1)) + 1
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        os.truncate(filler, max(0, filler.stat().st_size - (need * 2**20 - free)))
        import shlex
        r = cli(*shlex.split(m.group(2)))                  # the command as printed
        assert r.returncode == 0, r.stderr + r.stdout
        assert json.loads((runs / "full" / "run.json").read_text())["iterations_trained"] == 400


# --------------------------------------------------------------------------- 9. depth and alpha kept
def _restore(src: Path, dst: Path, *task) -> subprocess.CompletedProcess:
    return cli("restore", *(task or ("--task", "denoise", "--sigma", "30")), "--no-ensemble", str(src), str(dst))


def test_a_16_bit_image_is_restored_at_16_bits(tmp_path):
    import cv2
    rng = np.random.default_rng(1)
    clean = (np.add.outer(np.arange(40), np.arange(40)) * 700).astype(np.uint16)
    noisy = np.clip(clean + rng.normal(0, 30 * 257, clean.shape), 0, 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "in16.png"), noisy)
    r = _restore(tmp_path / "in16.png", tmp_path / "out.png")
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == clean.shape
    assert len(np.unique(out % 257)) > 1            # not 8-bit values scaled up
    err_in, err_out = (np.abs(a.astype(float) - clean).mean() for a in (noisy, out))
    assert err_out < 0.6 * err_in, (err_in, err_out)
    r = _restore(tmp_path / "in16.png", tmp_path / "out.jpg")
    assert r.returncode == 0 and "written without 16 bits (.jpg holds 8)" in r.stdout, r.stdout


@pytest.mark.parametrize("kind", ["gray", "rgb"])
def test_the_alpha_channel_is_passed_through(tmp_path, kind):
    import cv2
    rng = np.random.default_rng(2)
    alpha = (np.arange(36 * 36).reshape(36, 36) % 251).astype(np.uint8)
    base = rng.integers(0, 256, (36, 36), dtype=np.uint8)
    bgra = np.dstack([base, base, base, alpha]) if kind == "gray" else \
        np.dstack([base, np.roll(base, 3, 0), np.roll(base, 5, 1), alpha])
    cv2.imwrite(str(tmp_path / "in.png"), bgra)
    task = ("--task", "denoise", "--sigma", "30") + (("--per-channel",) if kind == "rgb" else ())
    r = _restore(tmp_path / "in.png", tmp_path / "out.png", *task)
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (36, 36, 4) and np.array_equal(out[..., 3], alpha)
    r = _restore(tmp_path / "in.png", tmp_path / "sr.png", "--task", "sr", "--scale", "3")
    if kind == "gray":
        assert r.returncode == 0, r.stderr
        sr = cv2.imread(str(tmp_path / "sr.png"), cv2.IMREAD_UNCHANGED)
        assert sr.shape == (108, 108, 4) and abs(float(sr[..., 3].mean()) - float(alpha.mean())) < 3


# --------------------------------------------------------------------------- smaller ones
def test_a_killed_training_session_is_closed_as_killed_on_resume(tmp_path):
    """`rednet train` and caffe killed together (SIGKILL to the group: a machine's session
    ending): run.json is left with an open session; the next session closes it as killed."""
    import signal
    import time

    from test_faults import PY
    from test_train import train_args, write_toy
    toy = write_toy(tmp_path / "toy", max_iter=3000, snapshot=20, width=16, depth=6)
    runs = tmp_path / "runs"
    args = train_args(toy, runs, "k")
    p = subprocess.Popen([PY, "-m", "rednet", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="1"), start_new_session=True)
    t0 = time.time()
    while not list((runs / "k" / "snapshots").glob("*.solverstate")) and time.time() - t0 < 60:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    info = json.loads((runs / "k" / "run.json").read_text())
    assert info["sessions"][-1].get("outcome") is None and info["status"] == "running"
    r = cli(*args, "--iters", "100")
    assert r.returncode == 0, r.stderr + r.stdout
    first, second = json.loads((runs / "k" / "run.json").read_text())["sessions"]
    assert first["outcome"] == "killed" and first["ended"] and first["end_iter"] == second["start_iter"] >= 20
    assert second["outcome"] == "done"


def test_zoo_verify_names_every_bad_model(tmp_path, monkeypatch, capsys):
    from rednet import zoo
    from rednet.__main__ import main
    models = tmp_path / "models"
    for name in ("red10_denoise-s30", "red10_sr-x3"):
        shutil.copytree(ROOT / "models" / name, models / name)
        w = models / name / f"{name}.caffemodel"
        w.write_bytes(w.read_bytes()[:-1] + b"\x01")
    monkeypatch.setattr(zoo, "ZOO", models)
    monkeypatch.setattr(zoo.folders, "__defaults__", (models,))
    rc = main(["zoo", "verify"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("FAILED ") == 2
    assert "error: 2 of 2 models failed verification" in err


@pytest.mark.datasets
def test_a_card_exported_outside_the_repository_does_not_claim_to_be_in_it(tmp_path, datasets_dir):
    from test_train import train_args, write_toy
    toy = write_toy(tmp_path / "toy", max_iter=4, snapshot=2)
    runs = tmp_path / "runs"
    assert cli(*train_args(toy, runs, "e")).returncode == 0
    r = cli("zoo", "export", "--run", str(runs / "e"), "--root", str(tmp_path / "zoo"), "--datasets", str(datasets_dir))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "zoo" / "e" / "readme.md").read_text()
    assert "(in this repository)" not in text and "(beside this card)" in text


def test_tiles_smaller_than_the_receptive_radius_are_refused(tmp_path):
    img = _noisy_png(tmp_path / "in.png")
    for net, radius in (("red10", 10), ("red30", 30)):     # the radius is the chosen net's own
        r = cli("restore", "--task", "denoise", "--sigma", "30", "--net", net, "--tile", "1", str(img),
                str(tmp_path / "o.png"))
        one_error_line(r, f"--tile 1: smaller than the net's receptive radius ({radius} px)")


def test_a_mixed_model_restores_any_level_within_its_span(tmp_path):
    img = _noisy_png(tmp_path / "in.png")
    mixed = str(ROOT / "models" / "red30_denoise-mixed")
    r = cli("restore", "--task", "denoise", "--sigma", "15", "--model", mixed, "--no-ensemble", str(img),
            str(tmp_path / "o.png"))
    assert r.returncode == 0 and "red30 denoise-mixed" in r.stdout, r.stderr
    r = cli("restore", "--task", "denoise", "--sigma", "90", "--model", mixed, str(img), str(tmp_path / "p.png"))
    one_error_line(r, "trained for denoise-mixed, not for denoise-s90 (its levels span 10 to 70)")
