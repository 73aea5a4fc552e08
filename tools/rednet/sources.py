"""What a run is made from, and the run's own copies of its nets.

- :func:`resolve_sources`: the solver, the training and validation nets, the deploy net and
  the HDF5 list files of a run (the repository's ``solvers/<net>_<task>.prototxt`` and
  ``gen/<net>/``, made by :mod:`rednet.netgen` when missing, or files given explicitly),
  building the patch database when it is missing; :func:`seed_from_model` for FROM_MODEL;
- :func:`config_of`: what must be equal for two sessions to be one run (compared on resume);
  :func:`unrectified_sums` tells a run made with the old skip wiring;
- :func:`rewrite_nets`, :func:`run_solver`: the run's copies, reading the data through the
  run's schedules, with its snapshot prefix, iterations and intervals.

A solver names its nets by path: ``train_net`` and at most one ``test_net`` (the form of the
repository's solvers).  The one-net form (``net:`` with phase rules) and inline nets are refused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .caffeio import hdf5_layers, pb, read_prototxt, to_text
from .datasets import sha256_file
from .errors import UserError
from .snapshots import Seed


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


_abs = paths.from_root


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _solver_nets(solver, solver_path: Path) -> tuple[Path, Path | None]:
    if solver.HasField("net_param") or solver.HasField("train_net_param") or len(solver.test_net_param):
        raise UserError(f"{paths.rel(solver_path)}: nets given inline; expected train_net/test_net paths")
    if solver.net:
        raise UserError(f"{paths.rel(solver_path)}: one net for both phases (net:); expected train_net and "
                        f"test_net paths, as in solvers/")
    if not solver.train_net:
        raise UserError(f"{paths.rel(solver_path)}: names no train_net")
    if len(solver.test_net) > 1:
        raise UserError(f"{paths.rel(solver_path)}: expected at most one test_net")
    return _abs(solver.train_net), (_abs(solver.test_net[0]) if len(solver.test_net) else None)


def _hdf5_source(net_path: Path, phase: str | None = None) -> Path:
    net = read_prototxt(net_path, "NetParameter")
    caffe_pb2, _ = pb()
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
    val_list = _abs(val) if val else (_hdf5_source(test_net) if test_net is not None else None)
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


def seed_from_model(folder: str | Path, net: str, task: str) -> Seed:
    """The :class:`~rednet.snapshots.Seed` of a zoo model ``models/<name>/`` (its card checked)
    for ``net``/``task``."""
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


# ------------------------------------------------------------------------ the configuration
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


def old_skip_wiring(run_train_net: Path, train_net) -> bool:
    """True when a run folder's own training net sums a skip before the ReLU where the
    current net rectifies first (RED20/RED30 made before the released wiring was followed)."""
    try:
        old = read_prototxt(run_train_net, "NetParameter")
    except UserError:
        return False
    return bool(unrectified_sums(old) - unrectified_sums(train_net))


# ------------------------------------------------------------------------ the run's copies
def rewrite_nets(train_net, test_net, schedule) -> bool:
    """Point the HDF5Data layers at the run's schedules (``schedule(kind)``: the list file of
    ``train`` or ``val``), shuffle off (the schedule shuffles); True when the source shuffled."""
    caffe_pb2, _ = pb()
    shuffled = False
    for net, which in ((train_net, None), (test_net, "val")):
        if net is None:
            continue
        for l in hdf5_layers(net):
            phase_test = any(r.phase == caffe_pb2.TEST for r in l.include)
            kind = "val" if (which == "val" or phase_test) else "train"
            shuffled |= l.hdf5_data_param.shuffle and kind == "train"
            l.hdf5_data_param.source = paths.rel(schedule(kind))
            l.hdf5_data_param.shuffle = False
    return shuffled


def batch_of(net, phase: str) -> tuple[int, tuple[str, ...]]:
    """(batch size, tops) of the HDF5Data layer of ``phase`` (train or val) in ``net``."""
    caffe_pb2, _ = pb()
    for l in hdf5_layers(net):
        test = any(r.phase == caffe_pb2.TEST for r in l.include)
        if (phase == "val") == test or not len(l.include):
            return l.hdf5_data_param.batch_size, tuple(l.top)
    raise UserError(f"net {net.name}: no HDF5Data layer for the {phase} phase")


def header(what: str, source: Path) -> str:
    return (f"# The exact {what} of this run, written by `rednet train` from {paths.rel(source)}\n"
            f"# (data source, snapshot prefix and paths rewritten for this run folder).\n")
