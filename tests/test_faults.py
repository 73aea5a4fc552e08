"""Fault injection: each failure mode of docs/faults.md done for real, not mocked.

A pool worker is killed with SIGKILL mid-build, two builders race on one folder, outputs go
to a read-only or a full file system (a tmpfs mounted here for the test and unmounted in a
fixture; where mounting is not allowed, e.g. not root or in a container without
CAP_SYS_ADMIN, those tests skip and say so), and bad arguments reach the commands.  Each test
checks the one-line message, the exit status 2 and that nothing is lost or half-written.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / "bin" / "python")
sys.path.insert(0, str(ROOT / "tools"))

from rednet import patches  # noqa: E402
from rednet.__main__ import main as rednet_main  # noqa: E402

needs_caffe = pytest.mark.skipif(not (ROOT / ".caffe" / "env").is_file(), reason="Caffe not set up (make setup)")


# --------------------------------------------------------------------------- helpers
def cli(*args, env=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", **(env or {}))
    return subprocess.run([PY, "-m", "rednet", *args], cwd=ROOT, capture_output=True, text=True, env=e,
                          timeout=timeout, **kw)


def one_error_line(r: subprocess.CompletedProcess | tuple, *needles: str) -> str:
    """Exit status 2 and exactly one line on stderr, ``error: ...``, holding every needle."""
    rc, err = (r.returncode, r.stderr) if isinstance(r, subprocess.CompletedProcess) else r
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, err)
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def data_args(out: Path, datasets: Path, *extra: str) -> list[str]:
    return ["data", "--task", "denoise-s30", "--out", str(out), "--datasets", str(datasets), "--quiet", *extra]


def arrays(list_file: Path) -> dict:
    out = {"data": [], "label": [], "meta": []}
    for p in patches.read_list(list_file):
        with h5py.File(p, "r") as f:
            for k in out:
                out[k].append(f[k][...])
    return {k: np.concatenate(v) for k, v in out.items()}


def check_database(out: Path) -> None:
    """A finished database: no temporary file, every listed shard whole and carrying the hash
    of the configuration in config.json, and no shard that is not listed."""
    digest = patches.config_digest(json.loads((out / "config.json").read_text()))
    assert not list(out.glob(".*"))
    listed = set()
    for name in ("train.txt", "val.txt"):
        for p in patches.read_list(out / name):
            with h5py.File(p, "r") as f:
                assert f.attrs["config_sha256"] == digest, p
                assert f["data"].shape == f["label"].shape and f["data"].shape[0] == f["meta"].shape[0]
            listed.add(p.resolve())
    assert {p.resolve() for p in out.glob("*.h5")} == listed


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out += kids.get(p, [])
        todo += kids.get(p, [])
    return out


def wait_for(cond, timeout=120.0, what="condition"):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- tmpfs mounts
@contextlib.contextmanager
def _tmpfs(where: Path, size: str):
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _remount_ro(where: Path) -> None:
    r = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only folder, also for root (who ignores permission bits): a tmpfs remounted ro."""
    with _tmpfs(tmp_path / "ro", "100m") as m:
        (m / "existing").mkdir()
        (m / "existing" / "keep.txt").write_text("untouched\n")
        _remount_ro(m)
        yield m


# --------------------------------------------------------------------------- item 1: one builder per folder, shards of one configuration
TINY = ["--max-images", "3", "--stride", "25", "--shard-size", "100", "--workers", "1"]


def test_a_second_builder_of_the_same_folder_is_refused(bsd_datasets, tmp_path):
    """Two `rednet data` on one folder with different settings (NOISE_REPEATS=3 and 2): the
    first is frozen (SIGSTOP) in the middle of writing its shards, so the race is certain; the
    second is refused with one line, and the first, resumed, leaves a database of its own
    configuration only.  Without the lock both exit 0 and the folder mixes their shards."""
    out = tmp_path / "db"
    first = subprocess.Popen([PY, "-m", "rednet", *data_args(out, bsd_datasets, *TINY, "--noise-repeats", "3")],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        wait_for(lambda: (out / "train_00001.h5").exists() or first.poll() is not None, what="the first build")
        os.killpg(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "the first build ended too soon"
        try:
            second = cli(*data_args(out, bsd_datasets, *TINY, "--noise-repeats", "2"))
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        o, e = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 0, e
    one_error_line(second, str(out), "another `rednet data` is building this database folder")
    assert json.loads((out / "config.json").read_text())["noise_repeats"] == 3
    check_database(out)
    with h5py.File(patches.read_list(out / "train.txt")[-1]) as f:
        assert f["meta"][:, 4].max() == 2                 # repeats 0..2: the first's shards
    # a folder held by another builder (deterministic): refused, nothing written or removed
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = sorted(p.name for p in out.iterdir())
        one_error_line(cli(*data_args(out, bsd_datasets, *TINY, "--noise-repeats", "2")), "another `rednet data`")
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        os.close(fd)


def _tiny(datasets_dir, out, **kw):
    return patches.build_db("denoise-s30", out, datasets=datasets_dir, max_images=3, stride=25,
                            shard_size=100, workers=1, progress=False, **{"noise_repeats": 2, **kw})


def test_a_shard_of_another_configuration_is_rebuilt_not_mixed_in(datasets_dir, tmp_path):
    """Shards carry the hash of their configuration; on reuse a shard of another
    configuration (same row count, so a count check cannot tell) or one without the hash
    (written before shards carried it) is rebuilt.  Without the hash check it is kept."""
    a = _tiny(datasets_dir, tmp_path / "a")
    b = _tiny(datasets_dir, tmp_path / "b", noise_repeats=3)
    want = arrays(a)
    shards = patches.read_list(a)
    foreign = patches.read_list(b)[1]
    with h5py.File(shards[1]) as f, h5py.File(foreign) as g:
        assert f["data"].shape == g["data"].shape            # a row count check passes
    shutil.copy(foreign, shards[1])
    with h5py.File(shards[2], "a") as f:                      # a shard of before the hash
        del f.attrs["config_sha256"]
    kept = {p: p.stat().st_ino for p in shards if p not in shards[1:3]}
    _tiny(datasets_dir, tmp_path / "a")
    got = arrays(a)
    assert all(want[k].tobytes() == got[k].tobytes() for k in want)
    assert {p: p.stat().st_ino for p in kept} == kept           # the good ones were not rewritten
    check_database(tmp_path / "a")


def test_shard_content_is_unchanged_by_the_hash(datasets_dir, tmp_path):
    """The arrays of a 50x50 database are bitwise those of the code before shards carried a
    hash (sha256 of data, label, meta of every train then val shard, taken with that code)."""
    lst = patches.build_db("denoise-s30", tmp_path / "g", datasets=datasets_dir, max_images=3, stride=25,
                           noise_repeats=2, shard_size=300, progress=False, workers=2)
    h = hashlib.sha256()
    for p in patches.read_list(lst) + patches.read_list(lst.parent / "val.txt"):
        with h5py.File(p) as f:
            for k in ("data", "label", "meta"):
                h.update(f[k][...].tobytes())
    assert h.hexdigest() == "82eb4f5df2c4f4115e566e6346fbea20895fb9d2908f617c9a18649f912b5000"


# --------------------------------------------------------------------------- item 2: a worker killed mid-build
def test_a_killed_worker_fails_fast_and_the_rerun_resumes(bsd_datasets, tmp_path):
    """SIGKILL one pool worker (what the out-of-memory killer does) while shards are being
    written: the build stops at once with one line (multiprocessing.Pool waited for ever at
    100 %), no temporary file is left, and the rerun keeps the complete shards."""
    out = tmp_path / "db"
    args = data_args(out, bsd_datasets, "--max-images", "8", "--stride", "20", "--noise-repeats", "2",
                     "--shard-size", "300", "--workers", "2")
    proc = subprocess.Popen([PY, "-m", "rednet", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: list(out.glob(".train_*.tmp.*")) or proc.poll() is not None, what="a shard being written")
        assert proc.poll() is None, proc.communicate()
        # the builder is the process whose children (the pool's workers) have none of their own
        main = next(p for p in [proc.pid, *descendants(proc.pid)]
                    if descendants(p) and all(not descendants(c) for c in descendants(p)))
        os.kill(min(descendants(main)), signal.SIGKILL)
        try:
            o, e = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the build hangs after a worker was killed")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode == 0:
        pytest.skip("the build finished before the worker was killed")
    one_error_line((proc.returncode, e), str(out), "a worker process died", "rerun resumes")
    assert not list(out.glob(".*")) and not (out / "train.txt").exists()
    done = sorted(out.glob("train_*.h5"))
    for p in done:
        with h5py.File(p) as f:
            assert f["data"].shape[0] == 300
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())    # resumed, not rebuilt
    check_database(out)


# --------------------------------------------------------------------------- item 3: read-only and full disks
def test_data_into_a_read_only_folder(read_only_dir, bsd_datasets):
    """Named in one line before the sources are read (before: a traceback from mkdir after
    the images were prepared)."""
    for out in (read_only_dir / "db", read_only_dir / "existing"):
        one_error_line(cli(*data_args(out, bsd_datasets, *TINY)), str(out), "Read-only file system")
    assert sorted(p.name for p in read_only_dir.rglob("*")) == ["existing", "keep.txt"]


def test_tables_and_restore_into_a_read_only_folder(read_only_dir, datasets_dir):
    out = read_only_dir / "results"
    one_error_line(cli("tables", "--tables", "1", "--limit", "1", "--no-ensemble", "--out", str(out),
                       "--datasets", str(datasets_dir)), f"--out {out}", "Read-only file system")
    img = datasets_dir / "Set12" / "01.png"
    one_error_line(cli("restore", "--task", "denoise", "--sigma", "30", "--no-ensemble", str(img),
                       str(read_only_dir / "existing" / "x.png")), "Read-only file system")
    assert sorted(p.name for p in read_only_dir.rglob("*")) == ["existing", "keep.txt"]


@needs_caffe
def test_train_into_a_read_only_runs_dir(read_only_dir, tmp_path):
    """`--runs-dir` on a read-only disk: one line naming the run folder, before caffe starts,
    nothing made (before: an OSError traceback from mkdir)."""
    from test_train import train_args, write_toy
    toy = write_toy(tmp_path / "toy", max_iter=4, snapshot=2, width=4, test_interval=1000)
    for runs in (read_only_dir, read_only_dir / "existing" / "runs"):
        one_error_line(cli(*train_args(toy, runs, "ro")), str(runs / "ro"), "Read-only file system")
    assert sorted(p.name for p in read_only_dir.rglob("*")) == ["existing", "keep.txt"]


def test_data_on_a_full_disk(bsd_datasets, tmp_path, capsys, monkeypatch):
    """A disk too small is refused before anything is computed; a disk that fills up during
    the build (another writer took the room after the check: simulated by hiding the real
    free space from the check) stops with one line, keeps the complete shards, leaves no
    temporary file and no list file.  Before: a worker's OSError traceback."""
    with _tmpfs(tmp_path / "full", "256k") as m:
        rc = rednet_main(data_args(m / "db", bsd_datasets, *TINY))
        one_error_line((rc, capsys.readouterr().err), "needs", "free on that disk")
        assert list(m.iterdir()) == []
    with _tmpfs(tmp_path / "small", "5m") as m:
        out = m / "db"
        monkeypatch.setattr(patches, "_free_bytes", lambda p: 100 << 30)
        for workers in ("1", "2"):
            rc = rednet_main(data_args(out, bsd_datasets, "--max-images", "3", "--stride", "25",
                                       "--shard-size", "100", "--workers", workers))
            one_error_line((rc, capsys.readouterr().err), str(out), "disk full")
            assert not list(out.glob(".*")) and not (out / "train.txt").exists()
            for p in out.glob("train_*.h5"):
                with h5py.File(p) as f:
                    assert f["data"].shape[0] == 100


# --------------------------------------------------------------------------- item 3: bad arguments
@needs_caffe
def test_run_names_too_long_for_a_folder(tmp_path):
    """RUN=<300 characters> (before: an OSError traceback; a 250-character name made the folder)."""
    name = "r" * 300
    r = cli("train", "--net", "red10", "--task", "denoise-s30", "--run", name, "--runs-dir",
            str(tmp_path / "runs"), "--no-progress")
    one_error_line(r, "300 characters", "at most 100")
    assert not (tmp_path / "runs").exists()
    r = subprocess.run(["make", "--no-print-directory", "train", "NET=red10", "TASK=denoise", "SIGMA=30",
                        f"RUN={name}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and r.stderr.count("error: RUN=") == 1 and "Traceback" not in r.stderr, r.stderr
    assert not any(p.name.startswith("rrrr") for p in (ROOT / "runs").glob("*"))


@needs_caffe
def test_a_negative_time_limit(tmp_path):
    """MINUTES=-1 (before: caffe started and was stopped at once, exit 0)."""
    from test_train import train_args, write_toy
    toy = write_toy(tmp_path / "toy")
    one_error_line(cli(*train_args(toy, tmp_path / "runs", "neg", "--iters", "3", "--time-limit", "-1")),
                   "MINUTES=-1", "positive number of minutes")
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def toy_model(tmp_path, caffe):
    """A real (untrained) RED-Net of depth 4: a caffemodel with its deploy net beside it, and a
    run folder holding it as a snapshot of net `red10`."""
    from rednet import netgen
    cfg = netgen.NetConfig("toy", depth=4, width=8, skip=1)
    d = tmp_path / "model dir (1)"
    d.mkdir()
    (d / "deploy.prototxt").write_text(netgen.render_deploy(cfg))
    model = d / "toy weights.caffemodel"
    caffe.Net(str(d / "deploy.prototxt"), caffe.TEST).save(str(model))
    run = tmp_path / "runs" / "toyrun"
    (run / "snapshots").mkdir(parents=True)
    shutil.copy(d / "deploy.prototxt", run / "deploy.prototxt")
    shutil.copy(model, run / "snapshots" / "red10_denoise-s30_iter_10.caffemodel")
    (run / "run.json").write_text(json.dumps({"net": "red10", "task": "denoise-s30"}))
    return {"model": model, "run": run}


@needs_caffe
def test_restore_and_tables_budget_arguments(toy_model, datasets_dir, tmp_path):
    """--tile -5 (before: exit 0 with an uninitialised image written), --max-memory -5 (before:
    a math domain error traceback), for restore and tables."""
    img = datasets_dir / "Set12" / "01.png"
    out = tmp_path / "o.png"
    base = ["restore", "--task", "denoise", "--sigma", "30", "--no-ensemble", "--model", str(toy_model["model"])]
    one_error_line(cli(*base, "--tile", "-5", str(img), str(out)), "--tile -5")
    one_error_line(cli(*base, "--max-memory", "-5", str(img), str(out)), "--max-memory -5")
    assert not out.exists()
    one_error_line(cli("tables", "--tables", "1", "--limit", "1", "--max-memory", "-5", "--out",
                       str(tmp_path / "res"), "--datasets", str(datasets_dir)), "--max-memory -5")
    assert not (tmp_path / "res").exists()


@needs_caffe
def test_restore_net_must_agree_with_the_model(toy_model, datasets_dir, tmp_path):
    """--net red30 with --model runs/<a red10 run> (before: restored with red10, exit 0)."""
    img = datasets_dir / "Set12" / "01.png"
    out = tmp_path / "o.png"
    one_error_line(cli("restore", "--task", "denoise", "--sigma", "30", "--no-ensemble", "--net", "red30",
                       "--model", str(toy_model["run"]), str(img), str(out)), "--net red30", "trained as red10")
    assert not out.exists()
    r = cli("restore", "--task", "denoise", "--sigma", "30", "--no-ensemble", "--net", "red10",
            "--model", str(toy_model["run"]), str(img), str(out))
    assert r.returncode == 0 and out.is_file(), r.stderr


@needs_caffe
def test_make_restore_with_spaces_and_parentheses(toy_model, datasets_dir, tmp_path):
    """IN=, OUT=, MODEL= with spaces, parentheses and a quote (before: a shell syntax error)."""
    src = tmp_path / "in dir" / "my noisy (1) it's.png"
    src.parent.mkdir()
    shutil.copy(datasets_dir / "Set12" / "01.png", src)
    before = src.read_bytes()
    out = tmp_path / "out (2)" / "clean (1).png"
    r = subprocess.run(["make", "--no-print-directory", "restore", f"IN={src}", f"OUT={out}", "TASK=denoise",
                        "SIGMA=30", "ENSEMBLE=0", f"MODEL={toy_model['model']}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.is_file() and src.read_bytes() == before


@needs_caffe
def test_a_tiled_restore_shows_its_progress(toy_model, tmp_path):
    """A large image is run in tiles with a progress bar over them (before: silent for as long
    as a 6000x6000 image takes).  A 300x200 image in 64-pixel tiles: 5 x 4 = 20 tiles; with the
    8-orientation ensemble 160, in one bar."""
    from PIL import Image
    from rednet.restore import Restorer
    img = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300), dtype=np.uint8)).save(img)
    base = ["restore", "--task", "denoise", "--sigma", "30", "--model", str(toy_model["model"]), "--tile", "64"]
    r = cli(*base, "--no-ensemble", str(img), str(tmp_path / "a.png"))
    assert r.returncode == 0 and "restore 300x200" in r.stderr and "20/20" in r.stderr, r.stderr
    r = cli(*base, str(img), str(tmp_path / "b.png"))
    assert r.returncode == 0 and "160/160" in r.stderr, r.stderr
    # the automatic tile size: a budget too small for the whole image tiles it
    rs = Restorer(toy_model["model"].parent / "deploy.prototxt", toy_model["model"])
    assert rs.n_tiles(6000, 6000) > 1 and rs.n_tiles(100, 100) == 1


# --------------------------------------------------------------------------- training onto a disk that fills up
def _resume_hint(text: str) -> list[str]:
    """The command of the ``resume with: ... (or the same command again)`` hint, as words."""
    import shlex
    hint = text.split("resume with: ", 1)[1].split(" (or the same command again)", 1)[0]
    words = shlex.split(hint)
    assert words[:2] == ["bin/python", "-m"], hint
    return [PY, *words[1:]]


@needs_caffe
@pytest.mark.parametrize("cut", ["caffemodel", "solverstate"])
def test_training_onto_a_disk_that_fills_up(cut, tmp_path):
    """`--runs-dir` on a tmpfs that another writer fills while caffe runs (caffe is frozen
    with SIGSTOP right after it starts, the free space is taken down to what the snapshot at
    10 and half of the .caffemodel (or of the .solverstate) at 20 need, then caffe goes on):
    Caffe's own snapshot write fails (`Check failed: proto.SerializeToOstream`).  One line
    `error: disk full at <snapshots folder> ...` naming iteration 20 as where caffe stopped
    and the last complete snapshot; run.json counts only what complete snapshots hold; the
    cut file is gone; the printed resume command (with --runs-dir) finishes the run once
    there is room.  Before: a cut .caffemodel gave an OSError traceback (run.json could not be
    written); a cut .solverstate stayed, the message began `caffe stopped after iteration 19`."""
    from rednet.caffeio import param_shapes
    from rednet.snapshots import check_model
    from test_train import train_args, write_toy
    toy = write_toy(tmp_path / "toy", max_iter=40, snapshot=10, width=64, test_interval=1000)
    shapes = param_shapes(Path(toy["deploy"]))
    n = sum(int(np.prod(s)) for _, ss in shapes for s in ss)
    model, state = 4 * n, 8 * n                          # float32 weights; Adam's two moments
    leave = model + state + (model // 2 if cut == "caffemodel" else model + state // 2)
    with _tmpfs(tmp_path / "runs", "40m") as runs:
        run = runs / "full"
        proc = subprocess.Popen([PY, "-m", "rednet", *train_args(toy, runs, "full")], cwd=ROOT,
                                env=dict(os.environ, OPENBLAS_NUM_THREADS="1"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: (run / "caffe.pid").is_file() or proc.poll() is not None, what="caffe to start")
            pid = int((run / "caffe.pid").read_text())
            os.kill(pid, signal.SIGSTOP)
            try:
                assert "_iter_10" not in (run / "train.log").read_text(), "caffe was too quick"
                st = os.statvfs(runs)
                with open(runs / "other writer", "wb") as f:
                    os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - leave)
            finally:
                os.kill(pid, signal.SIGCONT)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        line = one_error_line((proc.returncode, err), f"disk full at {run / 'snapshots'} writing "
                              f"toy_denoise-s30_iter_20.{cut}", "caffe stopped at iteration 20,",
                              f"--runs-dir {runs}")
        info = json.loads((run / "run.json").read_text())
        held = 10 if cut == "caffemodel" else 20           # a complete .caffemodel holds 20
        assert info["status"] == "failed" and info["iterations_trained"] == held, info
        assert f"last complete snapshot: iteration {held}" in line
        snaps = sorted(p.name for p in (run / "snapshots").iterdir())
        want = ["toy_denoise-s30_iter_10.caffemodel", "toy_denoise-s30_iter_10.solverstate"]
        if cut == "solverstate":
            want.append("toy_denoise-s30_iter_20.caffemodel")
            assert "the run resumes from iteration 10" in line
        assert snaps == sorted(want) and not list(run.rglob(".*tmp*"))
        for it in ([10] if cut == "caffemodel" else [10, 20]):
            assert check_model(run / "snapshots" / f"toy_denoise-s30_iter_{it}.caffemodel", shapes)[0] is None
        if cut == "solverstate":
            # room again: the printed command resumes from 10 and finishes the run
            (runs / "other writer").unlink()
            r = subprocess.run(_resume_hint(line), cwd=ROOT, capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
            assert r.returncode == 0, r.stderr
            info = json.loads((run / "run.json").read_text())
            assert info["sessions"][-1]["start_iter"] == 10
            assert info["status"] == "done" and info["iterations_trained"] == 40


# --------------------------------------------------------------------------- restore and tables onto a full disk
@needs_caffe
def test_restore_and_tables_onto_a_full_disk(toy_model, datasets_dir, tmp_path):
    """A tmpfs of two pages: the restored PNG (and a table cell or tables.md) does not fit.
    One line naming the output and `disk full`, exit 2, no temporary or partial file left,
    no tables.md.  Before: an OSError traceback (exit 1)."""
    img = datasets_dir / "Set12" / "01.png"
    with _tmpfs(tmp_path / "full", "8k") as m:
        out = m / "restored.png"
        one_error_line(cli("restore", "--task", "denoise", "--sigma", "30", "--no-ensemble", "--model",
                           str(toy_model["model"]), str(img), str(out)), str(out), "disk full")
        assert list(m.iterdir()) == []
        res = m / "results"
        r = cli("tables", "--tables", "3", "--limit", "1", "--zoo-only", "--out", str(res), "--datasets",
                str(datasets_dir))
        # the progress bars of the cells computed before come first: the last line is the error
        assert r.stderr.count("error: ") == 1 and "Traceback" not in r.stderr, r.stderr
        one_error_line((r.returncode, r.stderr.strip().splitlines()[-1]), f"--out {res}", "disk full while writing",
                       str(res / "per_image"))
        left = [p for p in m.rglob("*") if p.is_file()]
        assert not [p for p in left if p.name.startswith(".")], left
        assert not (res / "tables.md").exists() and not (res / "tables.csv").exists()


@needs_caffe
def test_restore_with_a_strided_net_refuses_sizes_it_cannot_take(caffe, datasets_dir, tmp_path):
    """A net with a stride-2 convolution (and its mirrored deconvolution) takes only even
    sizes: a 255x256 image is one line naming the file and the multiple, before the forward
    pass (before: Caffe aborted on the skip sum's shape check, a core dump and a stack trace);
    256x256 is restored."""
    from PIL import Image
    from rednet import netgen
    cfg = netgen.NetConfig("strided", depth=4, width=8, skip=1, stride=2, down=1)
    d = tmp_path / "strided"
    d.mkdir()
    (d / "deploy.prototxt").write_text(netgen.render_deploy(cfg))
    model = d / "strided.caffemodel"
    caffe.Net(str(d / "deploy.prototxt"), caffe.TEST).save(str(model))
    src = np.asarray(Image.open(datasets_dir / "Set12" / "01.png"))
    odd = tmp_path / "odd.png"
    Image.fromarray(src[:, :255]).save(odd)
    out = tmp_path / "out.png"
    base = ["restore", "--task", "denoise", "--sigma", "30", "--model", str(model)]
    for extra in (["--no-ensemble"], []):
        one_error_line(cli(*base, *extra, str(odd), str(out)), str(odd), "255x256", "multiples of 2")
        assert not out.exists()
    r = cli(*base, "--no-ensemble", str(datasets_dir / "Set12" / "01.png"), str(out))
    assert r.returncode == 0 and out.is_file(), r.stderr
