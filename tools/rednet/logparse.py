"""Caffe training logs -> CSV tables and loss curves (``bin/python -m rednet curves``).

In the spirit of Caffe's own ``tools/extra/parse_log.py``: small functions, one regular
expression per kind of line Caffe writes (glog format ``I1121 09:17:23.123456  123
solver.cpp:218] ...``).  The same line parser (:func:`parse_line`) is used by
``rednet.train`` to follow a run live (progress bar, divergence guard).

A log may hold several sessions of the same run (``rednet train`` appends to
``runs/<name>/train.log`` when it resumes).  A resumed session restarts from a snapshot
taken before the interruption, so iterations after that snapshot appear twice; the table
keeps the rows of the session that led to the final weights (the later one) and
``seconds`` counts training time only (the gaps between sessions are left out).

CSV columns: ``iteration, train_loss, test_loss, learning_rate, seconds`` -- one row per
iteration at which Caffe reported anything (``display`` / ``test_interval``), empty cells
where it reported nothing.  ``train_loss`` is the raw loss of that iteration's batch
("Train net output"), ``test_loss`` the mean over the ``test_iter`` validation batches.
"""
from __future__ import annotations

import csv
import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import UserError, atomic_path

# --- one regular expression per kind of Caffe log line ---------------------------------
_NUM = r"([-+]?(?:nan|inf|[0-9.]+(?:[eE][-+]?[0-9]+)?))"
# glog line prefix: level, [year (newer glog)], month, day, time, thread id, file:line]
GLOG_PREFIX = re.compile(r"^([IWEF])(\d{4})?(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})\s+\d+\s+[^\]]*\]\s?(.*)$")
RE_ITER_LOSS = re.compile(r"^Iteration (\d+)(?: \([^)]*\))?, loss = " + _NUM)
RE_TRAIN_OUT = re.compile(r"^\s*Train net output #(\d+): (\S+) = " + _NUM)
RE_LR = re.compile(r"^Iteration (\d+), lr = " + _NUM)
RE_TEST_START = re.compile(r"^Iteration (\d+), Testing net \(#(\d+)\)")
RE_TEST_OUT = re.compile(r"^\s*Test net output #(\d+): (\S+) = " + _NUM)
RE_SNAPSHOT_MODEL = re.compile(r"^Snapshotting to (?:binary proto|HDF5) file (\S+)")
RE_SNAPSHOT_STATE = re.compile(r"^Snapshotting solver state to (?:binary proto|HDF5) file (\S+)")
RE_RESTORE = re.compile(r"^Restoring previous solver status from (\S+)")
RE_SOLVING = re.compile(r"^Solving (\S+)")
RE_DONE = re.compile(r"^Optimization Done\.")
RE_STOPPED = re.compile(r"^Optimization stopped early\.")


def _num(s: str) -> float:
    return float(s)  # float() reads nan, -nan, inf as Caffe prints them


@dataclass
class Event:
    """One meaningful log line: ``kind`` and its values; ``time`` is seconds since the epoch
    of the (year-less) glog timestamp, None for lines without one."""

    kind: str
    time: float | None = None
    iteration: int | None = None
    value: float | None = None
    name: str | None = None
    index: int | None = None
    path: str | None = None
    level: str = "I"
    text: str = ""


def glog_time(month: int, day: int, hh: int, mm: int, ss: int, us: int, year: int | None = None) -> float:
    """Seconds (epoch, UTC) of a glog timestamp; older glog prints no year: then the current one."""
    year = year or _dt.datetime.now(_dt.timezone.utc).year
    try:
        t = _dt.datetime(year, month, day, hh, mm, ss, us, tzinfo=_dt.timezone.utc)
    except ValueError:  # 29 Feb in a guessed non-leap year
        t = _dt.datetime(year, 3, 1, hh, mm, ss, us, tzinfo=_dt.timezone.utc)
    return t.timestamp()


def parse_line(line: str) -> Event | None:
    """The :class:`Event` a Caffe log line carries, or None for lines of no interest."""
    m = GLOG_PREFIX.match(line.rstrip("\n"))
    if not m:
        return None
    level = m.group(1)
    year = int(m.group(2)) if m.group(2) else None
    t = glog_time(*(int(m.group(i)) for i in range(3, 9)), year=year)
    msg = m.group(9)
    if level == "F":
        return Event("fatal", t, level=level, text=msg)
    for kind, rx in (("loss", RE_ITER_LOSS), ("lr", RE_LR)):
        mm = rx.match(msg)
        if mm:
            return Event(kind, t, iteration=int(mm.group(1)), value=_num(mm.group(2)))
    mm = RE_TRAIN_OUT.match(msg)
    if mm:
        return Event("train_output", t, index=int(mm.group(1)), name=mm.group(2), value=_num(mm.group(3)))
    mm = RE_TEST_START.match(msg)
    if mm:
        return Event("test_start", t, iteration=int(mm.group(1)), index=int(mm.group(2)))
    mm = RE_TEST_OUT.match(msg)
    if mm:
        return Event("test_output", t, index=int(mm.group(1)), name=mm.group(2), value=_num(mm.group(3)))
    for kind, rx in (("snapshot_state", RE_SNAPSHOT_STATE), ("snapshot_model", RE_SNAPSHOT_MODEL),
                     ("restore", RE_RESTORE), ("solving", RE_SOLVING)):
        mm = rx.match(msg)
        if mm:
            return Event(kind, t, path=mm.group(1))
    if RE_DONE.match(msg):
        return Event("done", t)
    if RE_STOPPED.match(msg):
        return Event("stopped", t)
    return None


@dataclass
class Row:
    iteration: int
    train_loss: float | None = None
    test_loss: float | None = None
    learning_rate: float | None = None
    seconds: float | None = None


@dataclass
class LogTable:
    """The parsed log: rows by iteration, and what the log says about the sessions."""

    rows: dict[int, Row] = field(default_factory=dict)
    sessions: int = 0
    done: bool = False

    def sorted_rows(self) -> list[Row]:
        return [self.rows[k] for k in sorted(self.rows)]


def parse_log(path: str | Path, loss_name: str | None = None) -> LogTable:
    """Parse a Caffe training log (one or several sessions) into a :class:`LogTable`.

    ``loss_name`` picks the net output used as loss when a net has several outputs
    (default: the first output, ``#0``).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such Caffe log")
    table = LogTable()
    offset = 0.0          # training seconds of the earlier sessions
    start = None          # time of this session's first line
    last_t = None         # last time seen in this session
    cur_iter = None       # iteration the latest "Iteration N, loss" line named
    test_iter = None      # iteration of the running test pass
    pending_session = False

    def row(it: int) -> Row:
        r = table.rows.get(it)
        if r is None:
            r = table.rows[it] = Row(it)
        return r

    def stamp(r: Row, t: float | None):
        if t is not None and start is not None:
            r.seconds = round(offset + t - start, 3)

    with open(path, errors="replace") as f:
        for line in f:
            ev = parse_line(line)
            if ev is None:
                continue
            if ev.kind == "solving":
                # a new session: close the previous one
                if start is not None and last_t is not None:
                    offset += max(0.0, last_t - start)
                start, last_t = ev.time, ev.time
                table.sessions += 1
                cur_iter = test_iter = None
                pending_session = True
                table.done = False
                continue
            if start is None:
                start = ev.time
            if ev.time is not None:
                # glog has no year: a log crossing new year's eve would jump back; keep monotone
                if last_t is not None and ev.time < last_t - 86400:
                    ev.time += 365 * 86400
                last_t = ev.time
            if ev.kind in ("loss", "lr", "test_start") and pending_session:
                # the first iteration of a resumed session: drop what the killed session
                # logged from here on (it was not kept in any snapshot)
                first = ev.iteration
                for k in [k for k in table.rows if k >= first]:
                    del table.rows[k]
                pending_session = False
            if ev.kind == "loss":
                cur_iter = ev.iteration
                stamp(row(cur_iter), ev.time)
            elif ev.kind == "train_output" and cur_iter is not None:
                if (loss_name is None and ev.index == 0) or ev.name == loss_name:
                    row(cur_iter).train_loss = ev.value
            elif ev.kind == "lr":
                row(ev.iteration).learning_rate = ev.value
            elif ev.kind == "test_start":
                test_iter = ev.iteration if ev.index == 0 else None
                if test_iter is not None:
                    stamp(row(test_iter), ev.time)
            elif ev.kind == "test_output" and test_iter is not None:
                if (loss_name is None and ev.index == 0) or ev.name == loss_name:
                    row(test_iter).test_loss = ev.value
            elif ev.kind == "done":
                table.done = True
    return table


COLUMNS = ("iteration", "train_loss", "test_loss", "learning_rate", "seconds")


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return repr(v) if isinstance(v, float) else str(v)


def write_csv(table: LogTable, dest: str | Path) -> Path:
    """Write ``table`` as CSV (:data:`COLUMNS`) to ``dest``, atomically."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in table.sorted_rows():
                w.writerow([_cell(getattr(r, c)) for c in COLUMNS])
    return dest


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, numbers as float/int, blanks as None."""
    out = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            out.append({k: (None if v == "" else (int(v) if k == "iteration" else float(v)))
                        for k, v in rec.items()})
    return out


# --- plots -------------------------------------------------------------------------------
#: fixed styles so that the same run looks the same on every plot
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


def plot_curves(tables: dict[str, LogTable], dest: str | Path, title: str | None = None,
                logy: bool = True) -> Path:
    """Loss against iteration for several runs on one plot (the paper's Figure 3(b)).

    Test loss: solid line with markers; train loss: thin, faded line of the same colour.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    drawn = 0
    for k, (name, table) in enumerate(tables.items()):
        color = COLORS[k % len(COLORS)]
        rows = table.sorted_rows()
        tr = [(r.iteration, r.train_loss) for r in rows if r.train_loss is not None and math.isfinite(r.train_loss)]
        te = [(r.iteration, r.test_loss) for r in rows if r.test_loss is not None and math.isfinite(r.test_loss)]
        if tr:
            ax.plot(*zip(*tr), color=color, lw=0.8, alpha=0.35, label=f"{name} (train)")
            drawn += 1
        if te:
            ax.plot(*zip(*te), color=color, lw=1.8, marker="o", ms=3, label=f"{name} (test)")
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise UserError(f"no loss values in the logs of {', '.join(tables)}: nothing to plot")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (Euclidean)")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Training and test loss")
    fig.tight_layout()
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return dest


# --- command line ------------------------------------------------------------------------
def _run_logs(names: list[str] | None) -> dict[str, Path]:
    """Run name (or log path) -> train.log."""
    from .runrecord import RunLayout
    log = lambda d: RunLayout(Path(d)).log  # noqa: E731
    out: dict[str, Path] = {}
    if not names:
        if paths.RUNS.is_dir():
            for d in sorted(paths.RUNS.iterdir()):
                if log(d).is_file():
                    out[d.name] = log(d)
        if not out:
            raise UserError(f"{paths.rel(paths.RUNS)}: no runs with a train.log (train one with `make train`)")
        return out
    for n in names:
        p = Path(n)
        if p.is_file():
            out[p.parent.name if p.name == log(p.parent).name else p.stem] = p
        elif log(paths.RUNS / n).is_file():
            out[n] = log(paths.RUNS / n)
        elif p.is_dir() and log(p).is_file():
            out[p.name] = log(p)
        else:
            raise UserError(f"RUNS={n!r}: expected a run name in runs/ (with a train.log) or a Caffe log file")
    return out


def cmd_curves(args) -> int:
    logs = _run_logs(args.runs)
    tables = {}
    for name, log in logs.items():
        t = parse_log(log, loss_name=args.loss)
        tables[name] = t
        dest = (Path(args.csv_dir) / f"{name}.csv") if args.csv_dir else log.parent / "curves.csv"
        write_csv(t, dest)
        print(f"{paths.rel(dest)}: {len(t.rows)} rows, {t.sessions} session(s)")
    out = Path(args.out) if args.out else paths.RESULTS / "curves" / (
        "loss_" + "_".join(tables) + ".png" if len(tables) <= 4 else "loss_curves.png")
    plot_curves(tables, out, title=args.title, logy=not args.linear)
    print(f"{paths.rel(out)}: loss curves of {', '.join(tables)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("curves", help="Caffe logs -> CSV and loss-curve PNG",
                              description="Parse runs/<name>/train.log into runs/<name>/curves.csv "
                                          "and draw the loss curves of all given runs on one plot.")
    p.add_argument("runs", nargs="*", help="run names in runs/ or log files (default: every run)")
    p.add_argument("--out", help="PNG to write (default results/curves/loss_<runs>.png)")
    p.add_argument("--csv-dir", help="write <run>.csv here instead of runs/<name>/curves.csv")
    p.add_argument("--loss", help="name of the net output that is the loss (default: output #0)")
    p.add_argument("--title", help="plot title")
    p.add_argument("--linear", action="store_true", help="linear y axis (default log)")
    p.set_defaults(func=cmd_curves)
