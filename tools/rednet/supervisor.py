"""The caffe supervisor: run ``bin/caffe train`` for a run folder and watch it.

:func:`run_caffe` starts the process (its pid in ``caffe.pid``), follows its log line by line
(:mod:`rednet.logparse`) into ``train.log`` and a progress bar, prunes old solver states as
snapshots arrive, and stops it: Ctrl-C, SIGTERM or the time limit ask Caffe to stop the way
Caffe does it (SIGINT with ``-sigint_effect stop``: snapshot, exit); the divergence guard
(:class:`Guard`: a loss that is NaN/inf or more than ``factor`` times the smallest loss so far)
kills it at once (SIGKILL: no snapshot of the bad weights).
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import logparse, paths
from .errors import atomic_write_text
from .runrecord import RunLayout, now, snapshot_iter
from .snapshots import prune_states

DEFAULT_DIVERGE_FACTOR = 1e3


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

    def disk_full(self) -> bool:
        """True when the run's disk filled up: Caffe could not write a snapshot (its
        ``Check failed: proto.SerializeToOstream``) or train.log could not be written."""
        return self.log_full or any("SerializeToOstream" in f or "No space left" in f for f in self.fatal)


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


def follow(line: str, guard: Guard, bar, snap_dir: Path, proc, log) -> bool:
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
            log.write(f"# rednet train: {now()} stopped caffe: {guard.diverged}\n")
            return True
    elif ev.kind == "snapshot_model":
        guard.writing = ev.path
        it = snapshot_iter(ev.path)
        if it is not None:      # a snapshot at N is taken after N iterations
            guard.trained = max(guard.trained or 0, it)
    elif ev.kind == "snapshot_state":
        guard.writing = ev.path
        guard.snapshots.append(ev.path)
        prune_states(snap_dir, guard.last_good_iter)
        it = snapshot_iter(ev.path)
        if it is not None and it > bar.n:
            bar.update(it - bar.n)
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
    run = RunLayout(Path(run_dir))
    caffe = paths.caffe_bin()
    cmd = [str(caffe), "train", "-solver", paths.rel(run.solver)]
    if state is not None:
        cmd += ["-snapshot", paths.rel(state)]
    e = dict(os.environ if env is None else env)
    e["GLOG_logtostderr"] = "1"
    e.pop("GLOG_minloglevel", None)
    stop_reason = None
    with _Log(run.log) as log:
        log.write(f"# rednet train: {now()} {' '.join(cmd)}\n")
        proc = subprocess.Popen(cmd, cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, env=e)
        atomic_write_text(run.pid, f"{proc.pid}\n")

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
                   desc=run.name, smoothing=0.1, file=sys.stderr)
        try:
            while True:
                try:
                    line = proc.stdout.readline()
                    if not line:
                        break
                    log.write(line)
                    if follow(line, guard, bar, run.snapshots, proc, log):
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
                run.pid.unlink()
        if rc != 0 and not guard.diverged:
            log.write(f"# rednet train: {now()} caffe exited with status {rc}\n")
        guard.log_full = log.full
    if guard.diverged:
        return "diverged"
    if rc == 0 and (guard.stopped or stop_reason):
        return "stopped"
    if rc == 0 and guard.done:
        return "done"
    return "failed"
