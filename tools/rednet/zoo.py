"""The model zoo: trained RED-Nets shipped in ``models/<name>/`` (``bin/python -m rednet zoo``).

One folder per model, in the layout of the Caffe Model Zoo (BVLC ``docs/model_zoo.md``)::

    models/<name>/
      <name>.caffemodel    the weights (a snapshot of a run of `make train`)
      deploy.prototxt      the net they load into (the run's own copy of gen/<net>/deploy.prototxt)
      readme.md            the card: YAML front matter (below), then how to reproduce it
      curves.csv, .png     training loss and validation PSNR against the iteration
      sample.png           one test image: corrupted | restored | clean

This module alone reads and writes the card.  Its front matter holds the Model Zoo's keys
(``name``, ``caffemodel``, ``sha1``, ``caffe_commit``, ``license``, ``gist_id``) and ours:
what was trained (``net``, ``task``), how far (``iterations``, ``batch``, ``patches_seen``),
at what cost (``training``: wall time, CPU models, Caffe build, BLAS kernel, sessions,
restarts), from what (``database``, ``solver`` hashes) and the table cells it fills
(``cells``: ours, the paper's, the difference, ensemble on or off), made by
:func:`card_cells` from the per-cell records of the tables and written by ``rednet
zoo-results`` alone (:mod:`rednet.zooresults`), so the numbers in a card are the numbers of
``docs/results/``, computed once by a complete, default evaluation.

- ``zoo export --run runs/<name>`` copies a run's newest valid snapshot into the zoo with
  its card and pictures (``make zoo-export RUN=...``);
- ``zoo verify`` checks every card against its files (sha1, deploy net, weights' shapes),
  naming every bad one;
- :func:`checked_card` is what every reader of a zoo model uses (the weights' sha1 checked
  once per process); :func:`identify` tells a bare copy of a zoo model by its sha1;
- :func:`card_cells` and :func:`gain_texts` make the cards' cells and the ensemble's gain
  from the tables' records (written by ``rednet zoo-results``).
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from . import paths, recipes
from .datasets import sha256_file
from .errors import UserError, atomic_path, atomic_write_text
from .paths import ROOT, rel
from .tasks import get_task

ZOO = ROOT / "models"
CHECKPOINTS = ROOT / "checkpoints"     # models short of their budget, kept for FROM_MODEL= (not searched by restore or tables)
CARD = "readme.md"
#: the keys every card's front matter has (checked by `zoo verify` and the tests)
CARD_KEYS = ("name", "caffemodel", "sha1", "caffe_commit", "license", "net", "task", "iterations",
             "batch", "patches_seen", "training", "database", "solver", "cells")
#: the BVLC Caffe commit the stock build is made from (the sdist brocolli-caffe 9.0.2)
CAFFE_COMMIT = "9b891540183ddc834a02b2bd81b31afae71b2153"
LICENSE = "BSD-2-Clause (the weights: this project's own training; see readme)"


# --------------------------------------------------------------------------- the card
def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(folder: Path) -> dict:
    """The front matter of ``folder/readme.md`` as a dict (one-line UserError when unreadable)."""
    import yaml
    p = Path(folder) / CARD
    try:
        text = p.read_text()
    except OSError as e:
        raise UserError(f"{rel(p)}: cannot read the model card ({e.strerror})") from None
    parts = text.split("---\n", 2)
    if not text.startswith("---\n") or len(parts) < 3:
        raise UserError(f"{rel(p)}: expected YAML front matter between '---' lines")
    try:
        card = yaml.safe_load(parts[1])
    except yaml.YAMLError as e:
        raise UserError(f"{rel(p)}: front matter is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(card, dict):
        raise UserError(f"{rel(p)}: front matter is not a mapping")
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise UserError(f"{rel(p)}: card lacks {', '.join(missing)}")
    return card


def card_text(card: dict, body: str) -> str:
    """A card file's text: the front matter (YAML) and the body."""
    import yaml
    front = yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100)
    return f"---\n{front}---\n{body}"


def write_card(folder: Path, card: dict, body: str) -> None:
    atomic_write_text(Path(folder) / CARD, card_text(card, body))


def card_body(folder: Path) -> str:
    text = (Path(folder) / CARD).read_text()
    return text.split("---\n", 2)[2]


def folders(root: Path = ZOO) -> list[Path]:
    """Every model folder (one with a card) under ``root``."""
    return sorted(p.parent for p in Path(root).glob(f"*/{CARD}")) if Path(root).is_dir() else []


class ModelIntegrityError(UserError):
    """A zoo model's weights differ from its card (sha1): never used, never skipped silently."""


#: (resolved path, size, mtime) -> sha1 of the weights checked in this process
_CHECKED: dict[tuple, str] = {}


def sha1_cached(path: Path) -> str:
    """The sha1 of ``path``, computed once per process for each (size, mtime) of the file."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = sha1_file(path)
    return _CHECKED[key]


def checked_card(folder: Path) -> dict:
    """The card of zoo folder ``folder`` after checking its weights' sha1 against it (once per
    process while the file is unchanged): what every reader of a zoo model uses."""
    card = read_card(folder)
    weights = Path(folder) / card["caffemodel"]
    if not weights.is_file():
        raise UserError(f"{rel(weights)}: missing (named by {rel(Path(folder) / CARD)})")
    got = sha1_cached(weights)
    if got != card["sha1"]:
        raise ModelIntegrityError(f"{rel(weights)}: sha1 {got} differs from its card's {card['sha1']} "
                                  f"(a damaged or replaced file); restore it with git checkout -- {rel(weights)}")
    return card


def identify(weights: Path, roots: tuple = ()) -> tuple[Path, dict] | None:
    """The zoo folder and card whose weights are byte for byte ``weights`` (by sha1), if any."""
    digest = sha1_cached(weights)
    for root in roots or (ZOO, CHECKPOINTS):
        for folder in folders(root):
            try:
                card = read_card(folder)
            except UserError:
                continue
            if card.get("sha1") == digest:
                return folder, card
    return None


def verify(folder: Path) -> dict:
    """The card of ``folder`` after checking its files: the caffemodel's sha1, the deploy net,
    and every weight blob's shape against the deploy net's (without loading Caffe)."""
    from .caffeio import caffemodel_shapes, param_shapes
    card = read_card(folder)
    weights, deploy = Path(folder) / card["caffemodel"], Path(folder) / "deploy.prototxt"
    for p in (weights, deploy):
        if not p.is_file():
            raise UserError(f"{rel(p)}: missing (named by {rel(Path(folder) / CARD)})")
    got = sha1_cached(weights)
    if got != card["sha1"]:
        raise ModelIntegrityError(f"{rel(weights)}: sha1 {got} differs from the card's {card['sha1']}")
    stored = caffemodel_shapes(weights)
    want = dict(param_shapes(deploy))
    if set(stored) != set(want):
        raise UserError(f"{rel(weights)}: layers {sorted(set(stored) ^ set(want))} do not match {rel(deploy)}")
    st = card.get("solverstate")
    if st:
        state = Path(folder) / st["file"]
        if not state.is_file():
            raise UserError(f"{rel(state)}: missing (named by {rel(Path(folder) / CARD)})")
        got = sha1_cached(state)
        if got != st["sha1"]:
            raise ModelIntegrityError(f"{rel(state)}: sha1 {got} differs from the card's {st['sha1']}")
        if int(st.get("iteration", -1)) != int(card["iterations"]):
            raise UserError(f"{rel(state)}: at iteration {st.get('iteration')}, the weights at {card['iterations']}")
    return card


# --------------------------------------------------------------------------- exporting a run
def _build_label(session: dict) -> str:
    """A session's Caffe build for the card: ``fast (caffe.bin version 1.0.0-rc3)``, with the
    patch set's origin (``...; brocolli-caffe-9.0.2+patches/fast@<sha256>``) where recorded;
    sessions from before the batch-parallel build existed ran the stock one."""
    inside = session.get("caffe_version", "?")
    if session.get("caffe_origin"):
        inside += f"; {session['caffe_origin']}"
    return f"{session.get('caffe_build', 'stock')} ({inside})"


def _sessions_summary(info: dict, iteration: int, snapshot: Path) -> dict:
    """Totals over the sessions that trained the run up to the exported ``iteration``.  A
    session still running (or killed before it could record its end) counts up to the
    exported snapshot's time."""
    import datetime as dt

    def when(text):
        return dt.datetime.fromisoformat(text)
    snap_time = dt.datetime.fromtimestamp(snapshot.stat().st_mtime, dt.timezone.utc)
    used = []
    for s in info.get("sessions", []):
        if s.get("start_iter", 0) >= iteration or "started" not in s:
            continue
        end = s.get("end_iter")
        if end is not None and end <= s.get("start_iter", 0):
            continue
        if end is not None and end <= iteration and s.get("ended"):
            seconds = (when(s["ended"]) - when(s["started"])).total_seconds()
        else:                                  # running, or the exported snapshot lies inside it
            seconds = (snap_time - when(s["started"])).total_seconds()
        used.append((s, max(0.0, seconds)))
    return {"wall_seconds": round(sum(t for _, t in used)), "sessions": len(used),
            "cpus": sorted({s.get("cpu") or "unknown (not recorded)" for s, _ in used}),
            "blas_kernel": sorted({(s.get("env") or {}).get("OPENBLAS_CORETYPE", "auto (OpenBLAS detects the CPU)")
                                   for s, _ in used}),
            "caffe_build": sorted({_build_label(s) for s, _ in used}),
            "restarts": [s["restart"] for s, _ in used if s.get("restart")]}


def _parent_card(restart: dict) -> dict:
    """The card a run's first restart came from (FROM_MODEL=models/<name>), when its weights
    are still those or it is an earlier export of that run (it carries the training before the
    restart: a checkpoint exported again, then the run exported into models/); else an empty
    dict."""
    folder = ROOT / str(restart.get("from", ""))
    if not restart.get("from") or not (folder / CARD).is_file():
        return {}
    try:
        card = read_card(folder)
    except UserError:
        return {}
    carried = ((card.get("training") or {}).get("carried") or {}).get("from_sha1")
    sha1 = restart.get("weights_sha1")
    return card if sha1 and sha1 in (card.get("sha1"), carried) else {}


def _with_earlier_training(summary: dict, old: dict, task: str | None = None) -> dict:
    """Add the training that a restarted run continued from (FROM_MODEL) to its totals.

    A run started from a card's weights records their sha1; when the card being replaced is
    that one, its totals and its restarts are carried; when it is an earlier export of this
    same run, what it carried is carried again (so exporting twice never counts anything
    twice). ``restarts`` lists every restart of the model's history, oldest first."""
    if not summary["restarts"]:
        return summary
    sha1 = summary["restarts"][0]["weights_sha1"]
    if old.get("sha1") != sha1 and ((old.get("training") or {}).get("carried") or {}).get("from_sha1") != sha1:
        parent = _parent_card(summary["restarts"][0])     # continued, or fine-tuned, from another card
        if parent:
            out = _with_earlier_training(summary, parent)
            first = summary["restarts"][0]
            if parent.get("task") != task:                 # a level fine-tuned from the mixed model
                out["fine_tuned_from"] = {"from": first["from"], "task": parent.get("task"),
                                          "iteration": first["iteration"], "sha1": sha1}
            return out
    t = old.get("training") or {}
    if old.get("sha1") == sha1:
        carried = {k: t.get(k) for k in ("wall_seconds", "sessions", "cpus", "blas_kernel", "caffe_build", "restarts")}
        carried["from_sha1"] = sha1
        sol = old.get("solver") or {}
        carried["recipes"] = sol.get("recipes") or [{"from_iteration": 0, "recipe": sol.get("recipe")
                                                     or recipes.RECIPES[recipes.DEFAULT].to_dict()}]
    elif (t.get("carried") or {}).get("from_sha1") == sha1:
        carried = t["carried"]
    else:
        raise UserError(f"the run restarted from weights {sha1[:12]}..., which are not those of "
                        f"models/{old.get('name', '?')} (its training so far cannot be accounted for); "
                        f"export it under another NAME=")
    out = dict(summary)
    out["wall_seconds"] = summary["wall_seconds"] + int(carried["wall_seconds"] or 0)
    out["sessions"] = summary["sessions"] + int(carried["sessions"] or 0)
    for k in ("cpus", "blas_kernel", "caffe_build"):
        out[k] = sorted(set(summary[k]) | set(carried[k] or []))
    # copies, so that the card's YAML holds them twice as plain mappings, not as anchors
    out["restarts"] = [dict(r) for r in carried.get("restarts") or []] + summary["restarts"]
    out["carried"] = carried
    if t.get("fine_tuned_from"):      # continued from a fine-tuned level (a checkpoint), or exported again
        out["fine_tuned_from"] = t["fine_tuned_from"]
    return out


def _continued_folder(own: dict, old: dict, folder: Path, task: str) -> Path | None:
    """The model folder whose curve and validation record the run's own training continues:
    ``folder`` when the card being replaced holds the weights the run restarted from (or is an
    earlier export of the run), the checkpoint or model of the same task it restarted from
    otherwise; None for a run from scratch or a fine-tune from another task's model (its
    curve starts at the fine-tune)."""
    if not own["restarts"]:
        return None
    first = own["restarts"][0]
    sha1 = first["weights_sha1"]
    if old and sha1 in (old.get("sha1"), ((old.get("training") or {}).get("carried") or {}).get("from_sha1")):
        return folder
    parent = _parent_card(first)
    return ROOT / str(first["from"]) if parent and parent.get("task") == task else None


def _fixed_val_from(info: dict) -> tuple[int, int] | None:
    """(iteration, patches per test) from which every test of the run read the same
    validation patches (sessions whose val schedule is a fixed pass, rednet.train), or None.
    Earlier sessions' tests read a window that moved on at every test."""
    fixed = None
    for s in info.get("sessions", []):
        val = (s.get("schedule") or {}).get("val") or {}
        if "rows_per_test" not in val:
            fixed = None
        elif fixed is None or fixed[1] != val["rows_per_test"]:
            fixed = (int(s["start_iter"]), int(val["rows_per_test"]))
    return fixed


def _curves(run_dir: Path, folder: Path, title: str, earlier: Path | None,
            fixed: tuple[int, int] | None = None) -> dict:
    """``curves.csv`` and ``curves.png``: training loss and validation PSNR (from Caffe's
    test-phase loss) against the iteration.  ``earlier``: the folder whose curves.csv this
    run continues (the card replaced, or the checkpoint of the same task the run restarted
    from), whose rows before this run's first iteration are kept.  ``fixed``: (iteration,
    patches) from which the tests read the same patches each time (:func:`_fixed_val_from`);
    the points before it are drawn apart."""
    import math

    from .logparse import parse_log
    from .runrecord import RunLayout
    table = parse_log(RunLayout(run_dir).log)
    # Caffe's EuclideanLoss = sum of squares / (2 N); per pixel MSE = 2 loss / (C H W)
    pix = val_patch_pixels(run_dir)
    rows = [(r.iteration, r.train_loss,
             10 * math.log10(pix / (2 * r.test_loss)) if r.test_loss else None)
            for r in (table.rows[k] for k in sorted(table.rows))]
    if earlier is not None and (Path(earlier) / "curves.csv").is_file() and rows:
        rows = [r for r in read_curves(Path(earlier) / "curves.csv") if r[0] < rows[0][0]] + rows
    return draw_curves(rows, folder, title, fixed)


def read_curves(path: Path) -> list[tuple]:
    """The rows of a card's ``curves.csv``: (iteration, training loss or None, PSNR or None)."""
    import csv
    with open(path, newline="") as f:
        return [(int(r["iteration"]), float(r["train_loss"]) if r["train_loss"] else None,
                 float(r["val_psnr"]) if r["val_psnr"] else None) for r in csv.DictReader(f)]


def draw_curves(rows: list[tuple], folder: Path, title: str, fixed: tuple[int, int] | None = None) -> dict:
    """Write ``rows`` (:func:`read_curves`) as ``folder/curves.csv`` and draw ``curves.png``;
    return the card's ``validation`` record."""
    import csv
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    old_csv = folder / "curves.csv"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["iteration", "train_loss", "val_psnr"])
    for it, tl, vp in rows:
        w.writerow([it, "" if tl is None else f"{tl:.6g}", "" if vp is None else f"{vp:.4f}"])
    atomic_write_text(old_csv, buf.getvalue())
    tr = [(it, tl) for it, tl, _ in rows if tl is not None]
    va = [(it, vp) for it, _, vp in rows if vp is not None]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=90)
    if tr:
        a.plot(*zip(*tr), lw=0.6)
    a.set(xlabel="iteration", ylabel="training loss (Caffe EuclideanLoss)", yscale="log", title="training loss")
    start = fixed[0] if fixed else None
    moving = [p for p in va if start is None or p[0] < start]
    same = [p for p in va if start is not None and p[0] >= start]
    if moving:
        b.plot(*zip(*moving), marker=".", lw=0.6, color="0.6", label="128 patches, moving window")
    if same:
        b.plot(*zip(*same), marker=".", lw=0.8, color="C0", label=f"the same {fixed[1]} patches")
    if moving and same:
        b.legend(fontsize=8)
    b.set(xlabel="iteration", ylabel="PSNR (dB)", title="validation patches (test phase)")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(folder / "curves.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return {"last_val_psnr": round(va[-1][1], 3) if va else None, "val_points": len(va),
            "same_patches_from": start if same else None, "patches_per_test": fixed[1] if same else None}


def val_patch_pixels(run_dir: Path) -> int:
    """C x H x W of one validation patch (from the run's first validation shard)."""
    import h5py
    from .runrecord import RunLayout
    sched = RunLayout(run_dir).schedule("val")
    first = sched.read_text().split()[0] if sched.is_file() else None
    if not first:
        raise UserError(f"{rel(sched)}: no validation schedule (the run has no test phase)")
    p = Path(first) if Path(first).is_absolute() else ROOT / first
    with h5py.File(p, "r") as f:
        shape = f["label"].shape
    return int(shape[1] * shape[2] * shape[3])


def _sample(folder: Path, deploy: Path, weights: Path, task, datasets: Path) -> dict:
    """Restore one test image (the first of the task's first table) and save the picture."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from . import metrics
    from .restore import Restorer
    from .tables import EvalConfig, load_images
    cfg = EvalConfig(datasets=datasets, limit=1)
    level = task.levels[0] if task.kind == "sr" else (30 if 30 in task.levels else task.levels[0])
    r = Restorer(deploy, weights)
    if task.kind == "denoise":
        name, clean = load_images("denoise14", cfg)[0]
        x = metrics.add_noise(clean, level, f"denoise14/{name}", 0)
        out = r.restore(x.astype(np.float32), ensemble=False)
        p_in, _ = metrics.denoise_scores(x, clean)
        p_out, _ = metrics.denoise_scores(out, clean)
        what, ref = f"noisy, sigma={level}", clean / 255.0
        name = f"14 images: {name}"
    else:
        name, img = load_images("Set5", cfg)[0]
        ref, x = metrics.sr_pair(img, level)
        out = r.restore(x.astype(np.float32), ensemble=False)
        p_in, _ = metrics.sr_scores(x, ref, level, "authors")
        p_out, _ = metrics.sr_scores(out, ref, level, "authors")
        what = f"bicubic x{level}"
        name = f"Set5: {name}"
        ref = ref / 255.0 if ref.max() > 1.5 else ref
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=80)
    for ax, im, title in zip(axes, (x, out, ref), (f"{what} ({p_in:.2f} dB)", f"restored ({p_out:.2f} dB)", "clean")):
        ax.imshow(np.clip(np.asarray(im, dtype=np.float64), 0, 1), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(folder / "sample.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return {"image": name, "level": level, "psnr_in": round(float(p_in), 3), "psnr_out": round(float(p_out), 3)}


#: the largest file the repository takes (a solver state above it is not exported)
MAX_FILE_BYTES = 20 << 20


def export(run_dir: Path, name: str | None = None, root: Path = ZOO, datasets: Path | None = None,
           solverstate: bool | None = None) -> Path:
    """Copy the newest valid snapshot of ``run_dir`` into ``root/<name>/`` with its card.

    ``solverstate`` (default: for ``checkpoints/`` only) copies the snapshot's ``.solverstate``
    too (Adam's moments; 8 MB for RED30), so that ``FROM_MODEL=checkpoints/<name>`` on
    another machine goes on exactly as the run would have; the shipped models do without."""
    from .caffeio import caffemodel_shapes, param_shapes
    from .models import from_run
    from .runrecord import RunRecord
    from .tasks import get_task
    run_dir = Path(run_dir)
    info = RunRecord.load(run_dir).to_dict()
    name = name or info["name"]
    spec = from_run(run_dir)
    it = int(spec.weights.stem.rsplit("_iter_", 1)[1])
    stored = caffemodel_shapes(spec.weights)            # a cut or empty file fails here
    if set(stored) != {n for n, _ in param_shapes(spec.deploy)}:
        raise UserError(f"{rel(spec.weights)}: does not match {rel(spec.deploy)}")
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.caffemodel"
    with atomic_path(weights) as tmp:
        shutil.copyfile(spec.weights, tmp)
    with atomic_path(folder / "deploy.prototxt") as tmp:
        shutil.copyfile(spec.deploy, tmp)
    if solverstate is None:
        solverstate = Path(root).resolve() == CHECKPOINTS.resolve()
    state = (_export_state(spec.weights, folder / f"{name}.solverstate", it, param_shapes(spec.deploy))
             if solverstate else None)
    if state is None:
        (folder / f"{name}.solverstate").unlink(missing_ok=True)       # no stale state beside new weights
    task = get_task(info["task"])
    old = read_card(folder) if (folder / CARD).is_file() else {}
    own = _sessions_summary(info, it, spec.weights)
    summary = _with_earlier_training(own, old, info["task"])
    earlier = _continued_folder(own, old, folder, info["task"])
    fixed = _fixed_val_from(info)
    before = (read_card(earlier).get("validation") or {}) if earlier is not None else {}
    if (earlier is not None and fixed and fixed[0] == info["sessions"][0]["start_iter"]
            and before.get("same_patches_from") is not None and before.get("patches_per_test") == fixed[1]):
        fixed = (int(before["same_patches_from"]), fixed[1])    # the carried curve's same patches go on
    curves = _curves(run_dir, folder, f"{name}: {info['net']} {info['task']}", earlier, fixed)
    sample = _sample(folder, folder / "deploy.prototxt", weights, task, paths.datasets_dir(datasets))
    batch = int(info.get("batch_size", 16)) * int(info.get("iter_size", 1))
    card = {
        "name": name,
        "caffemodel": weights.name,
        "caffemodel_url": (f"{rel(weights)} (in this repository)" if _inside(weights, ROOT)
                           else f"{weights.name} (beside this card)"),
        "sha1": sha1_file(weights),
        "caffe_commit": CAFFE_COMMIT,
        "license": LICENSE,
        "gist_id": None,
        "net": info["net"],
        "task": info["task"],
        "iterations": it,
        "batch": batch,
        "patches_seen": it * batch,
        "training": summary,
        "database": {"train_list": info["data"]["train"]["list"],
                     "train_list_sha256": info["config"]["train_list_sha256"],
                     "patches": info["data"]["train"]["patches"],
                     "val_list_sha256": info["config"].get("val_list_sha256"),
                     "train_db_sha256": info["config"].get("train_db_sha256")},
        "solver": {"file": info["sources"]["solver"], "sha256": info["config"]["solver_sha256"],
                   "type": info.get("solver_type"),
                   "recipe": info.get("recipe") or recipes.RECIPES[recipes.DEFAULT].to_dict(),
                   "recipes": _recipe_history(info, summary)},
        "validation": curves,
        "sample": sample,
        "cells": old.get("cells", []),
    }
    if state is not None:
        card["solverstate"] = state
    write_card(folder, card, _body(card))
    return folder


def _export_state(weights: Path, dest: Path, iteration: int, shapes) -> dict | None:
    """Copy the solver state beside the snapshot ``weights`` to ``dest``; its card entry, or None
    (said on stderr) when there is none or it is too big for the repository."""
    from .snapshots import check_snapshot
    src = weights.with_suffix(".solverstate")
    if not src.is_file():
        why = "no solver state beside it"
    elif src.stat().st_size > MAX_FILE_BYTES:
        why = f"its solver state is {src.stat().st_size / 2**20:.1f} MiB, over {MAX_FILE_BYTES >> 20} MiB"
    else:
        why = check_snapshot(src, weights, iteration, shapes)
    if why is not None:
        print(f"note: {rel(weights)}: exported without Adam's moments ({why}); a continuation "
              f"re-estimates them", file=sys.stderr)
        return None
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return {"file": dest.name, "sha1": sha1_file(dest), "iteration": iteration,
            "about": "Caffe's .solverstate of this snapshot (Adam's moments): FROM_MODEL= continues exactly"}


def _val_caption(v: dict) -> str:
    """Which validation patches the curve's points measured."""
    frm, n = v.get("same_patches_from"), v.get("patches_per_test")
    if frm is None:
        return ("Each test read 128 patches of a window that moved on at every test, so the points "
                "scatter more than the model changes (docs/training.md).")
    if v.get("val_points") and frm <= 0:
        return f"Every test read the same {n} patches."
    return (f"From iteration {frm:,} on, every test read the same {n} patches (blue); before it, 128 "
            f"patches of a window that moved on at every test (grey), which scatter more (docs/training.md).")


def _restore_files(kind: str) -> str:
    """The IN=/OUT= words of the card's restore line: a noisy image, or a low-resolution one for SR."""
    return "IN=noisy.png OUT=restored.png" if kind == "denoise" else "IN=low-res.png OUT=upscaled.png"


def _body(card: dict) -> str:
    net, task, it = card["net"], card["task"], card["iterations"]
    t = card["training"]
    kind, level = task.split("-", 1)
    words = (f"TASK=denoise SIGMA={level[1:] if level.startswith('s') else level}" if kind == "denoise"
             else f"TASK=sr SCALE={level[1:] if level.startswith('x') else level}")
    restore_words, restore_note = words, ""
    if level == "mixed":           # one model for its whole span: restore names one level of it
        levels = get_task(task).levels
        name = "SIGMA" if kind == "denoise" else "SCALE"
        restore_words = words.replace(f"{name}=mixed", f"{name}={levels[1]}")
        restore_note = f"    # any {name} from {levels[0]} to {levels[-1]}"
    hours = t["wall_seconds"] / 3600
    lines = [
        f"# {card['name']}: {net}, {task}", "",
        f"RED-Net `{net}` trained for `{task}` with `caffe train`: {it:,} iterations of "
        f"batch {card['batch']} ({card['patches_seen']:,} patches), {hours:.1f} h of training in "
        f"{t['sessions']} session(s) on {', '.join(t['cpus'])}, Caffe build {', '.join(t['caffe_build'])}, "
        f"BLAS kernel {', '.join(t['blas_kernel'])}.",
        "",
        f"Learning rate: {_recipe_history_phrase(card)} (docs/recipe.md).",
        "",
        *([f"Fine-tuned from `{t['fine_tuned_from']['from']}` at its {t['fine_tuned_from']['iteration']:,} "
           f"iterations (its training is counted above), on this task's own database: a deviation from the "
           f"paper, which trains each model from scratch (docs/recipe.md).", ""] if t.get("fine_tuned_from") else []),
        "The paper trains far longer on a GPU; this model is what this project's CPUs gave, and "
        "its cells below say how far it is from the paper's.",
        "",
        "## Use it", "",
        "```sh",
        f"make restore {_restore_files(kind)} {restore_words} MODEL=models/{card['name']}/{card['caffemodel']}"
        f"{restore_note}",
        "make tables        # fills the cells below (models/ is searched by default)",
        "```", "",
        "## Reproduce it", "",
        "```sh",
        f"make data {words}",
        *_train_lines(card, net, words, it),
        "```", "",
        "Training resumes exactly when interrupted (`make train` again). Where the run folder is "
        + (f"lost, `make train ... FROM_MODEL=checkpoints/{card['name']}` goes on exactly as the run would "
           f"have, from these weights and the solver state beside them (`{card['solverstate']['file']}`: "
           "Adam's moments; recorded under `training.restarts`)." if card.get("solverstate") else
           "lost, `make train ... FROM_MODEL=models/<name>` continues from these weights at their "
           "iteration (Adam's moments estimated from the batches before it; recorded under "
           "`training.restarts`)."), "",
        "## Curves", "",
        "![training loss and validation PSNR](curves.png)", "",
        "Validation PSNR is Caffe's test-phase loss on the run's validation patches turned into "
        "dB (per-pixel MSE = 2 x loss / (C H W)); it is a patch average, not a table cell. "
        + _val_caption(card.get("validation") or {}), "",
        "## Sample", "",
        "![corrupted, restored, clean](sample.png)", "",
        f"`{card['sample']['image']}`: {card['sample']['psnr_in']} dB in, {card['sample']['psnr_out']} dB "
        f"restored (one forward pass, no ensemble).", "",
    ]
    return "\n".join(lines) + "\n" + _cells_section(card)


def _recipe_history(info: dict, summary: dict) -> list[dict]:
    """``[{from_iteration, recipe}]``: the recipe of each stretch of the model's training, the
    earlier ones carried from the card it continued (the paper's where none was recorded:
    every run before recipes were recorded trained with it)."""
    paper = recipes.RECIPES[recipes.DEFAULT].to_dict()
    own = {"from_iteration": int(info["sessions"][0].get("start_iter") or 0), "recipe": info.get("recipe") or paper}
    import copy      # plain mappings in the card's YAML, not anchors to the same objects elsewhere in it
    if not summary.get("carried"):
        return [copy.deepcopy(own)]
    earlier = [dict(r) for r in summary["carried"].get("recipes") or [{"from_iteration": 0, "recipe": paper}]
               if r["from_iteration"] < own["from_iteration"]]
    return copy.deepcopy(earlier if earlier and earlier[-1]["recipe"] == own["recipe"] else earlier + [own])


def _recipe_of(card: dict) -> "recipes.Recipe":
    return recipes.Recipe.from_dict((card.get("solver") or {}).get("recipe"))


def _recipe_history_phrase(card: dict) -> str:
    sol = card.get("solver") or {}
    return recipes.describe_history(sol.get("recipes"), sol.get("recipe"))


def _train_lines(card: dict, net: str, words: str, it: int) -> list[str]:
    """The make commands that train and export the model: one run per recipe stretch, each
    exported to checkpoints/ for the next one to continue from (FROM_MODEL=).  A model
    fine-tuned from another task's model (a level from the mixed one) starts from that
    model: the stretches before it are the parent's, which its own card reproduces."""
    name, task = card["name"], card["task"]
    hist = (card.get("solver") or {}).get("recipes") or []
    parent = (card.get("training") or {}).get("fine_tuned_from")
    lines, first = [], ""
    if parent:
        lines.append(f"# first {parent['from']} at {parent['iteration']:,} iterations (sha1 "
                     f"{str(parent.get('sha1'))[:12]}...): its own card's \"Reproduce it\"")
        # the recipe in force at the fine-tune's start; a later stretch begins where it says
        hist = ([h for h in hist if h["from_iteration"] <= parent["iteration"]][-1:]
                + [h for h in hist if h["from_iteration"] > parent["iteration"]])
        first = f" FROM_MODEL={parent['from']}"
    if len(hist) < 2:
        return lines + [f"make train NET={net} {words} ITERS={it}{first}{_words_of(_recipe_of(card), it)}",
                        f"make zoo-export RUN={net}_{task} NAME={name}"]
    for k, h in enumerate(hist):
        last = k + 1 == len(hist)
        until = it if last else hist[k + 1]["from_iteration"]
        run = f"{net}_{task}" if k == 0 else f"{name}-{k}"
        start = first if k == 0 else f" RUN={run} FROM_MODEL=checkpoints/{name}"
        lines.append(f"make train NET={net} {words} ITERS={until}{start}"
                     f"{_words_of(recipes.Recipe.from_dict(h['recipe']), until)}")
        lines.append(f"make zoo-export RUN={run} NAME={name}" + ("" if last else " ZOO_ROOT=checkpoints"))
    return lines


def _words_of(r: "recipes.Recipe", iters: int) -> str:
    """The make words that give the recorded recipe ``r`` to a run of ``ITERS=iters`` (none for
    the default).  A named recipe whose steps were resolved for another budget (a model
    exported before its run's end: ``step`` of a 20,000-iteration run at 15,500) names its
    steps, which ``RECIPE=step ITERS=15500`` alone would put at 12,400."""
    if r.name == recipes.DEFAULT:
        return ""
    if r.name != "custom":
        named = recipes.RECIPES.get(r.name)
        if named is not None and named.resolve(iters).steps != r.steps:
            return f" RECIPE={r.name} LR_STEPS={','.join(map(str, r.steps))} LR_GAMMA={r.gamma:g}"
        return f" RECIPE={r.name}"
    words = f" RECIPE={r.base} LR={r.base_lr:g}"
    if r.steps:
        words += f" LR_STEPS={','.join(map(str, r.steps))} LR_GAMMA={r.gamma:g}"
    return words + "".join(f" {w}" for w in r.field_words(recipes.Recipe(recipes.DEFAULT)))


def _inside(p: Path, root: Path) -> bool:
    try:
        Path(p).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def _cells_section(card: dict) -> str:
    lines = ["## Cells", ""]
    if card["cells"]:
        lines += ["| table | dataset | setting | column | images | ours PSNR / SSIM | paper PSNR / SSIM | "
                  "difference (dB) | ensemble |", "|---|---|---|---|---|---|---|---|---|"]
        for c in card["cells"]:
            paper = f"{c['paper_psnr']:.2f} / {c['paper_ssim']:.4f}" if c.get("paper_psnr") is not None else "-"
            diff = f"{c['diff_psnr']:+.2f}" if c.get("diff_psnr") is not None else "-"
            lines.append(f"| {c['table']} | {c['dataset']} | {c['setting']} | {c['method']} | {c['images']} | "
                         f"{c['psnr']:.2f} / {c['ssim']:.4f} | "
                         f"{paper} | {diff} | {'on' if c['ensemble'] else 'off'} |")
    else:
        lines.append("Not evaluated yet: `make zoo-results` fills them.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- cells from results
#: the range a real cell can have; anything else (a corrupted model, a broken image) is refused
PSNR_RANGE, SSIM_RANGE = (0.0, 100.0), (-1.0, 1.0)


def _checked_mean(rows: list, key: str, lo_hi: tuple, meta) -> float:
    import math
    v = sum(float(r[key]) for r in rows) / len(rows)
    lo, hi = lo_hi
    if not (math.isfinite(v) and lo <= v <= hi):
        raise UserError(f"{rel(meta)}: {key.upper()} {v:.2f} is not a real cell (expected {lo:g} to {hi:g}); "
                        f"nothing is written into the cards (check the model with make zoo-verify)")
    return v


def card_cells(results: Path, root: Path = ZOO) -> list[tuple[Path, dict, str]]:
    """``(folder, card, card text)`` of every card under ``root`` with the table cells that
    ``results/per_image/`` holds for its weights (nothing written; a non-finite or absurd
    cell is refused)."""
    from .tables import read_cell, read_paper
    paper = read_paper()
    records = []
    for meta in sorted((Path(results) / "per_image").glob("*.json")):
        cell = read_cell(meta)
        if cell is not None and "weights" in cell[0]:
            records.append((meta, *cell))
    out = []
    for folder in folders(root):
        card = read_card(folder)
        digest = sha256_file(folder / card["caffemodel"])
        mine = []
        for meta, rec, rows in records:
            if rec["weights"]["sha256"] != digest:
                continue
            psnr = _checked_mean(rows, "psnr", PSNR_RANGE, meta)
            ssim = _checked_mean(rows, "ssim", SSIM_RANGE, meta)
            ds = rec["data"]["dataset"]
            p = paper.get((rec["table"], ds, rec["setting"], rec["method"])) or {}
            mine.append({"table": rec["table"], "dataset": ds, "setting": rec["setting"],
                         "method": rec["method"], "psnr": round(psnr, 4), "ssim": round(ssim, 5),
                         "images": len(rows), "paper_psnr": p.get("psnr"), "paper_ssim": p.get("ssim"),
                         "diff_psnr": round(psnr - p["psnr"], 2) if p.get("psnr") is not None else None,
                         "ensemble": bool(rec.get("ensemble"))})
        card["cells"] = sorted(mine, key=lambda c: (c["table"], c["dataset"], c["setting"]))
        body = card_body(folder)
        head = body[:body.index("## Cells")] if "## Cells" in body else body + "\n"
        out.append((folder, card, card_text(card, head + _cells_section(card))))
    return out


def cells(results: Path, root: Path = ZOO) -> dict[str, int]:
    """Write into every card the table cells that ``results/per_image/`` holds for its weights."""
    staged = card_cells(results, root)
    for folder, _, text in staged:
        atomic_write_text(Path(folder) / CARD, text)
    return {card["name"]: len(card["cells"]) for _, card, _ in staged}


def gain_texts(ensemble: Path, single: Path) -> tuple[list[dict], str, str]:
    """The 8-orientation ensemble's gain per RED cell that both results folders hold (the
    tables with and without it; `make zoo-results` measures the 14 images and Set5):
    ``(rows, csv text, markdown text)``."""
    import csv
    import io

    from .tables import read_cell

    def cells_of(folder: Path) -> dict:
        out = {}
        for meta in sorted((Path(folder) / "per_image").glob("*.json")):
            cell = read_cell(meta)
            if cell is None or "weights" not in cell[0]:
                continue
            rec, rows = cell
            key = (rec["table"], rec["data"]["dataset"], rec["setting"], rec["method"], rec["weights"]["sha256"])
            out[key] = (bool(rec.get("ensemble")), _checked_mean(rows, "psnr", PSNR_RANGE, meta),
                        _checked_mean(rows, "ssim", SSIM_RANGE, meta), len(rows), rec["weights"]["path"])
        return out
    a, b = cells_of(ensemble), cells_of(single)
    rows = []
    for key in sorted(set(a) & set(b)):
        (ea, pa, sa, na, path), (eb, pb, sb, nb, _) = a[key], b[key]
        if ea and not eb and na == nb:
            rows.append({"table": key[0], "dataset": key[1], "setting": key[2], "method": key[3], "weights": path,
                         "images": na, "psnr_single": round(pb, 4), "psnr_ensemble": round(pa, 4),
                         "gain_db": round(pa - pb, 4), "ssim_single": round(sb, 5), "ssim_ensemble": round(sa, 5)})
    buf = io.StringIO()
    cols = ["table", "dataset", "setting", "method", "weights", "images", "psnr_single", "psnr_ensemble",
            "gain_db", "ssim_single", "ssim_ensemble"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    md = ["# The 8-orientation self-ensemble's gain, per shipped-model cell", "",
          "Written by `make zoo-results`: the same cells with one forward pass and with the mean of 8 "
          "orientations (the authors' `netforward.m`).", "",
          "| table | dataset | setting | method | images | PSNR single | PSNR ensemble | gain (dB) | SSIM single | SSIM ensemble |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['table']} | {r['dataset']} | {r['setting']} | {r['method']} | {r['images']} | {r['psnr_single']:.2f} | "
           f"{r['psnr_ensemble']:.2f} | {r['gain_db']:+.2f} | {r['ssim_single']:.4f} | {r['ssim_ensemble']:.4f} |"
           for r in rows]
    if not rows:
        md.append("| (no shipped model covers these sets) | | | | | | | | | |")
    return rows, buf.getvalue(), "\n".join(md) + "\n"


def ensemble_gain(ensemble: Path, single: Path, dest: Path) -> list[dict]:
    """:func:`gain_texts` written to ``dest``.csv and ``dest``.md."""
    rows, csv_text, md_text = gain_texts(ensemble, single)
    atomic_write_text(Path(f"{dest}.csv"), csv_text)
    atomic_write_text(Path(f"{dest}.md"), md_text)
    return rows


# --------------------------------------------------------------------------- command line
def cmd_zoo(args) -> int:
    if args.action == "export":
        if not args.run:
            raise UserError("zoo export: give --run runs/<name> (make zoo-export RUN=<name>)")
        run = Path(args.run)
        if not run.is_dir() and (paths.RUNS / args.run).is_dir():
            run = paths.RUNS / args.run
        folder = export(run, args.name, root=args.root, datasets=args.datasets)
        card = read_card(folder)
        print(f"{rel(folder)}: {card['net']} {card['task']} at iteration {card['iterations']}, sha1 {card['sha1']}")
    elif args.action == "verify":
        fs, bad = folders(), []
        for f in fs:                  # every model checked, each failure named, then one error line
            try:
                card = verify(f)
            except UserError as e:
                bad.append(rel(f))
                print(f"FAILED {rel(f)}: {e}", file=sys.stderr)
                continue
            print(f"ok {rel(f)}: {card['net']} {card['task']} iteration {card['iterations']}")
        if not fs:
            print(f"no models in {rel(ZOO)}/")
        if bad:
            raise UserError(f"{len(bad)} of {len(fs)} models failed verification: {', '.join(bad)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("zoo", help="the shipped models in models/: export a run, verify, fill cells",
                              description=__doc__.splitlines()[0])
    # (the cards' cells and the ensemble's gain are written by `rednet zoo-results` alone,
    # from a complete default evaluation: rednet.zooresults)
    p.add_argument("action", choices=("export", "verify"))
    p.add_argument("--run", help="for export: the run folder (or its name under runs/)")
    p.add_argument("--name", help="for export: the model's folder name (default: the run's name)")
    p.add_argument("--root", type=Path, default=ZOO, help="for export: the folder above the model's (default models/; "
                   "checkpoints/ for a model still short of its budget, which restore and tables do not search)")
    p.add_argument("--datasets", help="benchmark images for the sample picture (default $DATASETS)")
    p.set_defaults(func=cmd_zoo)
