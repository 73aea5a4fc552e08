"""The data schedule: which samples Caffe's HDF5Data layer reads, in which order, from where.

Caffe cannot continue a data order after a resume (the HDF5Data layer keeps its file/row
cursor in memory only, and its ``shuffle`` uses glibc ``rand()``, never seeded), so a run
reads its database through a *schedule*: a list file naming the shards in the order they are
to be read.  The shard order is reshuffled every epoch with a seeded NumPy generator
(:func:`epoch_order`); the rows inside a shard keep the database order.  Sample ``k`` of the
schedule is therefore a pure function of ``k``, the shard sizes and the seed
(:func:`schedule_position`), and :func:`plan_schedule` lists what a session that starts at
sample ``k`` must read.  :func:`write_schedule` writes that list (and, for a start inside a
shard, a *head* file with the rest of that shard).  The validation net reads the same rows at
every test instead (:func:`write_pass`).  See docs/training.md.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import UserError, atomic_path, atomic_write_text


@dataclass
class Shard:
    path: str      # as written in the list (relative to the repo root, or absolute)
    rows: int
    size: int


_abs = paths.from_root


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


@dataclass
class Plan:
    """What a session starting at sample ``start`` reads: first the rows ``head_row:`` of shard
    ``head`` (when the start falls inside it), then the shards ``files`` (indices), in order."""
    start: int
    epoch: int                    # the epoch of sample ``start``
    head: int | None              # shard index served from a head file, or None
    head_row: int
    head_rows: int                # rows the head file holds
    files: list[int]


def plan_schedule(rows: list[int], start: int, end: int, seed: int | None) -> Plan:
    """The reading plan for samples ``start..end-1`` of the schedule of shards with ``rows``
    rows each, and one more epoch as margin (after its list Caffe wraps to the first line)."""
    shards = [Shard(str(i), n, 0) for i, n in enumerate(rows)]
    total = sum(rows)
    epoch, pos, row = schedule_position(shards, start, seed)
    first_epoch = epoch
    order = epoch_order(len(rows), epoch, seed)
    covered = start
    head = None
    head_rows = 0
    if row:
        head = order[pos]
        head_rows = rows[head] - row
        covered += head_rows
        pos += 1
    files: list[int] = []
    goal = end + total
    while covered < goal:
        if pos == len(order):
            epoch, pos = epoch + 1, 0
            order = epoch_order(len(rows), epoch, seed)
        files.append(order[pos])
        covered += rows[order[pos]]
        pos += 1
    return Plan(start, first_epoch, head, row, head_rows, files)


def write_schedule(dest: Path, shards: list[Shard], start: int, end: int, seed: int | None,
                   head: Path, tops: tuple[str, ...]) -> dict:
    """Write the list file that makes Caffe's HDF5Data layer read samples ``start..end-1``
    (and on, one more epoch as margin) of the schedule, in order (:func:`plan_schedule`).

    A start inside a file is served by ``head`` (a copy of that file's remaining rows, the
    datasets ``tops``); without one an old ``head`` is removed.  Returns what the run record
    keeps of the schedule.
    """
    import h5py
    plan = plan_schedule([s.rows for s in shards], start, end, seed)
    lines: list[str] = []
    if plan.head is not None:
        src = shards[plan.head]
        with atomic_path(head, suffix=".h5") as tmp:
            with h5py.File(_abs(src.path), "r") as fi, h5py.File(tmp, "w") as fo:
                for t in tops:
                    fo.create_dataset(t, data=fi[t][plan.head_row:])
        lines.append(paths.rel(head))
    else:
        with contextlib.suppress(FileNotFoundError):
            head.unlink()
    lines += [shards[i].path for i in plan.files]
    atomic_write_text(dest, "\n".join(lines) + "\n")
    return {"list": paths.rel(dest), "start_sample": start, "epoch": plan.epoch, "head_rows": plan.head_rows,
            "files": len(lines)}


def write_pass(dest: Path, shards: list[Shard], rows: int, head: Path, tops: tuple[str, ...]) -> dict:
    """Write the list file of a validation pass: one file holding exactly the first ``rows``
    rows of ``shards``.  With a single file listed, Caffe's HDF5Data layer wraps to its first
    row instead of loading another file, so every test (``rows`` = test_iter x batch) reads
    the same rows in the same order.  The file is the shard itself when it is the only one and
    has exactly ``rows`` rows, else ``head`` (a copy of the datasets ``tops``).  Returns what
    the run record keeps of it."""
    import h5py
    import numpy as np
    if rows <= 0 or rows > sum(s.rows for s in shards):
        raise UserError(f"validation pass of {rows} rows: the database has {sum(s.rows for s in shards)}")
    if len(shards) == 1 and shards[0].rows == rows:
        with contextlib.suppress(FileNotFoundError):
            head.unlink()
        listed = shards[0].path
    else:
        parts: dict[str, list] = {t: [] for t in tops}
        left = rows
        for s in shards:
            if left == 0:
                break
            k = min(left, s.rows)
            with h5py.File(_abs(s.path), "r") as fi:
                for t in tops:
                    parts[t].append(fi[t][:k])
            left -= k
        with atomic_path(head, suffix=".h5") as tmp:
            with h5py.File(tmp, "w") as fo:
                for t in tops:
                    fo.create_dataset(t, data=np.concatenate(parts[t]))
        listed = paths.rel(head)
    atomic_write_text(dest, listed + "\n")
    return {"list": paths.rel(dest), "rows_per_test": rows, "file": listed}
