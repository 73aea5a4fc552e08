"""Train a RED-Net with the stock caffe binary: ``bin/python -m rednet train`` (``make train``).

One run lives in one folder, ``runs/<name>/`` (default name ``<net>_<task>``)::

    run.json            configuration, Caffe and project versions, data list + hashes, sessions
    solver.prototxt     the exact solver Caffe ran (nets and snapshot_prefix point in here)
    train.prototxt      the exact training net (its HDF5 source is data/train_schedule.txt)
    test.prototxt       the exact validation net (source data/val_schedule.txt)
    deploy.prototxt     the deploy net of the same architecture (for rednet.restore)
    data/               the data schedules (see below) and at most one resume head shard
    snapshots/          <net>_<task>_iter_<N>.caffemodel / .solverstate
    train.log           Caffe's log, all sessions appended
    quarantine/         snapshots set aside (truncated by a kill, or taken after divergence)

What the command does: make the nets and the solver if missing (``rednet.netgen``), make
the patch database if missing (``rednet.patches.build_db``), write the run folder, then run
``bin/caffe train -solver runs/<name>/solver.prototxt [-snapshot ...]`` from the repository
root, copying its log to ``train.log`` and showing iteration, loss and it/s.

Resuming.  When the run folder exists (or with ``--resume``) training restarts from the
newest *valid* ``.solverstate``.  Caffe writes snapshots in place (no temporary file), so a
kill can leave a truncated pair; every candidate pair is parsed and checked against the
net's parameter shapes and the newest complete one is used, the others are moved to
``quarantine/``.  For the resumed run to give *the same weights* as an uninterrupted one,
the data order must continue where it stopped, which Caffe cannot do by itself: the
HDF5Data layer keeps its file/row cursor in memory only (not in the solverstate) and its
``shuffle`` uses ``std::random_shuffle``, i.e. glibc ``rand()``, which Caffe never seeds.
So the run's nets read the database through a *schedule*: ``shuffle`` is off in the run's
copies, and ``data/train_schedule.txt`` lists the shards in the order they are to be read
(the shard order is reshuffled every epoch with a seeded NumPy generator, which replaces
Caffe's in-layer shuffle; the rows inside a shard keep the order the database builder
gave them).  On resume the schedule is rewritten to start at sample ``iter x batch``; when
that falls inside a shard, the rest of that shard is copied into ``data/head_train.h5``.  The same
is done for the validation net, so the test losses after a resume are those of the
uninterrupted run too.  See docs/training.md.

Divergence guard: a loss that is NaN/inf or more than ``--diverge-factor`` times the
smallest loss seen stops Caffe at once (SIGKILL: no snapshot of the bad weights); snapshots
taken after the last good loss go to ``quarantine/``.  Ctrl-C (or SIGTERM to this
process) asks Caffe to stop the way Caffe does it (``-sigint_effect stop``: snapshot, exit).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, logparse, paths
from .errors import UserError, atomic_path, atomic_write_text, check_writable
from .datasets import sha256_file
from .tasks import get_task, task_from_words

SCHEMA = 1
DEFAULT_DIVERGE_FACTOR = 1e3
KEEP_SOLVERSTATES = 2        # older .solverstate files are removed during a run (weights are kept)


class TrainError(UserError):
    """Training stopped for a reason the user must act on (one line, exit status 2)."""


# ------------------------------------------------------------------------ protobuf helpers
def _pb():
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        from caffe.proto import caffe_pb2
        from google.protobuf import text_format
    except ImportError as e:  # pragma: no cover - set-up problem
        raise UserError(f"pycaffe: cannot import caffe.proto ({e}); run 'make setup' and use bin/python") from None
    return caffe_pb2, text_format


def read_prototxt(path: Path, kind: str):
    """Parse a text prototxt into ``caffe_pb2.<kind>`` (SolverParameter or NetParameter)."""
    caffe_pb2, text_format = _pb()
    msg = getattr(caffe_pb2, kind)()
    try:
        text_format.Merge(Path(path).read_text(), msg)
    except OSError as e:
        raise UserError(f"{paths.rel(path)}: cannot read ({e.strerror})") from None
    except text_format.ParseError as e:
        raise UserError(f"{paths.rel(path)}: not a valid {kind} prototxt ({e})") from None
    return msg


def to_text(msg) -> str:
    _, text_format = _pb()
    return text_format.MessageToString(msg)


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _abs(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else paths.ROOT / p


def hdf5_layers(net) -> list:
    return [l for l in net.layer if l.type == "HDF5Data"]


# ------------------------------------------------------------------------ data schedule
@dataclass
class Shard:
    path: str      # as written in the list (relative to the repo root, or absolute)
    rows: int
    size: int


def read_list(list_path: Path, top: str = "data") -> list[Shard]:
    """The shards of an HDF5 list file, with their row counts (read from the HDF5 headers)."""
    import h5py
    list_path = _abs(list_path)
    if not list_path.is_file():
        raise UserError(f"{paths.rel(list_path)}: HDF5 list file not found")
    shards = []
    for line in list_path.read_text().split():
        p = _abs(line)
        try:
            with h5py.File(p, "r") as f:
                rows = int(f[top].shape[0])
        except (OSError, KeyError) as e:
            raise UserError(f"{paths.rel(list_path)}: shard {line}: not a readable HDF5 file with a "
                            f"'{top}' dataset ({e})") from None
        if rows < 1:
            raise UserError(f"{paths.rel(list_path)}: shard {line} has no rows")
        shards.append(Shard(line, rows, p.stat().st_size))
    if not shards:
        raise UserError(f"{paths.rel(list_path)}: lists no HDF5 files")
    return shards


def epoch_order(n_files: int, epoch: int, seed: int | None) -> list[int]:
    """File order of one epoch: in list order without a seed, else a seeded permutation."""
    if seed is None:
        return list(range(n_files))
    import numpy as np
    return [int(i) for i in np.random.default_rng([int(seed), int(epoch)]).permutation(n_files)]


def schedule_position(shards: list[Shard], sample: int, seed: int | None) -> tuple[int, int, int]:
    """(epoch, position in the epoch's file order, row in that file) of global ``sample``."""
    total = sum(s.rows for s in shards)
    epoch, off = divmod(sample, total)
    order = epoch_order(len(shards), epoch, seed)
    for pos, i in enumerate(order):
        if off < shards[i].rows:
            return epoch, pos, off
        off -= shards[i].rows
    raise AssertionError("unreachable")


def write_schedule(dest: Path, shards: list[Shard], start: int, end: int, seed: int | None,
                   head: Path, tops: tuple[str, ...]) -> dict:
    """Write the list file that makes Caffe's HDF5Data layer read samples ``start..end-1``
    (and on, one more epoch as margin) of the schedule, in order.

    Sample ``k`` of the schedule is row ``r`` of file ``order_e[pos]`` where the epoch ``e``
    and ``(pos, r)`` follow from ``k`` (:func:`schedule_position`).  A start inside a file
    is served by ``head`` (a copy of that file's remaining rows).
    """
    import h5py
    total = sum(s.rows for s in shards)
    epoch, pos, row = schedule_position(shards, start, seed)
    first_epoch = epoch
    order = epoch_order(len(shards), epoch, seed)
    lines: list[str] = []
    covered = start
    head_rows = 0
    if row:
        src = shards[order[pos]]
        head_rows = src.rows - row
        with atomic_path(head, suffix=".h5") as tmp:
            with h5py.File(_abs(src.path), "r") as fi, h5py.File(tmp, "w") as fo:
                for t in tops:
                    fo.create_dataset(t, data=fi[t][row:])
        lines.append(paths.rel(head))
        covered += head_rows
        pos += 1
    else:
        with contextlib.suppress(FileNotFoundError):
            head.unlink()
    goal = end + total  # one epoch of margin: after the list Caffe wraps to its first line
    while covered < goal:
        if pos == len(order):
            epoch, pos = epoch + 1, 0
            order = epoch_order(len(shards), epoch, seed)
        s = shards[order[pos]]
        lines.append(s.path)
        covered += s.rows
        pos += 1
    atomic_write_text(dest, "\n".join(lines) + "\n")
    return {"list": paths.rel(dest), "start_sample": start, "epoch": first_epoch, "head_rows": head_rows,
            "files": len(lines)}


# ------------------------------------------------------------------------ snapshots
SNAP_RE = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$")


def snapshot_files(snap_dir: Path) -> dict[int, dict[str, Path]]:
    """iteration -> {"model": path, "state": path} for the files present in ``snap_dir``."""
    out: dict[int, dict[str, Path]] = {}
    if not snap_dir.is_dir():
        return out
    for p in snap_dir.iterdir():
        m = SNAP_RE.search(p.name)
        if m:
            out.setdefault(int(m.group(1)), {})["model" if m.group(2) == "caffemodel" else "state"] = p
    return out


def param_shapes(deploy: Path) -> list[tuple[str, list[tuple[int, ...]]]]:
    """Learnable layers of a net and their parameter blob shapes (via pycaffe)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    caffe.set_mode_cpu()
    net = caffe.Net(str(deploy), caffe.TEST)
    return [(name, [tuple(b.data.shape) for b in blobs]) for name, blobs in net.params.items()]


def _blob_len(b) -> int:
    return len(b.data) if len(b.data) else len(b.double_data)


def _blob_shape(b) -> tuple[int, ...]:
    if b.HasField("shape"):
        return tuple(int(d) for d in b.shape.dim)
    return tuple(d for d in (b.num, b.channels, b.height, b.width))


def check_snapshot(state_path: Path, model_path: Path | None, iteration: int,
                   shapes: list[tuple[str, list[tuple[int, ...]]]]) -> str | None:
    """Why the snapshot pair is unusable (one line), or None when it is complete.

    Caffe writes the .caffemodel, then the .solverstate, each with a plain truncating
    ``fstream``: a kill can leave either one short.  Both are parsed; every learned blob must
    be complete and have the net's shape; the state must name this model and iteration and
    hold one or two (Adam) history blobs per parameter, each of the parameter's size.
    """
    caffe_pb2, _ = _pb()
    from google.protobuf.message import DecodeError
    if model_path is None or not model_path.is_file():
        return "no .caffemodel"
    if not state_path.is_file():
        return "no .solverstate"
    if str(state_path).endswith(".h5"):
        return "HDF5 snapshots are not supported (use snapshot_format: BINARYPROTO)"
    st = caffe_pb2.SolverState()
    try:
        st.ParseFromString(state_path.read_bytes())
    except DecodeError:
        return "solverstate does not parse (truncated?)"
    if st.iter != iteration:
        return f"solverstate says iteration {st.iter}, file name {iteration}"
    if Path(st.learned_net).name != model_path.name:
        return f"solverstate points to {st.learned_net}"
    why, sizes = check_model(model_path, shapes)
    if why is not None:
        return why
    if not sizes or len(st.history) % len(sizes) or len(st.history) // len(sizes) not in (1, 2):
        return f"solverstate holds {len(st.history)} history blobs for {len(sizes)} parameters (truncated?)"
    for k, h in enumerate(st.history):
        if _blob_len(h) != sizes[k % len(sizes)]:
            return "solverstate history blob incomplete (truncated?)"
    return None


def check_model(model_path: Path, shapes) -> tuple[str | None, list[int]]:
    """(why the .caffemodel is unusable or None, the sizes of its parameter blobs): it must
    parse and hold every learned blob of the net complete and in the net's shape."""
    import numpy as np
    caffe_pb2, _ = _pb()
    from google.protobuf.message import DecodeError
    nm = caffe_pb2.NetParameter()
    try:
        nm.ParseFromString(model_path.read_bytes())
    except DecodeError:
        return "caffemodel does not parse (truncated?)", []
    except OSError as e:
        return f"caffemodel unreadable ({e.strerror})", []
    stored = {l.name: l.blobs for l in nm.layer if len(l.blobs)}
    sizes = []
    for name, want in shapes:
        blobs = stored.get(name)
        if blobs is None or len(blobs) != len(want):
            return f"caffemodel lacks the parameters of layer {name} (truncated?)", []
        for b, shp in zip(blobs, want):
            n = int(np.prod(shp))
            if _blob_shape(b) != shp or _blob_len(b) != n:
                return f"caffemodel layer {name}: blob incomplete or of the wrong shape", []
            sizes.append(n)
    return None, sizes


def trained_to(run_dir: Path, shapes, fallback: int | None) -> int | None:
    """The newest iteration a complete .caffemodel holds; incomplete newer snapshot files (a
    full disk, a kill during the write) are moved to quarantine/ so nothing counts them."""
    snaps = snapshot_files(run_dir / "snapshots")
    for it in sorted((it for it, p in snaps.items() if "model" in p), reverse=True):
        why, _ = check_model(snaps[it]["model"], shapes)
        if why is None:
            return it
        quarantine(run_dir, list(snaps[it].values()), f"iteration {it}: {why}")
    return fallback


def quarantine(run_dir: Path, files: list[Path], why: str) -> list[Path]:
    """Move ``files`` into ``run_dir/quarantine/`` (never deleted: nothing is lost)."""
    q = run_dir / "quarantine"
    q.mkdir(exist_ok=True)
    moved = []
    for f in files:
        if f.exists():
            dest = q / f.name
            if dest.exists():
                dest = q / f"{f.name}.{int(time.time())}"
            os.replace(f, dest)
            moved.append(dest)
    if moved:
        with contextlib.suppress(OSError):      # a note only: a full disk must not stop the move
            with open(q / "README.txt", "a") as fh:
                fh.write(f"{_now()}  {why}: {', '.join(m.name for m in moved)}\n")
    return moved


def newest_valid_snapshot(run_dir: Path, shapes, log=print) -> tuple[int, Path] | None:
    """The newest complete (iteration, .solverstate) pair; incomplete newer ones are quarantined."""
    snaps = snapshot_files(run_dir / "snapshots")
    for it in sorted(snaps, reverse=True):
        pair = snaps[it]
        state = pair.get("state")
        if state is None:
            # weights alone (older states are pruned on purpose): not resumable, keep it
            continue
        why = check_snapshot(state, pair.get("model"), it, shapes)
        if why is None:
            return it, state
        moved = quarantine(run_dir, [p for p in pair.values()], f"iteration {it}: {why}")
        log(f"snapshot at iteration {it} is unusable ({why}); moved to {paths.rel(moved[0].parent)}/")
    return None


# ------------------------------------------------------------------------ versions, disk
def caffe_version(caffe: Path) -> str:
    try:
        r = subprocess.run([str(caffe), "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise UserError(f"{caffe}: cannot run the caffe binary ({e.strerror}); run 'make setup'") from None
    out = (r.stdout + r.stderr).strip().splitlines()
    if r.returncode != 0 or not out:
        raise UserError(f"{caffe} --version failed: {' '.join(out)[-200:] or 'no output'}; run 'make setup'")
    return out[-1].strip()


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (training speed differs a lot between CPUs)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def project_version() -> dict:
    def git(*a):
        try:
            r = subprocess.run(["git", "-C", str(paths.ROOT), *a], capture_output=True, text=True, timeout=30)
            return r.stdout.strip() if r.returncode == 0 else None
        except OSError:
            return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"version": __version__, "git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def check_disk(run_dir: Path, n_params: int, history: int, snapshots_left: int, free: int | None = None) -> None:
    """Raise unless the disk holding ``run_dir`` has room for the run's remaining snapshots.

    Every snapshot's weights are kept (4 bytes a parameter), but only the newest
    :data:`KEEP_SOLVERSTATES` solver states (``history`` blobs a parameter: 2 for Adam).
    """
    model = 4 * n_params + 64 * 1024
    state = 4 * n_params * history + 64 * 1024
    need = max(1, snapshots_left) * model + (KEEP_SOLVERSTATES + 1) * state + 32 * 2**20
    if free is None:
        free = shutil.disk_usage(run_dir if run_dir.exists() else run_dir.parent).free
    if free < need:
        raise UserError(f"{paths.rel(run_dir)}: {free / 2**20:.0f} MiB free on its disk, but the run's "
                        f"{snapshots_left} snapshot(s) need about {need / 2**20:.0f} MiB "
                        f"({model / 2**20:.1f} MiB weights each + solver states); free space, lower ITERS "
                        f"or snapshot less often (--snapshot-every)")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------ the run
@dataclass
class Sources:
    """Where a run's solver, nets and data come from (repo files, or given explicitly)."""
    net: str
    task: str
    solver: Path
    train_net: Path
    test_net: Path | None
    deploy: Path | None
    train_list: Path
    val_list: Path | None


def _solver_nets(solver, solver_path: Path) -> tuple[Path, Path | None]:
    if solver.HasField("net_param") or solver.HasField("train_net_param") or len(solver.test_net_param):
        raise UserError(f"{paths.rel(solver_path)}: nets given inline; expected train_net/test_net (or net) paths")
    if solver.net:
        return _abs(solver.net), None
    if not solver.train_net:
        raise UserError(f"{paths.rel(solver_path)}: names no train_net (or net)")
    if len(solver.test_net) > 1:
        raise UserError(f"{paths.rel(solver_path)}: expected at most one test_net")
    return _abs(solver.train_net), (_abs(solver.test_net[0]) if len(solver.test_net) else None)


def _hdf5_source(net_path: Path, phase: str | None = None) -> Path:
    net = read_prototxt(net_path, "NetParameter")
    caffe_pb2, _ = _pb()
    layers = hdf5_layers(net)
    if phase is not None:
        want = caffe_pb2.TRAIN if phase == "train" else caffe_pb2.TEST
        layers = [l for l in layers if not len(l.include) or any(r.phase == want for r in l.include)]
    if len(layers) != 1:
        raise UserError(f"{paths.rel(net_path)}: expected exactly one HDF5Data layer, found {len(layers)}")
    return _abs(layers[0].hdf5_data_param.source)


def resolve_sources(net: str, task: str, solver: str | None = None, data: str | None = None,
                    val: str | None = None, deploy: str | None = None, build: bool = True,
                    progress: bool = True) -> Sources:
    """The files a run is made from; makes the nets/solver and the database when missing."""
    if solver:
        solver_path = _abs(solver)
        if not solver_path.is_file():
            raise UserError(f"--solver {solver}: file not found")
    else:
        from . import netgen
        # a preset, or a net in gen/<net>/ (UserError for an unknown NET); rendered for the
        # task when missing or stale
        solver_path, net_deploy, written = netgen.ensure_net(net, task)
        for p in written:
            print(f"made {paths.rel(p)}")
        if deploy is None and net_deploy is not None:
            deploy = str(net_deploy)
    sol = read_prototxt(solver_path, "SolverParameter")
    train_net, test_net = _solver_nets(sol, solver_path)
    for p in (train_net, test_net):
        if p is not None and not p.is_file():
            raise UserError(f"{paths.rel(solver_path)}: net {paths.rel(p)} not found")
    train_list = _abs(data) if data else _hdf5_source(train_net, "train" if test_net is None else None)
    val_list = _abs(val) if val else (_hdf5_source(test_net) if test_net is not None
                                      else _hdf5_source(train_net, "test"))
    if not train_list.is_file() and build and not data:
        build_database(task, train_list)
    if not train_list.is_file():
        raise UserError(f"{paths.rel(train_list)}: training database not found"
                        + ("" if data else f" and not buildable (try: make data TASK=... for {task})"))
    if val_list is not None and not val_list.is_file():
        raise UserError(f"{paths.rel(val_list)}: validation list not found (rebuild the database: make data ...)")
    dep = _abs(deploy) if deploy else None
    if dep is not None and not dep.is_file():
        raise UserError(f"--deploy {deploy}: file not found")
    return Sources(net, task, solver_path, train_net, test_net, dep, train_list, val_list)


def build_database(task: str, train_list: Path) -> None:
    """Build the patch database of ``task`` with rednet.patches (issue 6's builder)."""
    try:
        from . import patches
    except ImportError as e:
        raise UserError(f"{paths.rel(train_list)}: database missing and rednet.patches cannot build it ({e})") from None
    want = paths.DB / task / "train.txt"
    if train_list.resolve() != want.resolve():
        raise UserError(f"{paths.rel(train_list)}: database missing (only data/db/<task>/ databases are built automatically)")
    print(f"building the {task} database (rednet.patches.build_db) ...")
    try:
        patches.build_db(task)
    except UserError as e:
        raise UserError(f"{paths.rel(train_list)}: database missing and cannot be built: {e}") from None


def _normalized_solver(sol) -> str:
    s = type(sol)()
    s.CopyFrom(sol)
    for f in ("max_iter", "display", "snapshot", "snapshot_prefix", "net", "train_net", "solver_mode",
              "device_id"):
        s.ClearField(f)
    s.ClearField("test_net")
    return to_text(s)


def _normalized_net(net) -> str:
    n = type(net)()
    n.CopyFrom(net)
    for l in hdf5_layers(n):
        l.hdf5_data_param.ClearField("source")
    return to_text(n)


def config_of(src: Sources, sol, train_net, test_net) -> dict:
    """What must be equal for two sessions to be one run (compared on resume)."""
    return {
        "net": src.net, "task": src.task,
        "solver_sha256": sha256_bytes(_normalized_solver(sol).encode()),
        "train_net_sha256": sha256_bytes(_normalized_net(train_net).encode()),
        "test_net_sha256": sha256_bytes(_normalized_net(test_net).encode()) if test_net is not None else None,
        "train_list_sha256": sha256_file(src.train_list),
        "val_list_sha256": sha256_file(src.val_list) if src.val_list else None,
    }


def unrectified_sums(net) -> set[str]:
    """Eltwise layers that add a weight layer's output before any ReLU on it (the input sum
    excluded).  The released wiring rectifies a deconvolution before its skip sum, so a run
    whose nets have such sums where today's nets have none was made with the old wiring."""
    made: dict[str, bool] = {}           # blob -> rectified since a weight layer wrote it
    out = set()
    for l in net.layer:
        if l.type in ("Convolution", "Deconvolution"):
            made[l.top[0]] = False
        elif l.type == "ReLU" and list(l.bottom) == list(l.top):
            made[l.bottom[0]] = True
        elif l.type == "Eltwise" and "data" not in l.bottom:
            if any(made.get(b) is False for b in l.bottom):
                out.add(l.name)
    return out


def _old_skip_wiring(run_dir: Path, train_net) -> bool:
    """True when the run folder's own training net sums a skip before the ReLU where the
    current net rectifies first (RED20/RED30 made before the released wiring was followed)."""
    p = run_dir / "train.prototxt"
    try:
        old = read_prototxt(p, "NetParameter")
    except UserError:
        return False
    return bool(unrectified_sums(old) - unrectified_sums(train_net))


@dataclass
class RunPlan:
    name: str
    dir: Path
    src: Sources
    max_iter: int
    snapshot_every: int | None = None
    display: int | None = None
    mode: str | None = None
    shuffle_seed: int | None = None
    env: dict | None = None           # caffe's environment (None: this process's)
    seed: "Seed | None" = None        # start a new run from committed weights (FROM_MODEL)


@dataclass
class Seed:
    """Committed weights a new run continues from, at the iteration they were trained to."""
    weights: Path
    iteration: int
    sha1: str
    source: str                       # e.g. models/<name>


def seed_from_model(folder: str | Path, net: str, task: str) -> Seed:
    """The :class:`Seed` of a zoo model ``models/<name>/`` (its card checked) for ``net``/``task``."""
    from . import zoo
    folder = Path(folder)
    if folder.suffix == ".caffemodel":
        folder = folder.parent
    if not (folder / zoo.CARD).is_file():
        raise UserError(f"FROM_MODEL={folder}: expected a zoo model folder models/<name>/ with a {zoo.CARD}")
    card = zoo.verify(folder)
    if (card["net"], card["task"]) != (net, task):
        raise UserError(f"FROM_MODEL={folder}: trained as {card['net']} {card['task']}, not {net} {task}")
    return Seed(folder / card["caffemodel"], int(card["iterations"]), card["sha1"], paths.rel(folder))


def seed_snapshot(prefix: str, seed: Seed, shapes, history: int) -> Path:
    """Write ``<prefix>_iter_<N>.{caffemodel,solverstate}``: a copy of the seed's weights and a
    solver state at iteration N whose history (Adam's two moments, SGD's momentum) is zero.

    Caffe then resumes as from its own snapshot: the iteration count, the learning-rate
    schedule and this project's data schedule continue at N; only the optimiser's moments
    restart from zero (the .solverstate files are not committed, the weights are).
    """
    caffe_pb2, _ = _pb()
    model = _abs(f"{prefix}_iter_{seed.iteration}.caffemodel")
    state = _abs(f"{prefix}_iter_{seed.iteration}.solverstate")
    with atomic_path(model) as tmp:
        shutil.copyfile(seed.weights, tmp)
    st = caffe_pb2.SolverState()
    st.iter = seed.iteration
    st.learned_net = f"{prefix}_iter_{seed.iteration}.caffemodel"     # as Caffe writes it
    st.current_step = 0
    for _ in range(history):
        for _name, blob_shapes in shapes:
            for shp in blob_shapes:
                b = st.history.add()
                b.shape.dim.extend(shp)
                b.data.extend([0.0] * math.prod(shp))
    with atomic_path(state) as tmp:
        tmp.write_bytes(st.SerializeToString())
    why = check_snapshot(state, model, seed.iteration, shapes)
    if why is not None:
        for p in (model, state):
            p.unlink(missing_ok=True)
        raise UserError(f"FROM_MODEL={seed.source}: {paths.rel(seed.weights)} does not fit this run's net ({why})")
    return state


def _rewrite_nets(train_net, test_net, run_dir: Path, shuffle: bool):
    """Point the HDF5Data layers at the run's schedules, shuffle off (the schedule shuffles)."""
    caffe_pb2, _ = _pb()
    shuffled = False
    for net, which in ((train_net, None), (test_net, "val")):
        if net is None:
            continue
        for l in hdf5_layers(net):
            phase_test = any(r.phase == caffe_pb2.TEST for r in l.include)
            kind = "val" if (which == "val" or phase_test) else "train"
            shuffled |= l.hdf5_data_param.shuffle and kind == "train"
            l.hdf5_data_param.source = paths.rel(run_dir / "data" / f"{kind}_schedule.txt")
            l.hdf5_data_param.shuffle = False
    return shuffled


def _batch(net, phase: str) -> tuple[int, tuple[str, ...]]:
    caffe_pb2, _ = _pb()
    for l in hdf5_layers(net):
        test = any(r.phase == caffe_pb2.TEST for r in l.include)
        if (phase == "val") == test or not len(l.include):
            return l.hdf5_data_param.batch_size, tuple(l.top)
    raise UserError(f"net {net.name}: no HDF5Data layer for the {phase} phase")


def _load_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{paths.rel(p)}: unreadable run record ({e}); remove the run folder to start fresh") from None


def _save_json(p: Path, d: dict) -> None:
    atomic_write_text(p, json.dumps(d, indent=2, sort_keys=False) + "\n")


#: longest run name: one file-name component (255 bytes on most file systems) with room to spare
MAX_RUN_NAME = 100


@contextlib.contextmanager
def _locked(run_dir: Path):
    check_writable(run_dir, paths.rel(run_dir))       # a read-only --runs-dir: one line, nothing made
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(run_dir / ".lock", "w")
    except OSError as e:
        raise UserError(f"{paths.rel(run_dir)}: cannot make the run folder there ({e.strerror or e})") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise UserError(f"{paths.rel(run_dir)}: another `rednet train` is using this run folder") from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def prepare(plan: RunPlan, resume: bool | None = None, log=print) -> tuple[dict, int, Path | None]:
    """Write or check the run folder; return (run record, start iteration, solverstate or None).

    ``resume``: None = resume when the folder exists; True = it must exist; False = it must not.
    A new run folder is removed again when preparing it fails (nothing half-made is left).
    """
    fresh = not (plan.dir / "run.json").is_file() and not any(
        p.name != ".lock" for p in (plan.dir.iterdir() if plan.dir.is_dir() else []))
    try:
        return _prepare(plan, resume, log)
    except BaseException:
        if fresh and plan.dir.is_dir() and not (plan.dir / "run.json").is_file():
            shutil.rmtree(plan.dir, ignore_errors=True)
        raise


def _prepare(plan: RunPlan, resume: bool | None, log) -> tuple[dict, int, Path | None]:
    src, run_dir = plan.src, plan.dir
    sol = read_prototxt(src.solver, "SolverParameter")
    train_net = read_prototxt(src.train_net, "NetParameter")
    test_net = read_prototxt(src.test_net, "NetParameter") if src.test_net else None
    config = config_of(src, sol, train_net, test_net)
    record_path = run_dir / "run.json"
    exists = record_path.is_file()
    fresh_hint = f"start fresh with RUN=<another name> (--run), or remove {paths.rel(run_dir)}/ to discard it"
    if run_dir.exists() and not exists and any(p.name != ".lock" for p in run_dir.iterdir()):
        raise UserError(f"{paths.rel(run_dir)}: exists but is not a rednet run (no run.json); {fresh_hint}")
    if resume is True and not exists:
        raise UserError(f"{paths.rel(run_dir)}: no run to resume (RESUME=1); drop RESUME to start it")
    if resume is False and exists:
        raise UserError(f"{paths.rel(run_dir)}: run exists; {fresh_hint}")

    if exists:
        record = _load_json(record_path)
        old = record.get("config", {})
        diff = [k for k in config if old.get(k) != config[k]]
        if "train_net_sha256" in diff and _old_skip_wiring(run_dir, train_net):
            raise UserError(f"{paths.rel(run_dir)}: made with the old skip wiring ReLU(d + c); the nets now "
                            f"follow the released net, c + ReLU(d) (docs/nets.md), and its snapshots "
                            f"cannot be resumed; {fresh_hint}")
        if diff:
            what = ", ".join(f"{k} ({old.get(k)!s:.12} vs {config[k]!s:.12})" for k in diff)
            raise UserError(f"{paths.rel(run_dir)}: made by a different configuration ({what}); "
                            f"refusing to mix runs; {fresh_hint}")
    else:
        record = None

    # the run's copies of solver and nets
    shuffle_src = _rewrite_nets(train_net, test_net, run_dir, shuffle=True)
    seed = plan.shuffle_seed
    if seed is None and shuffle_src:
        seed = int(sol.random_seed) if sol.random_seed >= 0 else 0
    run_sol = type(sol)()
    run_sol.CopyFrom(sol)
    run_sol.ClearField("net")
    run_sol.ClearField("test_net")
    run_sol.train_net = paths.rel(run_dir / "train.prototxt")
    if test_net is not None:
        run_sol.test_net.append(paths.rel(run_dir / "test.prototxt"))
    elif sol.net:
        run_sol.ClearField("train_net")
        run_sol.net = paths.rel(run_dir / "train.prototxt")
    run_sol.snapshot_prefix = paths.rel(run_dir / "snapshots" / f"{src.net}_{src.task}")
    run_sol.max_iter = plan.max_iter
    if plan.snapshot_every is not None:
        run_sol.snapshot = plan.snapshot_every
    elif record is not None:
        run_sol.snapshot = record.get("snapshot_every", run_sol.snapshot)
    if plan.display is not None:
        run_sol.display = plan.display
    elif record is not None:
        run_sol.display = record.get("display", run_sol.display)
    if plan.mode:
        caffe_pb2, _ = _pb()
        run_sol.solver_mode = caffe_pb2.SolverParameter.GPU if plan.mode == "GPU" else caffe_pb2.SolverParameter.CPU
    if run_sol.snapshot_format != run_sol.BINARYPROTO:
        raise UserError(f"{paths.rel(src.solver)}: snapshot_format HDF5 is not supported; use BINARYPROTO")
    if not run_sol.snapshot:
        raise UserError(f"{paths.rel(src.solver)}: snapshot is 0; a resumable run needs snapshots (--snapshot-every)")

    deploy_src = src.deploy if src.deploy is not None else run_dir / "deploy.prototxt"
    if not deploy_src.is_file():
        raise UserError(f"{paths.rel(run_dir)}: no deploy net (give --deploy)")
    shapes = param_shapes(deploy_src)
    n_params = sum(math.prod(s) for _, ss in shapes for s in ss)
    history = 2 if run_sol.type in ("Adam",) else 1
    start0 = 0
    if exists:
        snaps0 = [it for it, pr in snapshot_files(run_dir / "snapshots").items() if "state" in pr]
        start0 = max(snaps0, default=0)
    check_disk(run_dir, n_params, history, max(0, plan.max_iter - start0) // max(1, run_sol.snapshot) + 1)

    (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    (run_dir / "data").mkdir(exist_ok=True)
    atomic_write_text(run_dir / "train.prototxt", _header("training net", src.train_net) + to_text(train_net))
    if test_net is not None:
        atomic_write_text(run_dir / "test.prototxt", _header("validation net", src.test_net) + to_text(test_net))
    atomic_write_text(run_dir / "solver.prototxt", _header("solver", src.solver) + to_text(run_sol))
    if src.deploy is not None:
        atomic_write_text(run_dir / "deploy.prototxt", src.deploy.read_text())

    # where to start
    start, state = 0, None
    if plan.seed is not None and not exists:
        seed_snapshot(run_sol.snapshot_prefix, plan.seed, shapes, history)
    if exists or plan.seed is not None:
        found = newest_valid_snapshot(run_dir, shapes, log=log)
        if found:
            start, state = found
    # drop snapshots newer than the start (a session killed before its next snapshot
    # completes cannot have any; but be safe: never let Caffe overwrite something silently)
    later = [p for it, pair in snapshot_files(run_dir / "snapshots").items() if it > start for p in pair.values()]
    if later:
        quarantine(run_dir, later, f"newer than the resumable snapshot at iteration {start}")

    # data schedules
    tb, ttops = _batch(train_net, "train")
    train_shards = read_list(src.train_list, ttops[0])
    iter_size = max(1, run_sol.iter_size)
    per_iter = tb * iter_size
    sched = {"train": write_schedule(run_dir / "data" / "train_schedule.txt", train_shards, start * per_iter,
                                     (plan.max_iter + 1) * per_iter, seed, run_dir / "data" / "head_train.h5",
                                     ttops)}
    val_shards = None
    caffe_pb2, _ = _pb()
    val_net = test_net if test_net is not None else (
        train_net if any(r.phase == caffe_pb2.TEST for l in hdf5_layers(train_net) for r in l.include) else None)
    if val_net is not None and src.val_list is not None and run_sol.test_interval:
        vb, vtops = _batch(val_net, "val")
        val_shards = read_list(src.val_list, vtops[0])
        ti = run_sol.test_iter[0] if len(run_sol.test_iter) else 0
        T = run_sol.test_interval
        init = run_sol.test_initialization
        passes_before = (start + T - 1) // T if init else max(0, (start - 1) // T)
        passes_total = plan.max_iter // T + 2
        sched["val"] = write_schedule(run_dir / "data" / "val_schedule.txt", val_shards,
                                      passes_before * ti * vb, passes_total * ti * vb, None,
                                      run_dir / "data" / "head_val.h5", vtops)

    caffe = paths.caffe_bin()
    info = {
        "schema": SCHEMA,
        "name": plan.name,
        "net": src.net,
        "task": src.task,
        "config": config,
        "max_iter": plan.max_iter,
        "snapshot_every": int(run_sol.snapshot),
        "display": int(run_sol.display),
        "batch_size": tb,
        "iter_size": iter_size,
        "solver_type": run_sol.type,
        "random_seed": int(run_sol.random_seed),
        "sources": {"solver": paths.rel(src.solver), "train_net": paths.rel(src.train_net),
                    "test_net": paths.rel(src.test_net) if src.test_net else None,
                    "deploy": paths.rel(src.deploy) if src.deploy else None},
        "data": {
            "train": {"list": paths.rel(src.train_list), "list_sha256": config["train_list_sha256"],
                      "shards": len(train_shards), "patches": sum(s.rows for s in train_shards),
                      "bytes": sum(s.size for s in train_shards)},
            "val": ({"list": paths.rel(src.val_list), "list_sha256": config["val_list_sha256"],
                     "shards": len(val_shards), "patches": sum(s.rows for s in val_shards)}
                    if val_shards else None),
            "order": ("schedule: shards reshuffled every epoch with numpy default_rng([seed, epoch]), "
                      "rows in database order; Caffe's HDF5 shuffle off" if seed is not None
                      else "schedule: shards and rows in list order (the source net does not shuffle)"),
            "shuffle_seed": seed,
        },
        "parameters": n_params,
        "caffe": {"binary": paths.rel(caffe), "version": caffe_version(caffe), "build": paths.caffe_build()},
        "project": project_version(),
        "created": record.get("created") if record else _now(),
        "sessions": (record.get("sessions", []) if record else []),
        "status": "prepared",
    }
    env = plan.env if plan.env is not None else os.environ
    info["sessions"].append({"started": _now(), "start_iter": start, "max_iter": plan.max_iter,
                             "mode": "GPU" if run_sol.solver_mode == run_sol.GPU else "CPU",
                             "schedule": sched, "caffe_version": info["caffe"]["version"],
                             "caffe_build": info["caffe"]["build"],
                             "cpu": cpu_model(),
                             **({"restart": {"from": plan.seed.source, "weights_sha1": plan.seed.sha1,
                                             "iteration": plan.seed.iteration,
                                             "optimizer_state": "reset (history zero)"}}
                                if plan.seed is not None and not exists else {}),
                             # bitwise resumption needs the same BLAS threading in every session
                             "env": {k: env[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                         "OPENBLAS_CORETYPE") if k in env}})
    _save_json(record_path, info)
    return info, start, state


def _header(what: str, source: Path) -> str:
    return (f"# The exact {what} of this run, written by `rednet train` from {paths.rel(source)}\n"
            f"# (data source, snapshot prefix and paths rewritten for this run folder).\n")


# ------------------------------------------------------------------------ running caffe
@dataclass
class Guard:
    """Follows the log: progress, divergence, snapshots."""
    factor: float = DEFAULT_DIVERGE_FACTOR
    best: float = math.inf
    last_good_iter: int | None = None
    diverged: str | None = None
    iteration: int | None = None
    trained: int | None = None        # the last iteration trained (a loss logged, a snapshot begun)
    writing: str | None = None        # the snapshot file Caffe named last (the one it was writing)
    fatal: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)
    done: bool = False
    stopped: bool = False
    log_full: bool = False            # train.log could not be written on (its disk is full)

    def disk_full(self) -> bool:
        """True when the run's disk filled up: Caffe could not write a snapshot (its
        ``Check failed: proto.SerializeToOstream``) or train.log could not be written."""
        return self.log_full or any("SerializeToOstream" in f or "No space left" in f for f in self.fatal)

    def loss(self, it: int, value: float) -> bool:
        """Record a training loss; True when it shows divergence."""
        if not math.isfinite(value):
            self.diverged = f"loss is {value} at iteration {it}"
        elif self.best < math.inf and value > self.factor * self.best:
            self.diverged = (f"loss exploded at iteration {it}: {value:.4g} > {self.factor:g} x the "
                             f"smallest loss so far ({self.best:.4g})")
        else:
            self.best = min(self.best, value) if value > 0 else self.best
            self.last_good_iter = it
            return False
        return True


class _Log:
    """train.log, appended line by line.  A full disk stops the copy, not the run: Caffe
    goes on until its own snapshot write fails, which is then reported."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self.full = False

    def write(self, text: str) -> None:
        if self.full:
            return
        try:
            os.write(self.fd, text.encode())
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.full = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def _prune_states(snap_dir: Path, keep_from: int | None) -> None:
    """Remove solver states older than the newest one at or before ``keep_from`` (last good)."""
    states = sorted((it, pr["state"]) for it, pr in snapshot_files(snap_dir).items() if "state" in pr)
    if keep_from is None:
        return
    good = [it for it, _ in states if it <= keep_from]
    keep = set(good[-(KEEP_SOLVERSTATES - 1):]) if good else set()
    for it, p in states:
        if it <= keep_from and it not in keep:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _follow(line: str, guard: Guard, bar, run_dir: Path, proc, log) -> bool:
    """Act on one Caffe log line; True when caffe was stopped for divergence."""
    ev = logparse.parse_line(line)
    if ev is None:
        return False
    if ev.kind == "fatal":
        guard.fatal.append(ev.text)
    elif ev.kind == "loss":
        guard.iteration = ev.iteration
        guard.trained = max(guard.trained or 0, ev.iteration)
        if ev.iteration > bar.n:
            bar.update(ev.iteration - bar.n)
        bar.set_postfix(loss=f"{ev.value:.4g}", refresh=False)
    elif ev.kind == "train_output" and ev.index == 0 and guard.iteration is not None:
        if guard.loss(guard.iteration, ev.value):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # SIGKILL: no snapshot of the diverged weights
            for rest in proc.stdout:
                log.write(rest)
            log.write(f"# rednet train: {_now()} stopped caffe: {guard.diverged}\n")
            return True
    elif ev.kind == "snapshot_model":
        guard.writing = ev.path
        m = SNAP_RE.search(ev.path)
        if m:      # a snapshot at N is taken after N iterations
            guard.trained = max(guard.trained or 0, int(m.group(1)))
    elif ev.kind == "snapshot_state":
        guard.writing = ev.path
        guard.snapshots.append(ev.path)
        _prune_states(run_dir / "snapshots", guard.last_good_iter)
        m = SNAP_RE.search(ev.path)
        if m and int(m.group(1)) > bar.n:
            bar.update(int(m.group(1)) - bar.n)
    elif ev.kind == "done":
        # Caffe prints "Optimization Done." after a requested stop too, so the bar is not
        # filled here: the final snapshot (always written) moves it to where training ended
        guard.done = True
    elif ev.kind == "stopped":
        guard.stopped = True
    return False


def run_caffe(run_dir: Path, start: int, state: Path | None, max_iter: int, *, guard: Guard,
              time_limit: float | None = None, progress: bool = True, env: dict | None = None) -> str:
    """Run ``bin/caffe train`` for the run in ``run_dir``; return the outcome:
    ``done``, ``stopped`` (Ctrl-C / SIGTERM / time limit; Caffe snapshotted), ``diverged``,
    or ``failed``."""
    from tqdm import tqdm
    caffe = paths.caffe_bin()
    cmd = [str(caffe), "train", "-solver", paths.rel(run_dir / "solver.prototxt")]
    if state is not None:
        cmd += ["-snapshot", paths.rel(state)]
    e = dict(os.environ if env is None else env)
    e["GLOG_logtostderr"] = "1"
    e.pop("GLOG_minloglevel", None)
    log_path = run_dir / "train.log"
    pid_path = run_dir / "caffe.pid"
    stop_reason = None
    with _Log(log_path) as log:
        log.write(f"# rednet train: {_now()} {' '.join(cmd)}\n")
        proc = subprocess.Popen(cmd, cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, env=e)
        atomic_write_text(pid_path, f"{proc.pid}\n")

        def ask_stop(signum=None, frame=None):
            nonlocal stop_reason
            if proc.poll() is None:
                stop_reason = stop_reason or ("time limit" if signum is None else signal.Signals(signum).name)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)  # Caffe: snapshot, then stop

        try:
            old_term = signal.signal(signal.SIGTERM, ask_stop)
        except ValueError:  # not the main thread
            old_term = None
        timer = threading.Timer(time_limit, ask_stop) if time_limit else None
        if timer:
            timer.daemon = True
            timer.start()
        bar = tqdm(total=max_iter, initial=start, unit="it", dynamic_ncols=True, disable=not progress,
                   desc=run_dir.name, smoothing=0.1, file=sys.stderr)
        try:
            while True:
                try:
                    line = proc.stdout.readline()
                    if not line:
                        break
                    log.write(line)
                    if _follow(line, guard, bar, run_dir, proc, log):
                        break
                except KeyboardInterrupt:
                    # the terminal sent SIGINT to caffe too; a second one is harmless
                    stop_reason = stop_reason or "Ctrl-C"
                    ask_stop()
            rc = proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            with contextlib.suppress(Exception):
                proc.wait(timeout=300)
            raise
        finally:
            if timer:
                timer.cancel()
            bar.close()
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
            with contextlib.suppress(FileNotFoundError):
                pid_path.unlink()
        if rc != 0 and not guard.diverged:
            log.write(f"# rednet train: {_now()} caffe exited with status {rc}\n")
        guard.log_full = log.full
    if guard.diverged:
        return "diverged"
    if rc == 0 and (guard.stopped or stop_reason):
        return "stopped"
    if rc == 0 and guard.done:
        return "done"
    return "failed"


def train(net: str | None, task: str | None, *, iters: int | None = None, run: str | None = None,
          resume: bool | None = None, solver: str | None = None, data: str | None = None,
          val: str | None = None, deploy: str | None = None, snapshot_every: int | None = None,
          display: int | None = None, mode: str | None = None, time_limit: float | None = None,
          diverge_factor: float = DEFAULT_DIVERGE_FACTOR, progress: bool = True, build: bool = True,
          shuffle_seed: int | None = None, runs_dir: str | Path | None = None,
          blas_core: str | None = None, from_model: str | None = None) -> dict:
    """Prepare (or resume) a run and train it; return the run record (``status`` says how it ended).

    Raises :class:`UserError` for bad input and :class:`TrainError` when training stops on
    divergence or a Caffe failure.
    """
    if run is None and (net is None or task is None):
        raise UserError("NET and TASK are needed (or RUN=<name> of an existing run)")
    runs = Path(runs_dir) if runs_dir else paths.RUNS
    if net is None or task is None:
        rec = runs / run / "run.json"
        if not rec.is_file():
            raise UserError(f"{paths.rel(rec)}: not found; give NET and TASK to start run {run}")
        info = _load_json(rec)
        net, task = net or info["net"], task or info["task"]
        iters = iters or info.get("max_iter")
    task = get_task(task).name
    name = run or f"{net}_{task}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise UserError(f"RUN={name!r}: expected a folder name (letters, digits, . _ + -)")
    if len(name) > MAX_RUN_NAME:
        raise UserError(f"RUN={name[:20]}... ({len(name)} characters): expected a folder name of at most "
                        f"{MAX_RUN_NAME} characters")
    run_dir = runs / name
    old = _load_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else None
    src = resolve_sources(net, task, solver=solver, data=data, val=val, deploy=deploy, build=build, progress=progress)
    if iters is None:
        iters = old.get("max_iter") if old else int(read_prototxt(src.solver, "SolverParameter").max_iter)
    if iters < 1:
        raise UserError(f"ITERS={iters}: expected a positive number of iterations")
    env = dict(os.environ)   # caffe's environment, recorded per session
    if blas_core is not None:
        # OpenBLAS reads OPENBLAS_CORETYPE when caffe loads it: set it for caffe (and for the
        # record); "auto" lets OpenBLAS detect the CPU (see docs/training.md, bench)
        if not re.fullmatch(r"[A-Za-z0-9]+", blas_core):
            raise UserError(f"BLAS_CORE={blas_core!r}: expected auto or an OpenBLAS core name such as SkylakeX, Haswell")
        if blas_core == "auto":
            env.pop("OPENBLAS_CORETYPE", None)
        else:
            env["OPENBLAS_CORETYPE"] = blas_core
    seed = None
    if from_model is not None:
        if old is not None:
            raise UserError(f"FROM_MODEL={from_model}: run {paths.rel(run_dir)} exists and resumes from its own "
                            f"snapshots; drop FROM_MODEL, or give RUN=<a new name>")
        seed = seed_from_model(from_model, net, task)
    plan = RunPlan(name, run_dir, src, int(iters), snapshot_every, display, mode, shuffle_seed, env, seed)
    with _locked(run_dir):
        info, start, state = prepare(plan, resume=resume)
        record_path = run_dir / "run.json"
        if start >= plan.max_iter:
            print(f"{paths.rel(run_dir)}: already trained to iteration {start} (ITERS={plan.max_iter}); nothing to do")
            info["sessions"].pop()
            info["status"] = "done"
            info["iterations_trained"] = start
            _save_json(record_path, info)
            return info
        print(f"{'resuming' if state else 'starting'} {name}: iteration {start} -> {plan.max_iter}, "
              f"log {paths.rel(run_dir / 'train.log')}")
        guard = Guard(factor=diverge_factor)
        info["status"] = "running"
        _save_json(record_path, info)
        outcome = "failed"
        try:
            outcome = run_caffe(run_dir, start, state, plan.max_iter, guard=guard, time_limit=time_limit,
                                progress=progress, env=env)
        finally:
            if guard.disk_full() and guard.writing:
                # the file Caffe was writing when the disk filled is cut short: it holds
                # nothing, and its room is what lets run.json be updated
                with contextlib.suppress(OSError):
                    _abs(guard.writing).unlink()
            snaps = snapshot_files(run_dir / "snapshots")
            if outcome == "diverged":
                good = guard.last_good_iter if guard.last_good_iter is not None else start
                bad = [p for it, pr in snaps.items() if it > good for p in pr.values()]
                quarantine(run_dir, bad, f"taken after the last good loss (iteration {good}): {guard.diverged}")
            # only what a complete snapshot holds counts (a full disk leaves a short .caffemodel)
            end_iter = trained_to(run_dir, param_shapes(run_dir / "deploy.prototxt"),
                                  None if outcome == "diverged" else start)
            info["sessions"][-1].update({"ended": _now(), "outcome": outcome, "end_iter": end_iter,
                                         "last_logged_iter": guard.iteration})
            info["status"] = {"done": "done", "stopped": "stopped", "diverged": "diverged"}.get(outcome, "failed")
            info["iterations_trained"] = end_iter
            try:
                _save_json(record_path, info)
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT) or not guard.disk_full():
                    raise
                # run.json keeps the previous record, which never counts more than is held
    again = "resume with: " + resume_command(name, runs_dir, solver=solver, data=data, val=val, deploy=deploy)
    if outcome == "done":
        print(f"done: {paths.rel(run_dir)} trained to iteration {end_iter}")
    elif outcome == "stopped":
        print(f"stopped at iteration {end_iter} (snapshot saved); {again}")
    elif outcome == "diverged":
        keep = f"last good snapshot: iteration {end_iter}" if end_iter is not None else "no good snapshot"
        raise TrainError(f"{paths.rel(run_dir)}: training diverged ({guard.diverged}); caffe stopped, {keep}, "
                         f"later snapshots in {paths.rel(run_dir / 'quarantine')}/; lower base_lr in the solver "
                         f"and start a fresh run")
    else:
        at = f"caffe stopped at iteration {guard.trained if guard.trained is not None else start}"
        held = f"last complete snapshot: iteration {end_iter}"
        pairs = [it for it, pr in snapshot_files(run_dir / "snapshots").items() if len(pr) == 2]
        if end_iter is not None and pairs and max(pairs) < end_iter:   # its solver state was cut short
            held += f" (weights; the run resumes from iteration {max(pairs)})"
        if guard.disk_full():
            where = paths.rel(_abs(guard.writing).parent) if guard.writing else paths.rel(run_dir)
            what = f" writing {Path(guard.writing).name}" if guard.writing else ""
            raise TrainError(f"disk full at {where}{what}: {at}, {held}; free space on that disk, then {again}")
        why = guard.fatal[-1] if guard.fatal else "see the log"
        raise TrainError(f"{at}, {held} ({why}); log: {paths.rel(run_dir / 'train.log')}; {again}")
    return info


def resume_command(name: str, runs_dir: str | Path | None = None, **sources: str | None) -> str:
    """The command that resumes run ``name``: ``make train RUN=<name>`` for a run of the
    default runs/ and files, else ``bin/python -m rednet train --run <name>`` with the
    --runs-dir and the solver, data and deploy files the run was started with."""
    given = [(k, v) for k, v in sources.items() if v]
    if runs_dir is None and not given:
        return f"make train RUN={name} (or the same command again)"
    words = ["bin/python", "-m", "rednet", "train", "--run", name]
    if runs_dir is not None:
        words += ["--runs-dir", str(runs_dir)]
    for k, v in given:
        words += [f"--{k}", str(v)]
    return f"{shlex.join(words)} (or the same command again)"


# ------------------------------------------------------------------------ command line
def cmd_train(args) -> int:
    if args.time_limit is not None and not (0 < args.time_limit < float("inf")):
        raise UserError(f"MINUTES={args.time_limit:g} (--time-limit): expected a positive number of minutes")
    task = task_from_words(args.task, args.sigma, args.scale)
    info = train(args.net, task, iters=args.iters, run=args.run, resume=True if args.resume else None,
                 solver=args.solver, data=args.data, val=args.val, deploy=args.deploy,
                 snapshot_every=args.snapshot_every, display=args.display, mode=args.mode,
                 time_limit=args.time_limit * 60 if args.time_limit else None,
                 diverge_factor=args.diverge_factor, progress=not args.no_progress,
                 shuffle_seed=args.shuffle_seed, runs_dir=args.runs_dir, blas_core=args.blas_core,
                 from_model=args.from_model)
    return 0 if info["status"] in ("done", "stopped") else 1


def _positive_int(v: str) -> int:
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}") from None
    if i < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return i


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a net with the stock caffe binary (resumable run in runs/<name>/)",
        description="Train NET on TASK with `bin/caffe train`, in runs/<name>/ (default <net>_<task>). "
                    "Makes missing nets, solver and database first.  An existing run folder is resumed "
                    "from its newest valid snapshot.")
    p.add_argument("--net", help="net preset (red10, red20, red30, red30-official) or a net made by "
                                 "`rednet gen --name` in gen/<net>/")
    p.add_argument("--task", help="denoise or sr (with --sigma/--scale), or a task name such as denoise-s30")
    p.add_argument("--sigma", help="noise level for --task denoise (10, 30, 50, 70 or mixed)")
    p.add_argument("--scale", help="scale for --task sr (2, 3, 4 or mixed)")
    p.add_argument("--iters", type=_positive_int, help="train to this iteration (default: the solver's max_iter)")
    p.add_argument("--run", help="run name: folder runs/<name>/ (default <net>_<task>)")
    p.add_argument("--resume", action="store_true", help="require an existing run folder and resume it")
    p.add_argument("--snapshot-every", type=_positive_int, help="snapshot interval (default: the solver's)")
    p.add_argument("--display", type=_positive_int, help="log the loss every N iterations (default: the solver's)")
    p.add_argument("--mode", choices=("CPU", "GPU"), help="solver_mode of the run (GPU needs a GPU build of Caffe)")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop (with a snapshot, resumable) after this many minutes")
    p.add_argument("--diverge-factor", type=float, default=DEFAULT_DIVERGE_FACTOR,
                   help="stop when the loss exceeds this many times the smallest loss so far (default %(default)g)")
    p.add_argument("--shuffle-seed", type=int, help="seed of the epoch-wise shard order (default: solver random_seed)")
    p.add_argument("--solver", help="use this solver (and the nets it names) instead of solvers/<net>_<task>.prototxt")
    p.add_argument("--data", help="training HDF5 list file instead of the train net's source")
    p.add_argument("--val", help="validation HDF5 list file instead of the test net's source")
    p.add_argument("--deploy", help="deploy net to copy into the run (default gen/<net>/deploy.prototxt)")
    p.add_argument("--blas-core", help="OPENBLAS_CORETYPE for caffe: auto (OpenBLAS detects the CPU) or a core "
                                       "name (default: the environment's)")
    p.add_argument("--runs-dir", help="folder of the run folders (default runs/)")
    p.add_argument("--from-model", metavar="MODELS/NAME",
                   help="start a new run from a zoo model's weights at its iteration (Adam's moments restart)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
