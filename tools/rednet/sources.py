"""What a run is made from, and the run's own copies of its solver and nets.

- :func:`resolve_sources`: a run's :class:`Sources`: a net configuration rendered from
  ``prototxt_templates/`` (a preset, or a net of ``rednet gen --name``; ``rednet.netgen``), or
  the files given (``--solver`` and the nets it names, a hand-written ``gen/<net>/``), and the
  HDF5 list files, building the patch database when it is missing; nothing in gen/ or
  solvers/ is written; :func:`seed_from_model` for FROM_MODEL;
- :func:`config_of`: what must be equal for two sessions to be one run (compared on resume);
  :func:`unrectified_sums` tells a run made with the old skip wiring;
- :func:`run_copies`: the run's solver and nets with the run's values (its schedules, snapshot
  prefix, iterations and intervals): *rendered* from the templates for a configuration, the
  given files' fields set for files (there is no template to render those from).

A solver file names its nets by path: ``train_net`` and at most one ``test_net`` (the form of
the repository's solvers).  The one-net form (``net:`` with phase rules) and inline nets are refused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .caffeio import hdf5_layers, parse_prototxt, pb, read_prototxt, to_text
from .datasets import sha256_file
from .errors import UserError
from .snapshots import Seed

#: the templates a configuration's run files are rendered from (recorded in run.json)
TEMPLATES = {"solver": "prototxt_templates/solver.prototxt.j2", "train_net": "prototxt_templates/train.prototxt.j2",
             "test_net": "prototxt_templates/train.prototxt.j2", "deploy": "prototxt_templates/deploy.prototxt.j2"}


@dataclass
class Sources:
    """What a run is made from: ``cfg`` (a net configuration, rendered from the templates), or
    the files ``solver``/``train_net``/``test_net`` (given, or a hand-written gen/<net>/);
    ``deploy`` a deploy net file (given, or a hand-written net's); the data list files."""
    net: str
    task: str
    train_list: Path
    val_list: Path | None
    cfg: object | None = None                 # rednet.netgen.NetConfig
    solver: Path | None = None
    train_net: Path | None = None
    test_net: Path | None = None
    deploy: Path | None = None
    recipe: object | None = None              # rednet.recipes.Recipe (resolved) for a rendered solver

    @property
    def rendered(self) -> bool:
        return self.cfg is not None

    def texts(self) -> tuple[str, str, str | None]:
        """(solver, training net, validation net or None) as the repository holds them: the
        templates' rendering with the defaults of solvers/ and gen/, or the files' text."""
        if self.rendered:
            from . import netgen
            return (netgen.render_solver(self.cfg, self.task, recipe=self.recipe),
                    netgen.render_train(self.cfg, self.task, "train", **self.train_fields()),
                    netgen.render_train(self.cfg, self.task, "test"))
        return (self.solver.read_text(), self.train_net.read_text(),
                self.test_net.read_text() if self.test_net else None)

    def train_fields(self) -> dict:
        """What a rendered run's training net takes from its recipe: the batch (``BATCH=``),
        the weights' filler (``INIT=``) and the biases' lr_mult (``BIAS_LR=``); else the defaults."""
        if self.recipe is None:
            return {}
        return {"batch": self.recipe.batch, "init": self.recipe.init, "bias_lr": self.recipe.bias_lr}

    def parsed(self):
        """:meth:`texts` as protobuf messages (SolverParameter, NetParameter, NetParameter or None)."""
        sol, tr, te = self.texts()
        where = self.described()
        return (parse_prototxt(sol, "SolverParameter", where["solver"]),
                parse_prototxt(tr, "NetParameter", where["train_net"]),
                parse_prototxt(te, "NetParameter", where["test_net"]) if te is not None else None)

    def deploy_text(self) -> str | None:
        """The deploy net: the file given (or the hand-written net's), else the rendering."""
        if self.deploy is not None:
            return self.deploy.read_text()
        if self.rendered:
            from . import netgen
            return netgen.render_deploy(self.cfg)
        return None

    def described(self) -> dict:
        """What run.json records as the run's sources: the files, or the templates (and the
        configuration's parameters)."""
        if self.rendered:
            out = dict(TEMPLATES, parameters=self.cfg.params())
            if self.deploy is not None:
                out["deploy"] = paths.rel(self.deploy)
            return out
        return {"solver": paths.rel(self.solver), "train_net": paths.rel(self.train_net),
                "test_net": paths.rel(self.test_net) if self.test_net else None,
                "deploy": paths.rel(self.deploy) if self.deploy else None}


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
    """The sources of a run (see :class:`Sources`); builds the database when it is missing.
    Writes nothing in gen/ or solvers/ (a rendered net whose files there drifted is refused)."""
    from . import netgen
    cfg, solver_path, net_deploy = None, None, None
    if solver:
        solver_path = _abs(solver)
        if not solver_path.is_file():
            raise UserError(f"--solver {solver}: file not found")
    else:
        # a preset, or a net in gen/<net>/ (UserError for an unknown NET or drifted files)
        ns = netgen.resolve_net(net, task)
        cfg, solver_path, net_deploy = ns.cfg, ns.solver, ns.deploy
    dep = _abs(deploy) if deploy else net_deploy
    if deploy and not dep.is_file():
        raise UserError(f"--deploy {deploy}: file not found")
    if cfg is not None:
        train_net = test_net = None
        src_train, src_val = _abs(netgen.db_source(task, "train")), _abs(netgen.db_source(task, "test"))
    else:
        sol = read_prototxt(solver_path, "SolverParameter")
        train_net, test_net = _solver_nets(sol, solver_path)
        for p in (train_net, test_net):
            if p is not None and not p.is_file():
                raise UserError(f"{paths.rel(solver_path)}: net {paths.rel(p)} not found")
        src_train = _hdf5_source(train_net, "train" if test_net is None else None)
        src_val = _hdf5_source(test_net) if test_net is not None else None
    train_list = _abs(data) if data else src_train
    val_list = _abs(val) if val else src_val
    if not train_list.is_file() and not data:
        build_database(task, train_list, build)
    if not train_list.is_file():
        raise UserError(f"{paths.rel(train_list)}: training database not found"
                        + ("" if data else f" and not buildable (try: make data TASK=... for {task})"))
    if val_list is not None and not val_list.is_file():
        raise UserError(f"{paths.rel(val_list)}: validation list not found (rebuild the database: make data ...)")
    return Sources(net, task, train_list, val_list, cfg, solver_path, train_net, test_net, dep)


def build_database(task: str, train_list: Path, build: bool = True) -> None:
    """Build the missing patch database of ``task`` with rednet.patches, after saying what it
    will be (patches, bytes, free space); with ``build`` False refuse, naming the same."""
    from . import patches
    want = paths.DB / task / "train.txt"
    if train_list.resolve() != want.resolve():
        raise UserError(f"{paths.rel(train_list)}: database missing (only data/db/<task>/ databases are built automatically)")
    try:
        info = patches.preview(task, quiet=True)
    except UserError as e:
        raise UserError(f"{paths.rel(train_list)}: database missing and cannot be built: {e}") from None
    what = (f"{info['train']['patches']:,} training patches from {info['train']['images']} images, "
            f"{patches.fmt_bytes(info['bytes'])} on a disk with {patches.fmt_bytes(info['free_bytes'])} free")
    make = f"make data TASK={task}"
    if not build:
        raise UserError(f"{paths.rel(train_list)}: training database not found; `{make}` builds it ({what}), "
                        f"or drop NO_BUILD=1 (--no-build) to let training build it first")
    print(f"{paths.rel(want.parent)}: no database yet; building it first ({what}; `{make} PREVIEW=1` counts "
          f"without building, NO_BUILD=1 refuses instead) ...", flush=True)
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
        raise UserError(f"FROM_MODEL={folder}: expected a zoo model folder (models/<name>/ or checkpoints/<name>/) with a {zoo.CARD}")
    from .models import mixed_task
    from .tasks import get_task
    card = zoo.verify(folder)
    fine_tune = card["task"] == mixed_task(get_task(task).kind) != task      # a level from the mixed model
    if card["net"] != net or (card["task"] != task and not fine_tune):
        raise UserError(f"FROM_MODEL={folder}: trained as {card['net']} {card['task']}, not {net} {task} "
                        f"(or {net} {mixed_task(get_task(task).kind)}, to fine-tune from)")
    if fine_tune:
        print(f"fine-tuning {net} {task} from {paths.rel(folder)} ({card['task']}, {int(card['iterations']):,} "
              f"iterations)")
    st = card.get("solverstate") if not fine_tune else None   # a checkpoint goes on as the same run
    return Seed(folder / card["caffemodel"], int(card["iterations"]), card["sha1"], paths.rel(folder),
                state=folder / st["file"] if st else None, state_sha1=st["sha1"] if st else None)


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
    """What must be equal for two sessions to be one run (compared on resume): the source's
    solver and nets (:meth:`Sources.parsed`; paths, iterations and intervals left out) and
    the data lists.  For a rendered net these are the texts of solvers/ and gen/, so a run
    made when those files were its source resumes."""
    return {
        "net": src.net, "task": src.task,
        "solver_sha256": sha256_bytes(_normalized_solver(sol).encode()),
        "train_net_sha256": sha256_bytes(_normalized_net(train_net).encode()),
        "test_net_sha256": sha256_bytes(_normalized_net(test_net).encode()) if test_net is not None else None,
        "train_list_sha256": sha256_file(src.train_list),
        "val_list_sha256": sha256_file(src.val_list) if src.val_list else None,
        "train_db_sha256": db_fingerprint(src.train_list),
        "val_db_sha256": db_fingerprint(src.val_list) if src.val_list else None,
    }


#: keys of :func:`config_of` that runs made before them do not have (recorded when such a run
#: resumes, not compared: nothing says what its database was)
LATER_KEYS = ("train_db_sha256", "val_db_sha256")


def db_fingerprint(list_file: Path) -> str:
    """What the database behind ``list_file`` holds, as one sha256: a database built by
    ``rednet data`` is described by its ``config.json`` (its configuration, seed, code and
    manifest digests: a rebuild with another seed or code changes it); a list of other HDF5
    files by the bytes of every file it names."""
    cfg = Path(list_file).parent / "config.json"
    if cfg.is_file():
        return "config.json:" + sha256_file(cfg)
    h = hashlib.sha256()
    for line in Path(list_file).read_text().splitlines():
        if line.strip():
            shard = _abs(line.strip())
            h.update(line.strip().encode() + b"\0")
            h.update(sha256_file(shard).encode() if shard.is_file() else b"missing")
    return "shards:" + h.hexdigest()


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
@dataclass
class RunValues:
    """A run's own values in its solver and nets."""
    name: str                     # the run (for the files' header)
    train_schedule: str           # the list files the nets read (relative to the repository root)
    val_schedule: str
    train_net: str                # where the run's nets are (what its solver names)
    test_net: str
    snapshot_prefix: str
    max_iter: int
    snapshot: int
    display: int
    mode: str | None = None       # CPU, GPU, or None: the source's
    test_iter: int | None = None  # validation batches per test (None: the source's)
    test_interval: int | None = None  # iterations between tests (None: the source's)


@dataclass
class RunCopies:
    """The texts of a run's solver and nets; ``shuffled``: the source net shuffles its data
    (the run's schedule then shuffles instead, Caffe's shuffle is off)."""
    solver: str
    train_net: str
    test_net: str | None
    deploy: str | None
    shuffled: bool


def run_copies(src: Sources, v: RunValues) -> RunCopies:
    """The run's solver and nets: rendered from the templates with ``v`` for a configuration
    (no parsing back), or the given files with ``v``'s fields set."""
    if src.rendered:
        from . import netgen
        by = f"`bin/python -m rednet train` for the run {v.name}"
        sol = netgen.render_solver(src.cfg, src.task, train_net=v.train_net, test_net=v.test_net,
                                   snapshot_prefix=v.snapshot_prefix, max_iter=v.max_iter, snapshot=v.snapshot,
                                   display=v.display, solver_mode=v.mode or "CPU", by=by, recipe=src.recipe,
                                   **({"test_iter": v.test_iter} if v.test_iter else {}),
                                   **({"test_interval": v.test_interval} if v.test_interval else {}))
        tr, te = (netgen.render_train(src.cfg, src.task, phase, source=s, shuffle=False, by=by,
                                         **(src.train_fields() if phase == "train" else {}))
                  for phase, s in (("train", v.train_schedule), ("test", v.val_schedule)))
        return RunCopies(sol, tr, te, src.deploy_text(), True)
    sol, train_net, test_net = src.parsed()
    shuffled = _point_at_schedules(train_net, test_net, v)
    _set_solver(sol, v, test_net is not None)
    return RunCopies(header("solver", src.solver) + to_text(sol),
                     header("training net", src.train_net) + to_text(train_net),
                     header("validation net", src.test_net) + to_text(test_net) if test_net is not None else None,
                     src.deploy_text(), shuffled)


def _point_at_schedules(train_net, test_net, v: RunValues) -> bool:
    """Point the HDF5Data layers of given nets at the run's schedules, shuffle off (the
    schedule shuffles); True when the source shuffled."""
    caffe_pb2, _ = pb()
    shuffled = False
    for net, which in ((train_net, None), (test_net, "val")):
        if net is None:
            continue
        for l in hdf5_layers(net):
            phase_test = any(r.phase == caffe_pb2.TEST for r in l.include)
            kind = "val" if (which == "val" or phase_test) else "train"
            shuffled |= l.hdf5_data_param.shuffle and kind == "train"
            l.hdf5_data_param.source = v.val_schedule if kind == "val" else v.train_schedule
            l.hdf5_data_param.shuffle = False
    return shuffled


def _set_solver(sol, v: RunValues, has_test: bool) -> None:
    """A given solver file with the run's nets, snapshot prefix, iterations, intervals and
    validation batches per test."""
    sol.ClearField("test_net")
    sol.train_net = v.train_net
    if has_test:
        sol.test_net.append(v.test_net)
    sol.snapshot_prefix = v.snapshot_prefix
    sol.max_iter = v.max_iter
    sol.snapshot = v.snapshot
    sol.display = v.display
    if v.mode:
        sol.solver_mode = sol.GPU if v.mode == "GPU" else sol.CPU
    if has_test and v.test_interval:
        sol.test_interval = v.test_interval
    if has_test and v.test_iter:
        del sol.test_iter[:]
        sol.test_iter.append(v.test_iter)


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
            f"# (data source, snapshot prefix and paths set for this run folder).\n")
