"""The run folder and its record: the one module that knows ``run.json`` and the folder layout.

One run lives in one folder, ``runs/<name>/`` (:class:`RunLayout`)::

    run.json            configuration, Caffe and project versions, data list + hashes, sessions
    solver.prototxt     the exact solver Caffe ran (nets and snapshot_prefix point in here)
    train.prototxt      the exact training net (its HDF5 source is data/train_schedule.txt)
    test.prototxt       the exact validation net (source data/val_schedule.txt)
    deploy.prototxt     the deploy net of the same architecture (for rednet.restore)
    data/               the data schedules and at most one resume head shard per phase
    snapshots/          <net>_<task>_iter_<N>.caffemodel / .solverstate
    train.log           Caffe's log, all sessions appended
    quarantine/         snapshots set aside (truncated by a kill, or taken after divergence)

:class:`RunRecord` is ``run.json`` as a dataclass: :meth:`RunRecord.load` / :meth:`~RunRecord.save`
(the same keys in the same order as ever, unknown keys kept, so run folders made by older code
load and resume), its sessions (:class:`Session`; :meth:`~RunRecord.begin_session`, :meth:`~RunRecord.end_session`,
:meth:`~RunRecord.training_seconds`) and its newest model (:meth:`~RunRecord.newest_model`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import UserError, atomic_write_text, check_writable

SCHEMA = 1
RECORD = "run.json"
#: longest run name: one file-name component (255 bytes on most file systems) with room to spare
MAX_RUN_NAME = 100


#: a snapshot file's name: ``<prefix>_iter_<N>.caffemodel`` / ``.solverstate`` (Caffe's naming)
SNAP_RE = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$")


def snapshot_iter(p: Path | str) -> int | None:
    """The iteration in a snapshot file name, or None."""
    m = SNAP_RE.search(Path(p).name)
    return int(m.group(1)) if m else None


def now() -> str:
    """The time of day as the record writes it (UTC, ISO 8601, seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunLayout:
    """Where everything of the run folder ``dir`` lives."""
    dir: Path

    @property
    def name(self) -> str:
        return self.dir.name

    record = property(lambda self: self.dir / RECORD)
    solver = property(lambda self: self.dir / "solver.prototxt")
    train_net = property(lambda self: self.dir / "train.prototxt")
    test_net = property(lambda self: self.dir / "test.prototxt")
    deploy = property(lambda self: self.dir / "deploy.prototxt")
    data = property(lambda self: self.dir / "data")
    snapshots = property(lambda self: self.dir / "snapshots")
    quarantine = property(lambda self: self.dir / "quarantine")
    log = property(lambda self: self.dir / "train.log")
    pid = property(lambda self: self.dir / "caffe.pid")
    lock = property(lambda self: self.dir / ".lock")

    def schedule(self, kind: str) -> Path:
        """The list file of ``kind`` (train or val) the run's nets read."""
        return self.data / f"{kind}_schedule.txt"

    def head(self, kind: str) -> Path:
        return self.data / f"head_{kind}.h5"

    def snapshot_prefix(self, net: str, task: str) -> Path:
        return self.snapshots / f"{net}_{task}"

    def is_run(self) -> bool:
        return self.record.is_file()

    def is_empty(self) -> bool:
        """No folder, or nothing in it but the lock file."""
        return not any(p.name != ".lock" for p in (self.dir.iterdir() if self.dir.is_dir() else []))

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock (one `rednet train` at a time); makes the folder."""
        check_writable(self.dir, paths.rel(self.dir))       # a read-only --runs-dir: one line, nothing made
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fh = open(self.lock, "w")
        except OSError as e:
            raise UserError(f"{paths.rel(self.dir)}: cannot make the run folder there ({e.strerror or e})") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise UserError(f"{paths.rel(self.dir)}: another `rednet train` is using this run folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


def check_run_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise UserError(f"RUN={name!r}: expected a folder name (letters, digits, . _ + -)")
    if len(name) > MAX_RUN_NAME:
        raise UserError(f"RUN={name[:20]}... ({len(name)} characters): expected a folder name of at most "
                        f"{MAX_RUN_NAME} characters")
    return name


def read_json(p: Path) -> dict:
    """A run record as a dict (one-line UserError when unreadable)."""
    try:
        d = json.loads(Path(p).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{paths.rel(p)}: unreadable run record ({e}); remove the run folder to start fresh") from None
    if not isinstance(d, dict):
        raise UserError(f"{paths.rel(p)}: unreadable run record (not a JSON object); remove the run folder "
                        f"to start fresh")
    return d


class _Keyed:
    """A JSON object as a dataclass: the known keys as fields, ``extra`` keeps keys this version
    does not know, ``_present`` the keys it was loaded with (written again, in the order they
    were read, even where None); new keys follow in field order, None ones left out (but for
    :meth:`_always_now`'s)."""

    @classmethod
    def _field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name not in ("dir", "extra", "_present")]

    @classmethod
    def _fields_of(cls, d: dict) -> dict:
        names = cls._field_names()
        return dict(**{k: d[k] for k in names if k in d},
                    extra={k: v for k, v in d.items() if k not in names}, _present=tuple(d))

    def _to_dict(self) -> dict:
        names = self._field_names()
        out = {}
        for k in self._present:
            if k in names:
                out[k] = self._value(k)
            elif k in self.extra:
                out[k] = self.extra[k]
        for k in names:
            if k not in out and (getattr(self, k) is not None or k in self._always_now()):
                out[k] = self._value(k)
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    def _value(self, k: str):
        return getattr(self, k)

    def _always_now(self) -> tuple:
        """Keys written even when None."""
        return ()


@dataclass
class Session(_Keyed):
    """One ``rednet train`` session of a run (an element of ``run.json``'s ``sessions``)."""
    started: str | None = None
    start_iter: int | None = None
    max_iter: int | None = None
    mode: str | None = None
    schedule: dict | None = None
    caffe_version: str | None = None
    caffe_build: str | None = None
    caffe_origin: str | None = None         # the sdist and patch set's sha256 (paths.caffe_origin)
    cpu: str | None = None
    restart: dict | None = None             # started from a zoo model's weights (FROM_MODEL)
    env: dict | None = None                 # the BLAS/OpenMP environment caffe ran with
    ended: str | None = None
    outcome: str | None = None              # done, stopped, diverged, failed
    end_iter: int | None = None             # how far the complete snapshots reach (None: none)
    last_logged_iter: int | None = None
    extra: dict = field(default_factory=dict)
    _present: tuple = field(default=(), repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict) -> "Session":
        return cls(**cls._fields_of(d))

    def to_dict(self) -> dict:
        return self._to_dict()

    def _always_now(self) -> tuple:
        # an ended session says how it ended, even with no complete snapshot (end_iter None)
        return ("ended", "outcome", "end_iter", "last_logged_iter") if self.ended else ()

    def seconds(self) -> float:
        """Its wall time (0 while it has not ended)."""
        if not (self.started and self.ended):
            return 0.0
        return (_dt.datetime.fromisoformat(self.ended) - _dt.datetime.fromisoformat(self.started)).total_seconds()


@dataclass
class RunRecord(_Keyed):
    """``run.json``.  Fields in the order they are written; ``extra`` keeps keys this version
    does not know (and ``dir``, the run folder, is not written)."""
    dir: Path
    schema: int = SCHEMA
    name: str | None = None
    net: str | None = None
    task: str | None = None
    config: dict = field(default_factory=dict)
    max_iter: int | None = None
    snapshot_every: int | None = None
    display: int | None = None
    test_interval: int | None = None        # iterations between validation passes (None: older runs, 500)
    batch_size: int | None = None
    iter_size: int | None = None
    solver_type: str | None = None
    recipe: dict | None = None              # the learning-rate recipe (rednet.recipes; None: older runs, the paper's)
    random_seed: int | None = None
    sources: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    parameters: int | None = None
    caffe: dict = field(default_factory=dict)
    project: dict = field(default_factory=dict)
    created: str | None = None
    sessions: list[Session] = field(default_factory=list)
    status: str | None = None
    iterations_trained: int | None = None
    extra: dict = field(default_factory=dict)
    _present: tuple = field(default=(), repr=False, compare=False)

    # ----------------------------------------------------------------------- reading, writing
    @property
    def layout(self) -> RunLayout:
        return RunLayout(Path(self.dir))

    @classmethod
    def from_dict(cls, run_dir: Path, d: dict) -> "RunRecord":
        kw = cls._fields_of(d)
        if isinstance(kw.get("sessions"), list):
            kw["sessions"] = [Session.from_dict(s) if isinstance(s, dict) else s for s in kw["sessions"]]
        return cls(dir=Path(run_dir), **kw)

    @classmethod
    def load(cls, run_dir: Path) -> "RunRecord":
        """The record of ``run_dir`` (UserError when it has none or it is unreadable)."""
        p = RunLayout(Path(run_dir)).record
        if not p.is_file():
            raise UserError(f"{paths.rel(run_dir)}: not a run folder (no {RECORD})")
        return cls.from_dict(run_dir, read_json(p))

    @classmethod
    def find(cls, run_dir: Path) -> "RunRecord":
        """The record of ``run_dir``, or an empty one when the folder has no run.json (a folder of
        snapshots copied by hand)."""
        if RunLayout(Path(run_dir)).record.is_file():
            return cls.load(run_dir)
        return cls(dir=Path(run_dir))

    def to_dict(self) -> dict:
        """The JSON object: the keys it was read with, in their order, then new ones (a key
        absent from an old record and still None stays absent), unknown keys kept."""
        return self._to_dict()

    def _value(self, k: str):
        v = getattr(self, k)
        return [s.to_dict() if isinstance(s, Session) else s for s in v] if k == "sessions" else v

    def _always_now(self) -> tuple:
        return ("iterations_trained",) if self.sessions_ended() else ()

    def save(self) -> None:
        atomic_write_text(self.layout.record, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    # ----------------------------------------------------------------------- sessions
    def sessions_ended(self) -> bool:
        return any(s.ended is not None for s in self.sessions)

    def begin_session(self, **fields) -> Session:
        """Append a session (``started`` now) with ``fields``; returns it.  A session that never
        ended (its process was killed: SIGKILL, a power cut) is closed first as ``killed``, at
        the time its log was last written, reaching what its complete snapshots hold."""
        for old in self.sessions:
            if old.ended is None:
                log = self.layout.log
                when = (_dt.datetime.fromtimestamp(log.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
                        if log.is_file() else old.started)
                old.ended, old.outcome = when, "killed"
                old.end_iter = fields.get("start_iter")
        s = Session(started=now(), **fields)
        self.sessions.append(s)
        return s

    def end_session(self, outcome: str, end_iter: int | None, last_logged_iter: int | None) -> None:
        """Close the newest session and set the run's status and how far it is trained."""
        s = self.sessions[-1]
        s.ended, s.outcome, s.end_iter, s.last_logged_iter = now(), outcome, end_iter, last_logged_iter
        self.status = {"done": "done", "stopped": "stopped", "diverged": "diverged"}.get(outcome, "failed")
        self.iterations_trained = end_iter

    def training_seconds(self) -> float:
        """Wall time of the ended sessions."""
        return sum(s.seconds() for s in self.sessions)

    # ----------------------------------------------------------------------- the model
    def newest_model(self) -> Path | None:
        """The newest ``snapshots/*_iter_<N>.caffemodel`` (largest N), else the newest
        ``*_iter_<N>.caffemodel`` in the folder itself, else None."""
        def newest(folder: Path) -> Path | None:
            found = [(it, p) for p in folder.glob("*.caffemodel") if (it := snapshot_iter(p)) is not None] \
                if folder.is_dir() else []
            return max(found)[1] if found else None
        return newest(self.layout.snapshots) or newest(self.layout.dir)

    def deploy(self) -> Path | None:
        """The deploy net of the run: its own copy, else ``gen/<net>/deploy.prototxt``."""
        if self.layout.deploy.is_file():
            return self.layout.deploy
        return paths.GEN / self.net / "deploy.prototxt" if self.net else None
