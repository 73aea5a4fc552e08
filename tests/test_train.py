"""rednet.train: real `bin/caffe train` runs on a tiny RED-Net and a tiny HDF5 database.

The net is a real RED-Net rendered by rednet.netgen (depth 4, 8 maps, one mirrored skip,
input residual); the database is a few HDF5 shards of uneven size (so batches cross shard
boundaries), written with h5py in a temporary folder.  Nothing about Caffe is mocked.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / "bin" / "python")

pytestmark = pytest.mark.skipif(not (ROOT / ".caffe" / "env").is_file(), reason="Caffe not set up (make setup)")

from conftest import SHARD_ROWS, write_db  # noqa: E402,F401 (write_db: other tests import it from here)


SOLVER = """train_net: "{d}/train.prototxt"
test_net: "{d}/test.prototxt"
test_iter: 2
test_interval: {test_interval}
test_initialization: true
display: 1
type: "Adam"
base_lr: {lr}
momentum: 0.9
momentum2: 0.999
delta: 1e-08
lr_policy: "{policy}"
gamma: {gamma}
stepsize: {stepsize}
weight_decay: 0
max_iter: {max_iter}
snapshot: {snapshot}
snapshot_prefix: "{d}/snap"
random_seed: 1603
solver_mode: CPU
"""


def write_toy(folder: Path, *, max_iter=40, snapshot=10, lr=1e-3, policy="fixed", gamma=1.0, stepsize=100000,
              test_interval=10, width=8, depth=4, val_rows=(12, 8)) -> dict:
    """Solver, train/test/deploy nets (rendered by rednet.netgen) and databases of a toy run."""
    sys.path.insert(0, str(ROOT / "tools"))
    from rednet import netgen
    cfg = netgen.NetConfig("toy", depth=depth, width=width, skip=1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.prototxt").write_text(netgen.render_train(cfg, "denoise-s30", "train"))
    (folder / "test.prototxt").write_text(netgen.render_train(cfg, "denoise-s30", "test"))
    (folder / "deploy.prototxt").write_text(netgen.render_deploy(cfg))
    (folder / "solver.prototxt").write_text(SOLVER.format(
        d=folder, max_iter=max_iter, snapshot=snapshot, lr=lr, policy=policy, gamma=gamma,
        stepsize=stepsize, test_interval=test_interval))
    train_list = write_db(folder / "db", seed=0)
    val_list = write_db(folder / "db", rows=val_rows, seed=1, name="val")
    return dict(solver=str(folder / "solver.prototxt"), data=str(train_list), val=str(val_list),
                deploy=str(folder / "deploy.prototxt"))


def cli(*args, env=None, **kw) -> subprocess.CompletedProcess:
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", **(env or {}))
    return subprocess.run([PY, "-m", "rednet", *args], cwd=ROOT, capture_output=True, text=True, env=e, **kw)


def train_args(toy: dict, runs: Path, run: str, *extra) -> list[str]:
    return ["train", "--net", "toy", "--task", "denoise-s30", "--run", run, "--runs-dir", str(runs),
            "--solver", toy["solver"], "--data", toy["data"], "--val", toy["val"], "--deploy", toy["deploy"],
            "--no-progress", *extra]


def weights(model: Path) -> dict[str, list[np.ndarray]]:
    from caffe.proto import caffe_pb2
    m = caffe_pb2.NetParameter()
    m.ParseFromString(model.read_bytes())
    return {l.name: [np.array(b.data, dtype=np.float32) for b in l.blobs] for l in m.layer if len(l.blobs)}


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(
        len(wa[k]) == len(wb[k]) and all(np.array_equal(x, y) for x, y in zip(wa[k], wb[k])) for k in wa)


@pytest.fixture
def toy(tmp_path):
    return write_toy(tmp_path / "toy")


# --------------------------------------------------------------------------------------------
def test_tiny_run_through_the_real_binary(toy, tmp_path):
    """A complete run: folder layout, exact solver/nets, run.json, log, snapshots."""
    runs = tmp_path / "runs"
    r = cli(*train_args(toy, runs, "t1", "--iters", "20"))
    assert r.returncode == 0, r.stderr + r.stdout
    run = runs / "t1"
    for f in ("solver.prototxt", "train.prototxt", "test.prototxt", "deploy.prototxt", "run.json", "train.log"):
        assert (run / f).is_file(), f
    solver = (run / "solver.prototxt").read_text()
    assert f'snapshot_prefix: "{run}/snapshots/toy_denoise-s30"' in solver
    assert "max_iter: 20" in solver and f'train_net: "{run}/train.prototxt"' in solver
    tr = (run / "train.prototxt").read_text()
    assert "shuffle: false" in tr and f'source: "{run}/data/train_schedule.txt"' in tr
    info = json.loads((run / "run.json").read_text())
    assert info["net"] == "toy" and info["task"] == "denoise-s30" and info["status"] == "done"
    assert info["caffe"]["version"] and info["project"]["version"]
    from rednet import paths
    assert info["caffe"]["origin"] == info["sessions"][-1]["caffe_origin"] == paths.caffe_origin()
    assert info["data"]["train"]["patches"] == sum(SHARD_ROWS)
    assert info["data"]["train"]["list_sha256"] == __import__("hashlib").sha256(Path(toy["data"]).read_bytes()).hexdigest()
    assert info["iterations_trained"] == 20
    snaps = sorted(p.name for p in (run / "snapshots").iterdir())
    assert "toy_denoise-s30_iter_20.caffemodel" in snaps and "toy_denoise-s30_iter_10.caffemodel" in snaps
    log = (run / "train.log").read_text()
    assert "Optimization Done." in log and "Iteration 19, loss = " in log
    # the schedule really is the data Caffe read: 20 x 16 samples from the uneven shards
    sched = (run / "data" / "train_schedule.txt").read_text().split()
    assert len(sched) >= (21 * 16) // sum(SHARD_ROWS) * len(SHARD_ROWS)
    # running the same command again: nothing to do, nothing changed
    before = (run / "snapshots" / "toy_denoise-s30_iter_20.caffemodel").read_bytes()
    r2 = cli(*train_args(toy, runs, "t1", "--iters", "20"))
    assert r2.returncode == 0 and "nothing to do" in r2.stdout
    assert json.loads((run / "run.json").read_text())["iterations_trained"] == 20
    assert (run / "snapshots" / "toy_denoise-s30_iter_20.caffemodel").read_bytes() == before


def test_every_validation_test_reads_the_same_patches(tmp_path):
    """Every test of a run reads the same validation patches: the whole batches of the
    validation database, from its first patch.  With the weights held (base_lr 0) every
    logged test loss is then the same; reading on where the last test stopped (Caffe's way,
    the solver's own test_iter 2 over 42 pairs) gives a different loss at each test."""
    import h5py
    toy = write_toy(tmp_path / "toy", lr=0, val_rows=(12, 30))       # 42 pairs, test batch 16
    from rednet import logparse
    runs = tmp_path / "runs"
    r = cli(*train_args(toy, runs, "v1", "--iters", "30"))
    assert r.returncode == 0, r.stderr + r.stdout
    run = runs / "v1"
    assert "test_iter: 2\n" in (run / "solver.prototxt").read_text()
    losses = [r.test_loss for r in logparse.parse_log(run / "train.log").sorted_rows() if r.test_loss is not None]
    assert len(losses) == 4 and len(set(losses)) == 1, losses
    val = json.loads((run / "run.json").read_text())["data"]["val"]
    assert (val["patches"], val["per_test"], val["test_iter"]) == (42, 32, 2)
    # the one file Caffe reads: the first 32 pairs, the 12 of the first shard then 20 of the second
    listed = (run / "data" / "val_schedule.txt").read_text().split()
    assert len(listed) == 1
    shards = Path(toy["val"]).read_text().split()
    with h5py.File(listed[0]) as f, h5py.File(shards[0]) as a, h5py.File(shards[1]) as b:
        for t in ("data", "label"):
            assert np.array_equal(f[t][:], np.concatenate([a[t][:], b[t][:20]]))


def test_a_validation_database_smaller_than_a_test_batch_is_refused(tmp_path):
    toy = write_toy(tmp_path / "toy", val_rows=(7, 8))
    r = cli(*train_args(toy, tmp_path / "runs", "v2", "--iters", "10"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "15 validation pairs, fewer than one test batch; expected at least 16" in r.stderr


def _wait_for(pred, timeout=120.0, step=0.002):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    """SIGKILL caffe mid-run, resume: the final weights are bitwise those of an uninterrupted run."""
    toy = write_toy(tmp_path / "toy", max_iter=400, snapshot=50, width=16, depth=6, test_interval=50)
    runs = tmp_path / "runs"
    ref = cli(*train_args(toy, runs, "ref"))
    assert ref.returncode == 0, ref.stderr
    final = "toy_denoise-s30_iter_400.caffemodel"

    for attempt in range(3):
        name = f"killed{attempt}"
        run = runs / name
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        proc = subprocess.Popen([PY, "-m", "rednet", *train_args(toy, runs, name)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # wait until the snapshot at 50 exists and caffe is some iterations past it, then kill -9
        def past_snapshot():
            log = run / "train.log"
            if not log.is_file():
                return False
            text = log.read_text()
            i = text.find("_iter_100.solverstate")
            return i >= 0 and "Iteration 10" in text[i:]
        ok = _wait_for(past_snapshot)
        pid = int((run / "caffe.pid").read_text()) if (run / "caffe.pid").is_file() else None
        if ok and pid:
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        killed = "Optimization Done." not in (run / "train.log").read_text()
        if killed:
            break
    assert killed, "could not kill caffe before it finished"
    assert proc.returncode != 0 and "error: caffe stopped" in err, err
    assert not (run / "snapshots" / final).exists()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed"
    r = cli(*train_args(toy, runs, name))
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout
    info = json.loads((run / "run.json").read_text())
    assert info["sessions"][-1]["start_iter"] >= 100 and info["status"] == "done"
    assert same_weights(run / "snapshots" / final, runs / "ref" / "snapshots" / final)
    # the logged test losses after the resume equal those of the uninterrupted run
    sys.path.insert(0, str(ROOT / "tools"))
    from rednet import logparse
    a = logparse.parse_log(run / "train.log")
    b = logparse.parse_log(runs / "ref" / "train.log")
    assert a.sessions == 2 and b.sessions == 1
    ta = {r.iteration: r.test_loss for r in a.sorted_rows() if r.test_loss is not None}
    tb = {r.iteration: r.test_loss for r in b.sorted_rows() if r.test_loss is not None}
    assert ta == tb and len(ta) == 9
    la = {r.iteration: r.train_loss for r in a.sorted_rows()}
    lb = {r.iteration: r.train_loss for r in b.sorted_rows()}
    assert la == lb


def test_sigterm_stops_with_a_snapshot_and_resumes_exactly(tmp_path):
    """SIGTERM to `rednet train` = Caffe's own stop (snapshot at the current iteration, not a
    multiple of the snapshot interval); resuming from it ends with the uninterrupted weights."""
    toy = write_toy(tmp_path / "toy", max_iter=300, snapshot=100, width=16, depth=6, test_interval=100)
    runs = tmp_path / "runs"
    assert cli(*train_args(toy, runs, "ref")).returncode == 0
    run = runs / "term"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([PY, "-m", "rednet", *train_args(toy, runs, "term")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: (run / "train.log").is_file() and "Iteration 37," in (run / "train.log").read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    info = json.loads((run / "run.json").read_text())
    stopped_at = info["iterations_trained"]
    assert info["status"] == "stopped" and 37 < stopped_at < 300 and "stopped at iteration" in out
    assert (run / "snapshots" / f"toy_denoise-s30_iter_{stopped_at}.solverstate").is_file()
    # resumed with the command it prints (the run's --runs-dir and files in it)
    import shlex
    hint = shlex.split(out.split("resume with: ", 1)[1].split(" (or the same command again)")[0])
    assert hint[:2] == ["bin/python", "-m"] and hint[hint.index("--runs-dir") + 1] == str(runs), hint
    r = subprocess.run([PY, *hint[1:], "--no-progress"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    final = "toy_denoise-s30_iter_300.caffemodel"
    assert same_weights(run / "snapshots" / final, runs / "ref" / "snapshots" / final)


def test_truncated_snapshot_falls_back_to_previous(tmp_path):
    """A snapshot cut short (a kill while Caffe writes it) is set aside; training resumes from
    the previous one and still ends with the uninterrupted run's weights."""
    toy = write_toy(tmp_path / "toy", max_iter=30, snapshot=10)
    runs = tmp_path / "runs"
    assert cli(*train_args(toy, runs, "ref")).returncode == 0
    assert cli(*train_args(toy, runs, "cut", "--iters", "20")).returncode == 0
    snap = runs / "cut" / "snapshots"
    model = snap / "toy_denoise-s30_iter_20.caffemodel"
    model.write_bytes(model.read_bytes()[: model.stat().st_size * 2 // 3])
    r = cli(*train_args(toy, runs, "cut", "--iters", "30"))
    assert r.returncode == 0, r.stderr
    assert "iteration 20 is unusable" in r.stdout
    assert (runs / "cut" / "quarantine" / "toy_denoise-s30_iter_20.caffemodel").is_file()
    info = json.loads((runs / "cut" / "run.json").read_text())
    assert info["sessions"][-1]["start_iter"] == 10
    final = "toy_denoise-s30_iter_30.caffemodel"
    assert same_weights(snap / final, runs / "ref" / "snapshots" / final)


def test_divergence_guard_stops_and_keeps_last_good_snapshot(tmp_path):
    """A learning rate multiplied by 1e6 at iteration 20: caffe is stopped, the snapshots
    taken after the last finite loss are quarantined, the one at 20 stays."""
    toy = write_toy(tmp_path / "toy", max_iter=200, snapshot=10, policy="step", gamma=1e6, stepsize=20)
    runs = tmp_path / "runs"
    r = cli(*train_args(toy, runs, "div"))
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "training diverged" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    run = runs / "div"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "diverged"
    kept = sorted(int(p.name.split("_iter_")[1].split(".")[0]) for p in (run / "snapshots").glob("*.caffemodel"))
    assert kept and kept[-1] == 20
    w = weights(run / "snapshots" / "toy_denoise-s30_iter_20.caffemodel")
    assert all(np.isfinite(b).all() for bl in w.values() for b in bl)
    log = (run / "train.log").read_text()
    assert "Optimization Done." not in log  # stopped, not finished
    assert "Iteration 199" not in log


# --------------------------------------------------------------------------------------------
def test_refuses_a_run_folder_of_another_configuration(toy, tmp_path):
    runs = tmp_path / "runs"
    assert cli(*train_args(toy, runs, "mix", "--iters", "10")).returncode == 0
    other = write_toy(tmp_path / "other", lr=5e-4)
    before = sorted(p.name for p in (runs / "mix" / "snapshots").iterdir())
    r = cli(*train_args(other, runs, "mix", "--iters", "20"))
    assert r.returncode == 2
    assert "different configuration" in r.stderr and "start fresh" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (runs / "mix" / "snapshots").iterdir()) == before
    # a folder that is not a run at all
    (runs / "junk").mkdir()
    (runs / "junk" / "x").write_text("mine")
    r = cli(*train_args(toy, runs, "junk"))
    assert r.returncode == 2 and "not a rednet run" in r.stderr
    assert (runs / "junk" / "x").read_text() == "mine"


def _old_skip_wiring(text: str) -> str:
    """A net rendered today, rewired as the nets were before they followed the released net:
    the skip sum first and one ReLU after it, ReLU(d + c), instead of ReLU(c + ReLU(d))."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    summed = {l.name[:-len("_sum_relu")] for l in net.layer if l.name.endswith("_sum_relu")}
    assert summed, "the toy net has skips"
    old = caffe_pb2.NetParameter()
    old.CopyFrom(net)
    del old.layer[:]
    for l in net.layer:
        if l.type == "ReLU" and l.name.endswith("_relu") and l.name[:-len("_relu")] in summed:
            continue                                   # the deconvolution's own ReLU: not there before
        m = old.layer.add()
        m.CopyFrom(l)
        if m.name.endswith("_sum_relu"):
            m.name = m.name[:-len("_sum_relu")] + "_relu"
    return text_format.MessageToString(old)


def test_refuses_a_run_made_with_the_old_skip_wiring(toy, tmp_path):
    """A run folder whose nets sum a skip before the ReLU (RED20/RED30 made before the fix)
    is refused with its own message, not resumed; its snapshots stay as they were."""
    old = write_toy(tmp_path / "old")
    for f in ("train.prototxt", "test.prototxt"):
        p = Path(old["solver"]).parent / f
        p.write_text(_old_skip_wiring(p.read_text()))
    runs = tmp_path / "runs"
    assert cli(*train_args(old, runs, "wired", "--iters", "10")).returncode == 0
    before = sorted(p.name for p in (runs / "wired" / "snapshots").iterdir())
    r = cli(*train_args(toy, runs, "wired", "--iters", "20"))
    assert r.returncode == 2, r.stderr
    assert "old skip wiring" in r.stderr and "start fresh" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (runs / "wired" / "snapshots").iterdir()) == before


def test_old_skip_wiring_is_told_apart_from_he_blocks():
    """Only mirrored skips changed: He et al.'s blocks sum before their ReLU in both."""
    import dataclasses

    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    from rednet import netgen
    from rednet.sources import unrectified_sums

    def parsed(text):
        n = caffe_pb2.NetParameter()
        text_format.Merge(text, n)
        return n
    red20 = netgen.render_train(netgen.PRESETS["red20"], "denoise-s30", "train")
    assert unrectified_sums(parsed(red20)) == set()
    assert unrectified_sums(parsed(_old_skip_wiring(red20))) == {f"deconv{i}_sum" for i in (2, 4, 6, 8)}
    he = dataclasses.replace(netgen.PRESETS["red20"], name="he", shortcuts="sequential", skip=2)
    assert len(unrectified_sums(parsed(netgen.render_train(he, "denoise-s30", "train")))) == 9


@pytest.mark.parametrize("args, expect", [
    (["--net", "red99", "--task", "denoise-s30"], "preset 'red99'"),
    (["--net", "red10", "--task", "deblur"], "task 'deblur'"),
    (["--net", "red10", "--task", "denoise"], "needs SIGMA"),
    (["--net", "red10", "--task", "sr", "--scale", "5"], "SCALE='5'"),
    (["--net", "red10", "--task", "denoise", "--sigma", "30", "--run", "a/b"], "RUN='a/b'"),
])
def test_bad_names_are_one_line_errors(args, expect, tmp_path):
    r = cli("train", *args, "--runs-dir", str(tmp_path / "runs"), "--no-progress")
    assert r.returncode == 2, r.stdout + r.stderr
    assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_database_is_a_one_line_error(toy, tmp_path):
    args = train_args(toy, tmp_path / "runs", "nodb")
    args[args.index("--data") + 1] = str(tmp_path / "nowhere" / "train.txt")
    r = cli(*args)
    assert r.returncode == 2 and "training database not found" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _toy_reading_db(toy: dict, db: Path) -> dict:
    """The toy solver with its nets reading ``db``/{train,val}.txt, as the generated nets read
    data/db/<task>/ (no --data/--val: the database is the nets' own)."""
    from rednet.caffeio import hdf5_layers, read_prototxt, to_text
    folder = Path(toy["solver"]).parent
    for name, lst in (("train.prototxt", "train.txt"), ("test.prototxt", "val.txt")):
        net = read_prototxt(folder / name, "NetParameter")
        for l in hdf5_layers(net):
            l.hdf5_data_param.source = str(db / lst)
        (folder / name).write_text(to_text(net))
    return dict(toy, data=None, val=None)


def test_train_builds_a_missing_database_with_the_defaults(toy, tmp_path, monkeypatch, bsd_datasets, capsys):
    """`rednet train` without the database of its task builds it: ``patches.build_db(task)``,
    the default (paper-scale) configuration, into data/db/<task>/, after saying what it builds;
    with --no-build it refuses, naming the same size."""
    from rednet import patches, paths, sources
    monkeypatch.setattr(paths, "DB", tmp_path / "db")
    db = tmp_path / "db" / "denoise-s30"
    t = _toy_reading_db(toy, db)
    calls = []

    def build_db(task, *a, **kw):
        calls.append((task, a, kw))
        write_db(db, seed=0)
        return write_db(db, rows=(12,), seed=1, name="val")
    monkeypatch.setattr(patches, "build_db", build_db)
    from rednet.errors import UserError
    with pytest.raises(UserError, match=r"training database not found; `make data TASK=denoise-s30` builds it "
                                        r"\(\d{3},\d{3} training patches from 300 images, [0-9.]+ GB on a disk"):
        sources.resolve_sources("toy", "denoise-s30", solver=t["solver"], deploy=t["deploy"], build=False)
    assert calls == []
    src = sources.resolve_sources("toy", "denoise-s30", solver=t["solver"], deploy=t["deploy"])
    assert calls == [("denoise-s30", (), {})]
    assert src.train_list == db / "train.txt" and src.val_list == db / "val.txt"
    assert "no database yet; building it first (" in capsys.readouterr().out


def test_train_uses_an_existing_database_as_built(toy, tmp_path, monkeypatch, datasets_dir):
    """A database that `make data` built with its own knobs (config.json) is trained on as it
    is: `rednet train` neither rebuilds it with the defaults nor rewrites a file of it."""
    from rednet import patches, paths, train
    monkeypatch.setattr(paths, "DB", tmp_path / "db")
    db = tmp_path / "db" / "denoise-s30"
    lst = patches.build_db("denoise-s30", db, datasets=datasets_dir, max_images=1, stride=60, noise_repeats=1,
                           shard_size=16, progress=False, workers=1)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in db.iterdir()}
    import h5py
    n = 0
    for p in patches.read_list(lst):
        with h5py.File(p, "r") as f:
            n += f["data"].shape[0]
    t = _toy_reading_db(toy, db)

    def no_build(*a, **kw):
        raise AssertionError("build_db called for an existing database")
    monkeypatch.setattr(patches, "build_db", no_build)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    info = train.train("toy", "denoise-s30", iters=2, run="asbuilt", runs_dir=tmp_path / "runs",
                       files=train.TrainFiles(solver=t["solver"], deploy=t["deploy"]),
                       options=train.SessionOptions(progress=False))
    assert info["status"] == "done"
    assert info["data"]["train"]["list"] == paths.rel(lst) and info["data"]["train"]["patches"] == n
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in db.iterdir()} == before
    assert json.loads((db / "config.json").read_text())["stride"] == 60 and n < 1000


def test_resume_flag_needs_a_run(toy, tmp_path):
    r = cli(*train_args(toy, tmp_path / "runs", "none", "--resume"))
    assert r.returncode == 2 and "no run to resume" in r.stderr


def test_no_disk_space_for_snapshots(toy, tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    # (the check itself: tests/test_snapshots.py) through the command: a run whose snapshots cannot fit is refused before caffe starts
    # (the check uses the real free space: ask for more snapshots than any disk here holds)
    r = cli(*train_args(toy, tmp_path / "runs", "huge", "--iters", "2000000000", "--snapshot-every", "1"))
    assert r.returncode == 2 and "MiB free" in r.stderr, r.stderr
    assert not list((tmp_path / "runs" / "huge" / "snapshots").glob("*"))


def test_blas_core_choice_is_passed_to_caffe_and_recorded(toy, tmp_path):
    runs = tmp_path / "runs"
    r = cli(*train_args(toy, runs, "core", "--iters", "3", "--blas-core", "auto"), env={"OPENBLAS_CORETYPE": "Haswell"})
    assert r.returncode == 0, r.stderr
    info = json.loads((runs / "core" / "run.json").read_text())
    assert "OPENBLAS_CORETYPE" not in info["sessions"][-1]["env"]
    r = cli(*train_args(toy, runs, "core", "--iters", "6", "--blas-core", "Haswell"))
    assert r.returncode == 0, r.stderr
    info = json.loads((runs / "core" / "run.json").read_text())
    assert info["sessions"][-1]["env"]["OPENBLAS_CORETYPE"] == "Haswell"
    r = cli(*train_args(toy, runs, "core", "--blas-core", "rm -rf"))
    assert r.returncode == 2 and "BLAS_CORE=" in r.stderr


def test_a_run_folder_in_use_is_refused(toy, tmp_path):
    import fcntl
    run = tmp_path / "runs" / "busy"
    run.mkdir(parents=True)
    with open(run / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        r = cli(*train_args(toy, tmp_path / "runs", "busy", "--iters", "3"))
    assert r.returncode == 2 and "another `rednet train` is using this run folder" in r.stderr
    assert not (run / "run.json").exists()


def test_only_complete_snapshots_count_as_trained(toy, tmp_path):
    """A .caffemodel cut short (what a full disk leaves) is not counted as trained: the newest
    complete one is, and the short pair moves to quarantine/."""
    from rednet.caffeio import param_shapes
    from rednet.snapshots import snapshot_files, trained_to
    runs = tmp_path / "runs"
    assert cli(*train_args(toy, runs, "short", "--iters", "20")).returncode == 0
    run = runs / "short"
    snaps = snapshot_files(run / "snapshots")
    assert max(snaps) == 20
    snaps[20]["model"].write_bytes(b"")                      # a full disk: 0 bytes written
    shapes = param_shapes(run / "deploy.prototxt")
    assert trained_to(run / "snapshots", run / "quarantine", shapes, fallback=0) == 10
    assert 20 not in snapshot_files(run / "snapshots")
    assert (run / "quarantine" / snaps[20]["model"].name).is_file()
    # and a resumed run starts from iteration 10, trains to 30, and counts 30
    r = cli(*train_args(toy, runs, "short", "--iters", "30"))
    assert r.returncode == 0, r.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["sessions"][-1]["start_iter"] == 10 and info["iterations_trained"] == 30


def test_a_preset_run_is_rendered_from_the_templates(tmp_path):
    """`rednet train --net red10` (no --solver): the run's solver and nets are the templates
    rendered with the run's values, line for line solvers/ and gen/ but for those values and
    the header; gen/ and solvers/ are not written; run.json names the templates."""
    from rednet import netgen
    from rednet.netgen import PRESETS
    train_list = write_db(tmp_path / "db", seed=0)
    val_list = write_db(tmp_path / "db", rows=(16,), seed=1, name="val")
    repo_files = sorted((ROOT / "gen" / "red10").rglob("*.prototxt")) + sorted((ROOT / "solvers").glob("red10_*"))
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in repo_files}
    runs = tmp_path / "runs"
    r = cli("train", "--net", "red10", "--task", "denoise-s30", "--run", "p1", "--runs-dir", str(runs),
            "--data", str(train_list), "--val", str(val_list), "--iters", "2", "--snapshot-every", "2", "--no-progress")
    assert r.returncode == 0, r.stderr + r.stdout
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in repo_files} == before
    run = runs / "p1"
    cfg = PRESETS["red10"]
    rel = str(run)          # the run folder lies outside the repository: absolute paths

    def diff(ours: str, theirs: str) -> list[str]:
        a, b = ours.splitlines(), theirs.splitlines()
        assert len(a) == len(b)
        return sorted(y for x, y in zip(a[2:], b[2:]) if x != y)
    assert (run / "solver.prototxt").read_text().startswith(
        "# Generated by `bin/python -m rednet train` for the run p1 from prototxt_templates/solver.prototxt.j2")
    assert diff((ROOT / "solvers/red10_denoise-s30.prototxt").read_text(), (run / "solver.prototxt").read_text()) == \
        sorted(["max_iter: 2", "snapshot: 2", f'snapshot_prefix: "{rel}/snapshots/red10_denoise-s30"',
                f'train_net: "{rel}/train.prototxt"', f'test_net: "{rel}/test.prototxt"',
                "# Snapshot (weights + solver state, so a run can resume) every 2 iterations (ours).",
                "test_iter: 1"])     # the validation database's 16 pairs: one batch
    assert diff((ROOT / "gen/red10/denoise-s30/train.prototxt").read_text(), (run / "train.prototxt").read_text()) == \
        sorted([f'    source: "{rel}/data/train_schedule.txt"', "    shuffle: false"])
    assert diff((ROOT / "gen/red10/denoise-s30/test.prototxt").read_text(), (run / "test.prototxt").read_text()) == \
        [f'    source: "{rel}/data/val_schedule.txt"']
    assert (run / "deploy.prototxt").read_text() == netgen.render_deploy(cfg)
    info = json.loads((run / "run.json").read_text())
    assert info["sources"]["solver"] == "prototxt_templates/solver.prototxt.j2"
    assert info["sources"]["parameters"] == cfg.params() and info["iterations_trained"] == 2
    assert (run / "snapshots" / "red10_denoise-s30_iter_2.caffemodel").is_file()


def test_a_run_can_test_more_often_and_keeps_it_on_resume(tmp_path):
    """--test-interval (what `make figures` uses): the run's solver tests every N iterations,
    run.json records it, a resumed session keeps it; the default stays the solver's 500."""
    from rednet.logparse import parse_log
    train_list = write_db(tmp_path / "db", seed=0)
    val_list = write_db(tmp_path / "db", rows=(16,), seed=1, name="val")
    runs = tmp_path / "runs"
    base = ["train", "--net", "red10", "--task", "denoise-s30", "--run", "t", "--runs-dir", str(runs),
            "--data", str(train_list), "--val", str(val_list), "--snapshot-every", "2", "--no-progress"]
    r = cli(*base, "--iters", "4", "--test-interval", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    run = runs / "t"
    assert "test_interval: 2\n" in (run / "solver.prototxt").read_text()
    assert json.loads((run / "run.json").read_text())["test_interval"] == 2
    r = cli(*base, "--iters", "6")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "test_interval: 2\n" in (run / "solver.prototxt").read_text()
    tested = [row.iteration for row in parse_log(run / "train.log").sorted_rows() if row.test_loss is not None]
    assert tested == [0, 2, 4, 6]
    r = cli(*base[:6], "u", *base[7:], "--iters", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "test_interval: 500\n" in (runs / "u" / "solver.prototxt").read_text()
    assert json.loads((runs / "u" / "run.json").read_text())["test_interval"] == 500
