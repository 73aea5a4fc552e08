"""The model registry: every trained model the project knows, and the one order of preference.

Where models are (see docs/evaluation.md, "Where models come from"):

- the zoo ``models/<name>/`` (:mod:`rednet.zoo`: a card says its net and task);
- the runs ``runs/<name>/`` (:class:`rednet.runrecord.RunRecord`: its newest snapshot and its
  own deploy net);
- any ``.caffemodel`` given by hand (:func:`from_caffemodel`).

When several fit (``restore`` without ``--model``, a column of ``tables``, the demo's
comparison), :func:`pick_model` takes the first by, in this order:

1. the net, in the order asked for (``tables``: a column's nets, e.g. ``--red30-nets``), else
   :data:`NET_PREFERENCE`: ``red30`` (the paper's text: 64 maps), ``red30-official`` (the
   released models' 128 maps), ``red20``, ``red10``, then any other net;
2. the zoo ``models/`` before ``runs/``;
3. the most recently written weights file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import zoo
from .errors import UserError
from .paths import GEN, RUNS, rel
from .runrecord import RunRecord

MODELS = zoo.ZOO
#: preference when several nets have a model for the same task (first wins)
NET_PREFERENCE = ("red30", "red30-official", "red20", "red10")
ZOO_SOURCE = "models/"


@dataclass
class ModelSpec:
    """A deploy net and its weights, and what they were trained for (when known)."""
    deploy: Path
    weights: Path
    net: str | None = None
    task: str | None = None
    source: str = ""           # "run <name>" / "models/" / "file"
    about: str = ""            # how it was trained, for the tables' notes (iterations, recipe)

    def describe(self) -> str:
        if self.net is None and self.task is None:
            return f"{rel(self.weights)} (trained for: unknown)"
        return f"{self.net or '?'} {self.task or '?'} ({rel(self.weights)})"


def from_run(run: Path) -> ModelSpec:
    """The newest snapshot of a run folder ``runs/<name>/`` (run.json, deploy.prototxt, snapshots/)."""
    rec = RunRecord.find(Path(run))
    weights = rec.newest_model()
    if weights is None:
        raise UserError(f"{rel(run)}: run folder has no snapshot (snapshots/*_iter_N.caffemodel) yet")
    deploy = rec.deploy()
    if deploy is None:
        raise UserError(f"{rel(run)}: no deploy.prototxt and no 'net' in run.json")
    return ModelSpec(deploy, weights, rec.net, rec.task, f"run {Path(run).name}",
                     _about(rec.iterations_trained, rec.recipe, None))


def from_zoo(folder: Path) -> ModelSpec:
    """A zoo model ``models/<name>/``: its card, after its weights' sha1 is checked against it
    (:func:`rednet.zoo.checked_card`; a mismatch raises, it is never skipped)."""
    card = zoo.checked_card(folder)
    return ModelSpec(folder / "deploy.prototxt", folder / card["caffemodel"], card["net"], card["task"], ZOO_SOURCE,
                     _about(card.get("iterations"), (card.get("solver") or {}).get("recipe"),
                            (card.get("training") or {}).get("fine_tuned_from"),
                            (card.get("solver") or {}).get("recipes")))


def _about(iterations, recipe: dict | None, parent: dict | None, history: list | None = None) -> str:
    """``10,000 iterations, recipe paper (lr 1e-4 constant)`` (each recipe of its history with
    the iteration it began at), and where it was fine-tuned from."""
    from .recipes import describe_history
    how = describe_history(history, recipe)
    words = [f"{iterations:,} iterations" if isinstance(iterations, int) else "iterations unknown", how]
    if parent:
        words.append(f"fine-tuned from {parent.get('from')} at {parent.get('iteration'):,} iterations")
    return ", ".join(words)


def from_caffemodel(path: Path, deploy: Path | None = None) -> ModelSpec:
    """A ``.caffemodel`` file; its deploy net is ``deploy``, else ``deploy.prototxt`` beside it.
    In a zoo folder ``models/<name>/`` the card says what it was trained for."""
    net = task = None
    source = "file"
    if (path.parent / zoo.CARD).is_file() and zoo.read_card(path.parent)["caffemodel"] == path.name:
        card = zoo.checked_card(path.parent)
        net, task, source = card["net"], card["task"], ZOO_SOURCE
    elif (run := _run_of(path)) is not None:
        net, task = run.net, run.task
    elif (found := zoo.identify(path)) is not None:       # a copy of a zoo model: its card says
        net, task = found[1]["net"], found[1]["task"]
    if deploy is None:
        if (path.parent / "deploy.prototxt").is_file():
            deploy = path.parent / "deploy.prototxt"
        elif net and (GEN / net / "deploy.prototxt").is_file():
            deploy = GEN / net / "deploy.prototxt"
        else:
            raise UserError(f"{path}: no deploy net found: put deploy.prototxt beside it or give --deploy")
    return ModelSpec(Path(deploy), path, net, task, source)


def _run_of(weights: Path) -> RunRecord | None:
    """The run whose snapshot ``weights`` is (``runs/<name>/snapshots/*.caffemodel``), if any."""
    for folder in (weights.parent.parent, weights.parent):
        if (folder / "run.json").is_file():
            try:
                rec = RunRecord.load(folder)
            except UserError:
                return None
            return rec if rec.task else None
    return None


def list_models(task: str | None = None, zoo_only: bool = False, root: Path | None = None) -> list[ModelSpec]:
    """Every model the project knows: the zoo ``models/<name>/`` (or the zoo folders under
    ``root``: checkpoints/, a candidate exported elsewhere) and the newest snapshot of each
    ``runs/<name>/`` (not with ``zoo_only``); only those trained for ``task`` when given.
    Folders that are not readable models are left out."""
    found: list[ModelSpec] = []
    for folder in zoo.folders(root or MODELS):
        try:
            found.append(from_zoo(folder))
        except zoo.ModelIntegrityError:
            raise                  # a damaged zoo model is named, not passed over for another
        except UserError:
            continue
    if not zoo_only and RUNS.is_dir():
        for run in sorted(p for p in RUNS.iterdir() if p.is_dir()):
            try:
                found.append(from_run(run))
            except UserError:
                continue
    if task is not None:
        found = [m for m in found if m.task == task]
    return found


def preference(m: ModelSpec, nets: tuple[str, ...] = NET_PREFERENCE) -> tuple:
    """The sort key of the module's order: net, then models/ before runs/, then newest file."""
    rank = nets.index(m.net) if m.net in nets else len(nets)
    return (rank, 0 if m.source == ZOO_SOURCE else 1, -m.weights.stat().st_mtime)


def pick_model(task: str, net: str | None = None, zoo_only: bool = False,
               nets: tuple[str, ...] | None = None, root: Path | None = None) -> ModelSpec | None:
    """The preferred model for ``task`` (see the module's docstring): of ``net`` when given,
    of one of ``nets`` (in that order) when given; only ``models/`` (or ``root``) with ``zoo_only``."""
    allowed = (net,) if net is not None else (tuple(nets) if nets is not None else None)
    cands = [m for m in list_models(task, zoo_only, root) if allowed is None or m.net in allowed]
    if not cands:
        return None
    return min(cands, key=lambda m: preference(m, allowed or NET_PREFERENCE))


def mixed_task(kind: str) -> str:
    """The task of the single model trained on all levels of ``kind`` (denoise or sr)."""
    return "denoise-mixed" if kind == "denoise" else "sr-mixed"
