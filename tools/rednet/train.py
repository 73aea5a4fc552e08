"""Train a RED-Net with the stock caffe binary: ``bin/python -m rednet train`` (``make train``).

This module is the orchestration and the command line; beside it, one job each:

- :mod:`rednet.sources`: what a run is made from (solver, nets, deploy net, data lists; the
  nets and the database are made when missing) and the run's own copies of the nets;
- :mod:`rednet.runrecord`: the run folder ``runs/<name>/`` (its layout) and ``run.json``;
- :mod:`rednet.schedule`: the data schedule (the order Caffe reads the database in);
- :mod:`rednet.snapshots`: validating, quarantining and pruning snapshots, the disk check;
- :mod:`rednet.supervisor`: running ``bin/caffe train``, following its log, the divergence guard;
- :mod:`rednet.caffeio` and :mod:`rednet.provenance`: protobuf files; versions and CPU.

What the command does: resolve what the run is made from (a net configuration rendered from
the templates, or the files given; nothing in gen/ or solvers/ is written), make the patch
database if missing (``rednet.patches.build_db``), write the run folder, then run
``bin/caffe train -solver runs/<name>/solver.prototxt [-snapshot ...]`` from the repository
root, copying its log to ``train.log`` and showing iteration, loss and it/s.

Resuming.  When the run folder exists (or with ``--resume``) training restarts from the
newest *valid* ``.solverstate`` (the others are moved to ``quarantine/``).  For the resumed
run to give *the same weights* as an uninterrupted one the data order continues where it
stopped: the training net reads the database through a schedule (``data/train_schedule.txt``),
rewritten on resume to start at sample ``iter x batch``; the validation net reads the same
patches at every test (``data/val_schedule.txt``: the whole batches of the validation
database, from its first patch).  See docs/training.md.

Divergence guard: a loss that is NaN/inf or more than ``--diverge-factor`` times the
smallest loss seen stops Caffe at once (SIGKILL: no snapshot of the bad weights); snapshots
taken after the last good loss go to ``quarantine/``.  Ctrl-C (or SIGTERM to this
process) asks Caffe to stop the way Caffe does it (``-sigint_effect stop``: snapshot, exit).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import math
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import moments, paths, recipes
from .caffeio import hdf5_layers, param_shapes, parse_prototxt, to_text
from .errors import UserError, atomic_write_text
from .provenance import caffe_version, cpu_model, project_version
from .runrecord import SCHEMA, RunLayout, RunRecord, check_run_name, now
from .schedule import read_list, write_pass, write_schedule
from .snapshots import (DISK_RESERVE, Seed, check_disk, check_snapshot, disk_need, newest_valid_snapshot,
                        quarantine, read_history, seed_snapshot, snapshot_files, trained_to)
from .sources import (LATER_KEYS, RunValues, Sources, batch_of, config_of, old_skip_wiring, resolve_sources,
                      run_copies, seed_from_model)
from .supervisor import DEFAULT_DIVERGE_FACTOR, Guard, run_caffe
from .tasks import get_task, task_from_words

class TrainError(UserError):
    """Training stopped for a reason the user must act on (one line, exit status 2)."""


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
    test_interval: int | None = None  # iterations between validation passes (None: the run's, else the solver's)
    env: dict | None = None           # caffe's environment (None: this process's)
    seed: Seed | None = None          # start a new run from committed weights (FROM_MODEL)
    moment_batches: int = moments.BATCHES   # ... with Adam's moments estimated from this many batches


def prepare(plan: RunPlan, resume: bool | None = None, log=print) -> tuple[dict, int, Path | None]:
    """Write or check the run folder; return (run record, start iteration, solverstate or None).

    ``resume``: None = resume when the folder exists; True = it must exist; False = it must not.
    A new run folder is removed again when preparing it fails (nothing half-made is left).
    """
    rec, start, state = prepare_record(plan, resume, log)
    return rec.to_dict(), start, state


def prepare_record(plan: RunPlan, resume: bool | None = None, log=print) -> tuple[RunRecord, int, Path | None]:
    """:func:`prepare`, returning the :class:`RunRecord`."""
    run = RunLayout(plan.dir)
    fresh = not run.is_run() and run.is_empty()
    try:
        return _prepare(plan, resume, log)
    except BaseException:
        if fresh and run.dir.is_dir() and not run.is_run():
            shutil.rmtree(run.dir, ignore_errors=True)
        raise


def _check_folder(plan: RunPlan, config: dict, train_net, resume: bool | None) -> RunRecord | None:
    """The existing record of the run folder (None for a new run), after checking that this
    session may use the folder: a run folder, made by the same configuration."""
    run = RunLayout(plan.dir)
    exists = run.is_run()
    fresh_hint = f"start fresh with RUN=<another name> (--run), or remove {paths.rel(run.dir)}/ to discard it"
    if run.dir.exists() and not exists and not run.is_empty():
        raise UserError(f"{paths.rel(run.dir)}: exists but is not a rednet run (no run.json); {fresh_hint}")
    if resume is True and not exists:
        raise UserError(f"{paths.rel(run.dir)}: no run to resume (RESUME=1); drop RESUME to start it")
    if resume is False and exists:
        raise UserError(f"{paths.rel(run.dir)}: run exists; {fresh_hint}")
    if not exists:
        return None
    record = RunRecord.load(run.dir)
    old = record.config or {}
    diff = [k for k in config if old.get(k) != config[k] and not (k in LATER_KEYS and k not in old)]
    if "train_net_sha256" in diff and old_skip_wiring(run.train_net, train_net):
        raise UserError(f"{paths.rel(run.dir)}: made with the old skip wiring ReLU(d + c); the nets now "
                        f"follow the released net, c + ReLU(d) (docs/nets.md), and its snapshots "
                        f"cannot be resumed; {fresh_hint}")
    changed_db = [k for k in ("train_db_sha256", "val_db_sha256") if k in diff]
    if changed_db and set(diff) <= set(LATER_KEYS):          # the same lists, other patches behind them
        kind = changed_db[0].split("_")[0]
        lst = (record.data.get(kind) or {}).get("list") or f"the {kind} list"
        raise UserError(f"{paths.rel(run.dir)}: the database of {lst} holds other patches than when the run "
                        f"began (rebuilt with another seed, setting or code: {changed_db[0]} differs); "
                        f"rebuild it as it was, or {fresh_hint}")
    if diff:
        what = ", ".join(f"{k} ({old.get(k)!s:.12} vs {config[k]!s:.12})" for k in diff)
        raise UserError(f"{paths.rel(run.dir)}: made by a different configuration ({what}); "
                        f"refusing to mix runs; {fresh_hint}")
    return record


def _run_values(sol, plan: RunPlan, record: RunRecord | None, val: ValPass | None) -> RunValues:
    """The run's own values for its solver and nets: its folder's paths, iterations, the
    snapshot and display intervals (given now, else the run's, else the source solver's) and
    the validation batches per test (a whole pass over the validation database)."""
    run, src = RunLayout(plan.dir), plan.src
    snapshot = plan.snapshot_every or (record.snapshot_every if record is not None else None) or sol.snapshot
    display = plan.display or (record.display if record is not None and record.display is not None
                               else sol.display)
    test_interval = plan.test_interval or (record.test_interval if record is not None else None) or None
    where = src.described()["solver"]
    if sol.snapshot_format != sol.BINARYPROTO:
        raise UserError(f"{where}: snapshot_format HDF5 is not supported; use BINARYPROTO")
    if not snapshot:
        raise UserError(f"{where}: snapshot is 0; a resumable run needs snapshots (--snapshot-every)")
    return RunValues(plan.name, paths.rel(run.schedule("train")), paths.rel(run.schedule("val")),
                     paths.rel(run.train_net), paths.rel(run.test_net),
                     paths.rel(run.snapshot_prefix(src.net, src.task)), plan.max_iter, int(snapshot),
                     int(display), plan.mode, val.test_iter if val is not None else None, test_interval)


@dataclass
class ValPass:
    """What every test of a run reads: the validation database's first ``test_iter`` x
    ``batch`` rows (all its whole batches; the last ``rows mod batch`` are left out), from its
    first row each time, so that the points of the validation curve compare."""
    shards: list
    batch: int
    tops: tuple
    test_iter: int

    @property
    def rows(self) -> int:
        return self.test_iter * self.batch


def _val_pass(src, sol, test_net) -> ValPass | None:
    """The run's validation pass (None without a test phase), from the source's test net."""
    if test_net is None or src.val_list is None or not sol.test_interval:
        return None
    vb, tops = batch_of(test_net, "val")
    shards = read_list(src.val_list, tops[0])
    n = sum(s.rows for s in shards)
    if n < vb:
        raise UserError(f"{paths.rel(src.val_list)}: {n} validation pairs, fewer than one test batch; "
                        f"expected at least {vb} (the test net's batch size)")
    return ValPass(shards, vb, tops, n // vb)


@dataclass
class TrainFeed:
    """What the training net reads: the database's shards, the HDF5 datasets, the batch and
    the samples per iteration (batch x iter_size)."""
    shards: list
    tops: tuple
    batch: int
    per_iter: int


def _train_feed(src, run_sol, train_net) -> TrainFeed:
    tb, tops = batch_of(train_net, "train")
    return TrainFeed(read_list(src.train_list, tops[0]), tops, tb, tb * max(1, run_sol.iter_size))


def _schedules(plan: RunPlan, feed: TrainFeed, val: ValPass | None, start: int, seed: int | None) -> dict:
    """Write the train schedule for a session starting at ``start`` and the validation pass;
    return what the session records of them."""
    run = RunLayout(plan.dir)
    sched = {"train": write_schedule(run.schedule("train"), feed.shards, start * feed.per_iter,
                                     (plan.max_iter + 1) * feed.per_iter, seed, run.head("train"), feed.tops)}
    if val is not None:
        sched["val"] = write_pass(run.schedule("val"), val.shards, val.rows, run.head("val"), val.tops)
    return sched


def _restart_moments(plan: RunPlan, run_sol, train_net, feed: TrainFeed, seed: int | None, log) -> dict:
    """The solver history of a run started from committed weights at iteration N (``history``:
    the blobs, None for zero) and how it was made (``state``, for the run record).  A
    checkpoint's own solver state (committed with its weights) is taken as it is: the run goes
    on exactly as if it had never stopped.  Otherwise Adam's moments are estimated from the
    ``plan.moment_batches`` training batches before N in the run's schedule (rednet.moments);
    other solvers, or 0 batches, restart from zero."""
    n, k = plan.seed.iteration, min(plan.moment_batches, plan.seed.iteration)
    if plan.seed.state is not None and k > 0:
        history = read_history(plan.seed.state, n, plan.seed.source)
        return {"history": history,
                "state": f"the solver state committed with the weights ({paths.rel(plan.seed.state)}, sha1 "
                         f"{plan.seed.state_sha1}): the run's own history at iteration {n}"}
    if run_sol.type != "Adam" or k <= 0:
        return {"history": None, "state": "reset (history zero)"}
    log(f"estimating Adam's moments from the {k} training batches before iteration {n} (weights held)")
    with tempfile.TemporaryDirectory(prefix="rednet-moments-") as tmp:
        lst, net = Path(tmp) / "schedule.txt", Path(tmp) / "train.prototxt"
        write_schedule(lst, feed.shards, (n - k) * feed.per_iter, n * feed.per_iter, seed, Path(tmp) / "head.h5",
                       feed.tops)
        msg = type(train_net)()
        msg.CopyFrom(train_net)
        for layer in hdf5_layers(msg):
            layer.hdf5_data_param.source = str(lst)
        net.write_text(to_text(msg))
        history = moments.estimate(net, plan.seed.weights, k, max(1, run_sol.iter_size),
                                   run_sol.momentum, run_sol.momentum2)
    return {"history": history,
            "state": f"Adam's moments estimated from the gradients of the {k} training batches before "
                     f"iteration {n}, weights held (rednet.moments)"}


def _prepare(plan: RunPlan, resume: bool | None, log) -> tuple[RunRecord, int, Path | None]:
    src, run = plan.src, RunLayout(plan.dir)
    sol, source_train, source_test = src.parsed()
    config = config_of(src, sol, source_train, source_test)
    record = _check_folder(plan, config, source_train, resume)
    exists = record is not None
    val = _val_pass(src, sol, source_test)

    # the run's copies of solver and nets
    copies = run_copies(src, _run_values(sol, plan, record, val))
    run_sol = parse_prototxt(copies.solver, "SolverParameter", paths.rel(run.solver))
    train_net = parse_prototxt(copies.train_net, "NetParameter", paths.rel(run.train_net))
    seed = plan.shuffle_seed
    if seed is None and copies.shuffled:
        seed = int(sol.random_seed) if sol.random_seed >= 0 else 0

    if copies.deploy is None and not run.deploy.is_file():
        raise UserError(f"{paths.rel(run.dir)}: no deploy net (give --deploy)")
    if copies.deploy is not None:
        with tempfile.TemporaryDirectory() as tmp:      # its shapes, before anything is written
            (Path(tmp) / "deploy.prototxt").write_text(copies.deploy)
            shapes = param_shapes(Path(tmp) / "deploy.prototxt")
    else:
        shapes = param_shapes(run.deploy)
    n_params = sum(math.prod(s) for _, ss in shapes for s in ss)
    history = 2 if run_sol.type in ("Adam",) else 1
    start0 = 0
    if exists:
        start0 = max((it for it, pr in snapshot_files(run.snapshots).items() if "state" in pr), default=0)
    check_disk(run.dir, n_params, history, max(0, plan.max_iter - start0) // max(1, run_sol.snapshot) + 1)
    feed = _train_feed(src, run_sol, train_net)
    restart = None
    if plan.seed is not None and not exists:          # before anything is written: may take minutes
        restart = _restart_moments(plan, run_sol, train_net, feed, seed, log)

    run.snapshots.mkdir(parents=True, exist_ok=True)
    run.data.mkdir(exist_ok=True)
    atomic_write_text(run.train_net, copies.train_net)
    if copies.test_net is not None:
        atomic_write_text(run.test_net, copies.test_net)
    atomic_write_text(run.solver, copies.solver)
    if copies.deploy is not None:
        atomic_write_text(run.deploy, copies.deploy)

    # where to start
    start, state = 0, None
    if plan.seed is not None and not exists:
        seed_snapshot(run_sol.snapshot_prefix, plan.seed, shapes, history, restart["history"],
                      steps=[int(v) for v in run_sol.stepvalue] if run_sol.lr_policy == "multistep" else ())
    if exists or plan.seed is not None:
        found = newest_valid_snapshot(run.snapshots, run.quarantine, shapes, log=log)
        if found:
            start, state = found
    # drop snapshots newer than the start (a session killed before its next snapshot
    # completes cannot have any; but be safe: never let Caffe overwrite something silently)
    later = [p for it, pair in snapshot_files(run.snapshots).items() if it > start for p in pair.values()]
    if later:
        quarantine(run.quarantine, later, f"newer than the resumable snapshot at iteration {start}")

    sched = _schedules(plan, feed, val, start, seed)

    caffe = paths.caffe_bin()
    rec = record if record is not None else RunRecord(run.dir, created=now())
    rec.schema = SCHEMA
    rec.name = plan.name
    rec.net, rec.task = src.net, src.task
    rec.config = config
    rec.max_iter = plan.max_iter
    rec.snapshot_every = int(run_sol.snapshot)
    rec.display = int(run_sol.display)
    rec.test_interval = int(run_sol.test_interval) if run_sol.test_interval else None
    rec.batch_size = feed.batch
    rec.iter_size = max(1, run_sol.iter_size)
    rec.solver_type = run_sol.type
    rec.recipe = src.recipe.to_dict() if src.recipe is not None else _file_recipe(run_sol)
    rec.random_seed = int(run_sol.random_seed)
    rec.sources = src.described()
    rec.data = {
        "train": {"list": paths.rel(src.train_list), "list_sha256": config["train_list_sha256"],
                  "shards": len(feed.shards), "patches": sum(s.rows for s in feed.shards),
                  "bytes": sum(s.size for s in feed.shards)},
        "val": ({"list": paths.rel(src.val_list), "list_sha256": config["val_list_sha256"],
                 "shards": len(val.shards), "patches": sum(s.rows for s in val.shards),
                 "per_test": val.rows, "test_iter": val.test_iter,
                 "order": "every test reads the same patches, from the first (docs/training.md)"}
                if val is not None else None),
        "order": ("schedule: shards reshuffled every epoch with numpy default_rng([seed, epoch]), "
                  "rows in database order; Caffe's HDF5 shuffle off" if seed is not None
                  else "schedule: shards and rows in list order (the source net does not shuffle)"),
        "shuffle_seed": seed,
    }
    rec.parameters = n_params
    rec.caffe = {"binary": paths.rel(caffe), "version": caffe_version(caffe), "build": paths.caffe_build(),
                 "origin": paths.caffe_origin()}
    rec.project = project_version()
    rec.status = "prepared"
    env = plan.env if plan.env is not None else os.environ
    rec.begin_session(start_iter=start, max_iter=plan.max_iter,
                      mode="GPU" if run_sol.solver_mode == run_sol.GPU else "CPU",
                      schedule=sched, caffe_version=rec.caffe["version"], caffe_build=rec.caffe["build"],
                      caffe_origin=rec.caffe["origin"],
                      cpu=cpu_model(),
                      restart=({"from": plan.seed.source, "weights_sha1": plan.seed.sha1,
                                "iteration": plan.seed.iteration, "optimizer_state": restart["state"]}
                               if restart is not None else None),
                      # bitwise resumption needs the same BLAS threading in every session
                      env={k: env[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "OPENBLAS_CORETYPE") if k in env})
    rec.save()
    return rec, start, state


def _file_recipe(sol) -> dict:
    """What a given solver file's own learning-rate fields are (the record's ``recipe``)."""
    d = {"name": "solver file", "base_lr": float(sol.base_lr), "lr_policy": sol.lr_policy}
    if sol.lr_policy == "multistep":
        d["steps"], d["gamma"] = [int(v) for v in sol.stepvalue], float(sol.gamma)
    elif sol.lr_policy != "fixed":
        d["gamma"] = float(sol.gamma)
    return d


def _already_trained(layout: RunLayout, iters: int) -> int | None:
    """The iteration of a complete snapshot pair at or beyond ``iters`` in an existing run
    (None: none), checked without writing anything (a no-op leaves the run as it is)."""
    deploy = layout.deploy
    if not deploy.is_file():
        return None
    shapes = None
    for it, pair in sorted(snapshot_files(layout.snapshots).items(), reverse=True):
        if it < iters or "state" not in pair:
            continue
        shapes = shapes if shapes is not None else param_shapes(deploy)
        if check_snapshot(pair["state"], pair.get("model"), it, shapes) is None:
            return it
    return None


@dataclass
class TrainFiles:
    """Files to train from instead of the repository's (``--solver``, ``--data``, ``--val``,
    ``--deploy``): any solver and the nets it names, any HDF5 list files, a deploy net."""
    solver: str | None = None
    data: str | None = None
    val: str | None = None
    deploy: str | None = None

    def given(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in dataclasses.asdict(self).items() if v]


@dataclass
class SessionOptions:
    """How this session runs (the command line's other options)."""
    snapshot_every: int | None = None     # snapshot interval (default: the run's, else the solver's)
    display: int | None = None            # loss display interval (likewise)
    mode: str | None = None               # CPU or GPU (default: the solver's)
    time_limit: float | None = None       # seconds; then stop with a snapshot (resumable)
    diverge_factor: float = DEFAULT_DIVERGE_FACTOR
    progress: bool = True                 # a progress bar
    shuffle_seed: int | None = None       # seed of the epoch-wise shard order (default: the solver's)
    blas_core: str | None = None          # OPENBLAS_CORETYPE for caffe; "auto": OpenBLAS detects the CPU
    moment_batches: int = moments.BATCHES  # FROM_MODEL: batches that estimate Adam's moments (0: zero)
    recipe: "recipes.Recipe | None" = None   # RECIPE= / LR*= (None: the run's own, else the default)
    test_interval: int | None = None      # validation interval (given now, else the run's, else the solver's)


def train(net: str | None, task: str | None, *, iters: int | None = None, run: str | None = None,
          runs_dir: str | Path | None = None, resume: bool | None = None, from_model: str | None = None,
          files: TrainFiles | None = None, options: SessionOptions | None = None, build: bool = True) -> dict:
    """Prepare (or resume) run ``run`` (default ``<net>_<task>``, in ``runs_dir``, default runs/)
    and train it to iteration ``iters``; return the run record (``status`` says how it ended).

    ``resume``: None resumes an existing run folder, True requires one, False refuses one;
    ``from_model``: start a new run from a zoo model's weights; ``build``: build a missing
    database.  Raises :class:`UserError` for bad input and :class:`TrainError` when training
    stops on divergence or a Caffe failure.
    """
    files = files or TrainFiles()
    opts = options or SessionOptions()
    if run is None and (net is None or task is None):
        raise UserError("NET and TASK are needed (or RUN=<name> of an existing run)")
    runs = Path(runs_dir) if runs_dir else paths.RUNS
    if net is None or task is None:
        given = RunLayout(runs / run)
        if not given.is_run():
            raise UserError(f"{paths.rel(given.record)}: not found; give NET and TASK to start run {run}")
        info = RunRecord.load(given.dir)
        net, task = net or info.net, task or info.task
        iters = iters or info.max_iter
    task = get_task(task).name
    name = check_run_name(run or f"{net}_{task}")
    layout = RunLayout(runs / name)
    run_dir = layout.dir
    old = RunRecord.load(run_dir) if layout.is_run() else None
    src = resolve_sources(net, task, solver=files.solver, data=files.data, val=files.val, deploy=files.deploy,
                          build=build, progress=opts.progress)
    if iters is None:
        iters = old.max_iter if old else int(src.parsed()[0].max_iter)
    if iters < 1:
        raise UserError(f"ITERS={iters}: expected a positive number of iterations")
    if src.rendered:
        src.recipe = recipes.for_run(opts.recipe, old.recipe if old else None, old is not None, int(iters),
                                     paths.rel(run_dir))
    elif opts.recipe is not None:
        raise UserError(f"{opts.recipe.asked()}: the run's solver is the file {paths.rel(src.solver)}; "
                        f"its own base_lr/lr_policy and its net's batch_size apply (set them there, or drop --solver)")
    env = dict(os.environ)   # caffe's environment, recorded per session
    blas_core = opts.blas_core
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
    if old is not None and from_model is None:
        done_at = _already_trained(layout, int(iters))
        if done_at is not None:
            print(f"{paths.rel(run_dir)}: already trained to iteration {done_at} (ITERS={iters}); nothing to do")
            return dict(old.to_dict(), status="done")          # (the run folder is left as it is)
    plan = RunPlan(name, run_dir, src, int(iters), opts.snapshot_every, opts.display, opts.mode, opts.shuffle_seed,
                   opts.test_interval, env, seed, opts.moment_batches)
    with layout.locked():
        rec, start, state = prepare_record(plan, resume=resume)
        if start >= plan.max_iter:
            print(f"{paths.rel(run_dir)}: already trained to iteration {start} (ITERS={plan.max_iter}); nothing to do")
            rec.sessions.pop()
            rec.status = "done"
            rec.iterations_trained = start
            rec.save()
            return rec.to_dict()
        print(f"{'resuming' if state else 'starting'} {name}: iteration {start} -> {plan.max_iter}, "
              f"log {paths.rel(layout.log)}")
        guard = Guard(factor=opts.diverge_factor)
        rec.status = "running"
        rec.save()
        outcome = "failed"
        try:
            outcome = run_caffe(run_dir, start, state, plan.max_iter, guard=guard, time_limit=opts.time_limit,
                                progress=opts.progress, env=env)
        finally:
            if guard.disk_full() and guard.writing:
                # the file Caffe was writing when the disk filled is cut short: it holds
                # nothing, and its room is what lets run.json be updated
                with contextlib.suppress(OSError):
                    paths.from_root(guard.writing).unlink()
            snaps = snapshot_files(layout.snapshots)
            if outcome == "diverged":
                good = guard.last_good_iter if guard.last_good_iter is not None else start
                bad = [p for it, pr in snaps.items() if it > good for p in pr.values()]
                quarantine(layout.quarantine, bad,
                           f"taken after the last good loss (iteration {good}): {guard.diverged}")
            # only what a complete snapshot holds counts (a full disk leaves a short .caffemodel)
            end_iter = trained_to(layout.snapshots, layout.quarantine, param_shapes(layout.deploy),
                                  None if outcome == "diverged" else start)
            rec.end_session(outcome, end_iter, guard.iteration)
            try:
                rec.save()
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT) or not guard.disk_full():
                    raise
                # run.json keeps the previous record, which never counts more than is held
    info = rec.to_dict()
    again = "resume with: " + resume_command(name, runs_dir, files)
    if outcome == "done":
        print(f"done: {paths.rel(run_dir)} trained to iteration {end_iter}")
    elif outcome == "stopped":
        print(f"stopped at iteration {end_iter} (snapshot saved); {again}")
    elif outcome == "diverged":
        keep = f"last good snapshot: iteration {end_iter}" if end_iter is not None else "no good snapshot"
        raise TrainError(f"{paths.rel(run_dir)}: training diverged ({guard.diverged}); caffe stopped, {keep}, "
                         f"later snapshots in {paths.rel(layout.quarantine)}/; lower base_lr in the solver "
                         f"and start a fresh run")
    else:
        at = f"caffe stopped at iteration {guard.trained if guard.trained is not None else start}"
        held = f"last complete snapshot: iteration {end_iter}"
        pairs = [it for it, pr in snapshot_files(layout.snapshots).items() if len(pr) == 2]
        if end_iter is not None and pairs and max(pairs) < end_iter:   # its solver state was cut short
            held += f" (weights; the run resumes from iteration {max(pairs)})"
        if guard.disk_full():
            where = paths.rel(paths.from_root(guard.writing).parent) if guard.writing else paths.rel(run_dir)
            what = f" writing {Path(guard.writing).name}" if guard.writing else ""
            start_at = max(pairs) if pairs else 0
            need, _ = disk_need(rec.parameters or 0, 2 if rec.solver_type == "Adam" else 1,
                                max(0, plan.max_iter - start_at) // max(1, rec.snapshot_every or 1) + 1)
            raise TrainError(f"disk full at {where}{what}: {at}, {held}; free space on that disk (resuming needs "
                             f"about {need / 2**20:.0f} MiB free, a {DISK_RESERVE >> 20} MiB reserve included), "
                             f"then {again}")
        why = guard.fatal[-1] if guard.fatal else "see the log"
        raise TrainError(f"{at}, {held} ({why}); log: {paths.rel(layout.log)}; {again}")
    return info


def resume_command(name: str, runs_dir: str | Path | None = None, files: TrainFiles | None = None) -> str:
    """The command that resumes run ``name``: ``make train RUN=<name>`` for a run of the
    default runs/ and files, else ``bin/python -m rednet train --run <name>`` with the
    --runs-dir and the solver, data and deploy files the run was started with."""
    given = files.given() if files else []
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
    if args.moment_batches < 0:
        raise UserError(f"MOMENT_BATCHES={args.moment_batches} (--moment-batches): expected 0 or more batches")
    task = task_from_words(args.task, args.sigma, args.scale)
    info = train(args.net, task, iters=args.iters, run=args.run, runs_dir=args.runs_dir,
                 resume=True if args.resume else None, from_model=args.from_model, build=not args.no_build,
                 files=TrainFiles(args.solver, args.data, args.val, args.deploy),
                 options=SessionOptions(args.snapshot_every, args.display, args.mode,
                                        args.time_limit * 60 if args.time_limit else None, args.diverge_factor,
                                        not args.no_progress, args.shuffle_seed, args.blas_core, args.moment_batches,
                                        recipes.select(args.recipe, args.lr, args.lr_steps, args.lr_gamma, args.batch,
                                                       args.init, args.bias_lr, args.clip),
                                        test_interval=args.test_interval))
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
                    "Renders the run's nets and solver from the templates (or takes --solver's); makes a "
                    "missing database first.  An existing run folder is resumed "
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
    p.add_argument("--test-interval", type=_positive_int,
                   help="a validation pass every N iterations (default: the run's, else the solver's, 500)")
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
                   help="start a new run from a zoo model's weights at its iteration (Adam's moments re-estimated)")
    p.add_argument("--moment-batches", type=int, default=moments.BATCHES, metavar="N",
                   help=f"with --from-model: training batches whose gradients estimate Adam's moments "
                        f"(default {moments.BATCHES}; 0: the moments restart from zero)")
    p.add_argument("--recipe", help=f"learning-rate recipe of a new run: {', '.join(recipes.RECIPES)} "
                                    f"(default {recipes.DEFAULT}; docs/recipe.md); a run resumes with its own")
    p.add_argument("--lr", help="base learning rate (changes the recipe into 'custom')")
    p.add_argument("--lr-steps", help="iterations at which the rate is multiplied by --lr-gamma, comma-separated")
    p.add_argument("--lr-gamma", help="factor at each of --lr-steps (default 0.1)")
    p.add_argument("--batch", help="training patches per iteration (default 16; changes the recipe into 'custom')")
    p.add_argument("--init", help="the weights' filler: xavier (default, the authors' net) or msra")
    p.add_argument("--bias-lr", help="the biases' learning-rate multiplier (default 0.1, the authors' net)")
    p.add_argument("--clip", help="clip the gradients' L2 norm to this (Caffe's clip_gradients; default none)")
    p.add_argument("--no-build", action="store_true",
                   help="refuse (naming its size) instead of building a missing database first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
