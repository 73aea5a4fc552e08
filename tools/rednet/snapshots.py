"""Snapshots of a run: find them, validate them, quarantine the bad ones, prune old solver states.

Caffe writes the ``.caffemodel``, then the ``.solverstate``, each with a plain truncating
``fstream`` (no temporary file): a kill or a full disk can leave either one short.  So:

- :func:`snapshot_files` lists the ``<prefix>_iter_<N>.{caffemodel,solverstate}`` pairs;
- :func:`check_model` / :func:`check_snapshot` parse a pair and check every blob against the
  net's parameter shapes (why it is unusable, in one line, or None);
- :func:`newest_valid_snapshot` (where to resume) and :func:`trained_to` (how far a run got)
  move what they find incomplete into the quarantine folder (:func:`quarantine`: never deleted);
- :func:`prune_states` keeps only the newest :data:`KEEP_SOLVERSTATES` solver states (the
  weights are all kept), :func:`check_disk` refuses a run whose snapshots cannot fit;
- :func:`seed_snapshot` writes a pair from committed weights (a run started FROM_MODEL).

The folders are given by the caller (:class:`rednet.runrecord.RunLayout` knows where they are).
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .caffeio import blob_len, blob_shape, pb
from .errors import UserError, atomic_path
from .runrecord import SNAP_RE, now

KEEP_SOLVERSTATES = 2        # older .solverstate files are removed during a run (weights are kept)


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


def check_snapshot(state_path: Path, model_path: Path | None, iteration: int,
                   shapes: list[tuple[str, list[tuple[int, ...]]]]) -> str | None:
    """Why the snapshot pair is unusable (one line), or None when it is complete.

    Both files are parsed; every learned blob must be complete and have the net's shape; the
    state must name this model and iteration and hold one or two (Adam) history blobs per
    parameter, each of the parameter's size.
    """
    caffe_pb2, _ = pb()
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
        if blob_len(h) != sizes[k % len(sizes)]:
            return "solverstate history blob incomplete (truncated?)"
    return None


def check_model(model_path: Path, shapes) -> tuple[str | None, list[int]]:
    """(why the .caffemodel is unusable or None, the sizes of its parameter blobs): it must
    parse and hold every learned blob of the net complete and in the net's shape."""
    caffe_pb2, _ = pb()
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
            n = math.prod(shp)
            if blob_shape(b) != tuple(shp) or blob_len(b) != n:
                return f"caffemodel layer {name}: blob incomplete or of the wrong shape", []
            sizes.append(n)
    return None, sizes


def quarantine(q: Path, files: list[Path], why: str) -> list[Path]:
    """Move ``files`` into the folder ``q`` (never deleted: nothing is lost), with a line in
    its README.txt saying why."""
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
                fh.write(f"{now()}  {why}: {', '.join(m.name for m in moved)}\n")
    return moved


def trained_to(snap_dir: Path, q: Path, shapes, fallback: int | None) -> int | None:
    """The newest iteration a complete .caffemodel holds; incomplete newer snapshot files (a
    full disk, a kill during the write) are moved to ``q`` so nothing counts them."""
    snaps = snapshot_files(snap_dir)
    for it in sorted((it for it, p in snaps.items() if "model" in p), reverse=True):
        why, _ = check_model(snaps[it]["model"], shapes)
        if why is None:
            return it
        quarantine(q, list(snaps[it].values()), f"iteration {it}: {why}")
    return fallback


def newest_valid_snapshot(snap_dir: Path, q: Path, shapes, log=print) -> tuple[int, Path] | None:
    """The newest complete (iteration, .solverstate) pair; incomplete newer ones go to ``q``."""
    snaps = snapshot_files(snap_dir)
    for it in sorted(snaps, reverse=True):
        pair = snaps[it]
        state = pair.get("state")
        if state is None:
            # weights alone (older states are pruned on purpose): not resumable, keep it
            continue
        why = check_snapshot(state, pair.get("model"), it, shapes)
        if why is None:
            return it, state
        moved = quarantine(q, [p for p in pair.values()], f"iteration {it}: {why}")
        log(f"snapshot at iteration {it} is unusable ({why}); moved to {paths.rel(moved[0].parent)}/")
    return None


def prune_states(snap_dir: Path, keep_from: int | None) -> None:
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


#: kept free beside the snapshots, for run.json, the log and the schedules (said in every message)
DISK_RESERVE = 32 * 2**20


def disk_need(n_params: int, history: int, snapshots_left: int) -> tuple[int, str]:
    """(bytes the disk must have free for a run's remaining snapshots, what they are, in words).

    Every snapshot's weights are kept (4 bytes a parameter), but only the newest
    :data:`KEEP_SOLVERSTATES` solver states (``history`` blobs a parameter: 2 for Adam), and
    :data:`DISK_RESERVE` is kept free beside them.
    """
    model = 4 * n_params + 64 * 1024
    state = 4 * n_params * history + 64 * 1024
    n = max(1, snapshots_left)
    need = n * model + (KEEP_SOLVERSTATES + 1) * state + DISK_RESERVE
    what = (f"{n} snapshot(s) of {model / 2**20:.1f} MiB weights, {KEEP_SOLVERSTATES + 1} solver states of "
            f"{state / 2**20:.1f} MiB and a {DISK_RESERVE >> 20} MiB reserve for the run's record and log")
    return need, what


def check_disk(run_dir: Path, n_params: int, history: int, snapshots_left: int, free: int | None = None) -> None:
    """Raise unless the disk holding ``run_dir`` has room for the run's remaining snapshots
    (:func:`disk_need`)."""
    need, what = disk_need(n_params, history, snapshots_left)
    if free is None:
        free = shutil.disk_usage(run_dir if run_dir.exists() else run_dir.parent).free
    if free < need:
        raise UserError(f"{paths.rel(run_dir)}: {free / 2**20:.0f} MiB free on its disk, but the run needs about "
                        f"{need / 2**20:.0f} MiB ({what}); free space, lower ITERS "
                        f"or snapshot less often (--snapshot-every)")


@dataclass
class Seed:
    """Committed weights a new run continues from, at the iteration they were trained to, and
    the solver state saved with them where there is one (a checkpoint: the same run goes on)."""
    weights: Path
    iteration: int
    sha1: str
    source: str                       # e.g. models/<name>
    state: Path | None = None         # checkpoints/<name>/<name>.solverstate (sha1 checked)
    state_sha1: str | None = None


def read_history(state: Path, iteration: int, source: str) -> list:
    """The history blobs (float32 arrays, Caffe's order) of a committed ``.solverstate`` that
    must be at ``iteration`` (one-line UserError naming ``source`` otherwise)."""
    import numpy as np
    caffe_pb2, _ = pb()
    st = caffe_pb2.SolverState()
    try:
        st.ParseFromString(Path(state).read_bytes())
    except Exception as e:  # noqa: BLE001 - any parse error is a damaged file
        raise UserError(f"FROM_MODEL={source}: {paths.rel(state)} is not a Caffe solver state ({e})") from None
    if st.iter != iteration:
        raise UserError(f"FROM_MODEL={source}: {paths.rel(state)} is at iteration {st.iter}, the weights at {iteration}")
    out = []
    for b in st.history:
        vals = b.data if len(b.data) else b.double_data
        if len(vals) != math.prod(blob_shape(b)):
            raise UserError(f"FROM_MODEL={source}: {paths.rel(state)}: a history blob holds {len(vals)} values "
                            f"for its shape {blob_shape(b)}")
        out.append(np.asarray(vals, np.float32).reshape(blob_shape(b)))
    return out


def seed_snapshot(prefix: str, seed: Seed, shapes, history: int, values=None, steps=()) -> Path:
    """Write ``<prefix>_iter_<N>.{caffemodel,solverstate}``: a copy of the seed's weights and a
    solver state at iteration N whose history (Adam's two moments, SGD's momentum) is
    ``values`` (arrays in Caffe's history order: a checkpoint's own, or estimated, see
    rednet.moments), or zero; its ``current_step`` counts the multistep ``steps`` before N,
    as Caffe's own snapshot at N has it (at 0, Caffe would catch up one step an iteration).

    Caffe then resumes as from its own snapshot: the iteration count, the learning-rate
    schedule and this project's data schedule continue at N; with a checkpoint's own history
    nothing is new, else the optimiser's history.
    """
    caffe_pb2, _ = pb()
    model = paths.from_root(f"{prefix}_iter_{seed.iteration}.caffemodel")
    state = paths.from_root(f"{prefix}_iter_{seed.iteration}.solverstate")
    with atomic_path(model) as tmp:
        shutil.copyfile(seed.weights, tmp)
    st = caffe_pb2.SolverState()
    st.iter = seed.iteration
    st.learned_net = f"{prefix}_iter_{seed.iteration}.caffemodel"     # as Caffe writes it
    st.current_step = sum(1 for s in steps if s < seed.iteration)
    all_shapes = [shp for _ in range(history) for _name, blob_shapes in shapes for shp in blob_shapes]
    if values is not None and [tuple(v.shape) for v in values] != [tuple(s) for s in all_shapes]:
        raise UserError(f"FROM_MODEL={seed.source}: the solver history does not fit this run's net and solver")
    for i, shp in enumerate(all_shapes):
        b = st.history.add()
        b.shape.dim.extend(shp)
        if values is None:
            b.data.extend([0.0] * math.prod(shp))
        else:
            b.data.extend(values[i].ravel().tolist())
    with atomic_path(state) as tmp:
        tmp.write_bytes(st.SerializeToString())
    why = check_snapshot(state, model, seed.iteration, shapes)
    if why is not None:
        for p in (model, state):
            p.unlink(missing_ok=True)
        raise UserError(f"FROM_MODEL={seed.source}: {paths.rel(seed.weights)} does not fit this run's net ({why})")
    return state
