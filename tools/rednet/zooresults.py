"""The shipped results: ``bin/python -m rednet zoo-results`` (``make zoo-results``).

Tables 1-7 of the models in ``models/`` only, into ``results/zoo/`` (with the 8-orientation
ensemble, but for ``--no-ensemble-tables``), Tables 1 and 3 once more with one forward pass
into ``results/zoo-single/`` (the ensemble's gain), then what the project ships from them:
``docs/results/tables.{md,csv}``, ``docs/results/ensemble_gain.{md,csv}`` and the cells of
every card.

What the project ships is written only by the default evaluation (all seven tables, every
image, the authors' protocols and seed), so a quick look never replaces it: any other
setting is refused in one line before anything is computed (``make tables`` evaluates with
any setting into ``results/``).  Every shipped file is written only once both evaluations
and every cell are complete, all of them together (:func:`rednet.errors.atomic_write_all`);
a cell that is not finite or out of range stops it with nothing written (:mod:`rednet.zoo`).

The per-image rows of every cell ship too, with the record of what made them
(``docs/results/per_image/``, and ``per_image_single/`` for the one-pass evaluation): they
are the evaluation's own cache, so that a fresh clone computes only the cells of a model
that changed.  Before evaluating, a shipped cell is copied into ``results/`` where that has
no valid cell of the same name; :mod:`rednet.tables` reuses it only where its record (the
weights' and deploy net's sha256, the build, the seed, the data, the evaluation code's
fingerprint, :func:`rednet.tables.eval_code_id`) is exactly the cell's as computed now.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from . import tables, zoo
from .errors import UserError, atomic_write_all, check_writable
from .paths import RESULTS, ROOT, rel

#: the evaluation's own folders, and where the shipped results go
OUT, SINGLE, DOCS = RESULTS / "zoo", RESULTS / "zoo-single", ROOT / "docs" / "results"
#: the tables of the ensemble-gain pass (the 14 images and Set5 x2-x4)
GAIN_TABLES = (1, 3)


def seed_cells(shipped: Path, out: Path) -> int:
    """Copy the shipped cells (``<cell>.csv`` and its ``.json`` record) from ``shipped`` into
    an evaluation's ``out/per_image/`` where it has no valid cell of that name; return how
    many.  Whether one is used is decided by its record, when the cell is evaluated."""
    n = 0
    for meta in sorted(Path(shipped).glob("*.json")):
        dest = out / "per_image" / meta.name
        if tables.read_cell(meta) is None or (dest.is_file() and tables.read_cell(dest) is not None):
            continue
        atomic_write_all({dest.with_suffix(".csv"): meta.with_suffix(".csv").read_text(),
                          dest: meta.read_text()})
        n += 1
    return n


def cell_files(cfg: tables.EvalConfig, res: dict, shipped: Path) -> dict:
    """``{shipped path: text}`` of every computed cell of ``res`` (its CSV and record)."""
    files = {}
    for (t, d, s, m), cell in res["results"].items():
        if isinstance(cell, tables.Cell):
            src = tables.cell_path(cfg, t, d, s, m)
            for f in (src, src.with_suffix(".json")):
                files[shipped / f.name] = f.read_text()
    return files


def non_default(cfg: tables.EvalConfig) -> list[str]:
    """The settings of ``cfg`` that differ from the shipped evaluation's, as make writes them
    (``--no-ensemble-tables`` is allowed: the tables name the cells computed in one pass)."""
    default = tables.EvalConfig()
    out = []
    if cfg.tables != default.tables:
        out.append(f"TABLES={','.join(map(str, cfg.tables))}")
    if cfg.limit:
        out.append(f"LIMIT={cfg.limit}")
    if not cfg.ensemble:
        out.append("ENSEMBLE=0")
    for key, make in (("sr_protocol", "SR_PROTOCOL"), ("bsd200_scale", "BSD200_SCALE"), ("seed", "SEED"),
                      ("denoise14_extras", "--extras"), ("red_nets", "--red30-nets"), ("bm3d", "BM3D")):
        if getattr(cfg, key) != getattr(default, key):
            out.append(f"{make}={getattr(cfg, key)}")
    return out


def run(cfg: tables.EvalConfig, single_out: Path = SINGLE, docs: Path = DOCS, root: Path = zoo.ZOO) -> dict:
    """Evaluate (``cfg.out``, then ``single_out``) and write the shipped files under ``docs``
    and the cards under ``root``; return what was written."""
    odd = non_default(cfg)
    if odd:
        raise UserError(f"zoo-results: {' '.join(odd)} is a partial or non-default evaluation; "
                        f"{rel(docs)}/ and the cards hold only the default one (drop {', '.join(o.split('=')[0] for o in odd)}); "
                        f"make tables evaluates with any setting into results/")
    for folder in (cfg.out, single_out, docs):
        check_writable(folder, rel(folder))
    from . import datasets
    for name in sorted({d for t in cfg.tables for d in tables.TABLES[t].datasets}):
        try:                              # every set is here (or fetched now) before hours of work
            datasets.list_images(name, cfg.datasets, extras=cfg.denoise14_extras)
        except datasets.SetMissing as e:
            raise UserError(f"zoo-results: the shipped results need every test set: {e}") from None
    cfg = dataclasses.replace(cfg, zoo_only=True)
    single_cfg = dataclasses.replace(cfg, tables=GAIN_TABLES, ensemble=False, no_ensemble_tables=(), out=single_out)
    shipped = {"main": docs / "per_image", "single": docs / "per_image_single"}   # each evaluation's cells
    try:
        for key, c in (("main", cfg), ("single", single_cfg)):
            n = seed_cells(shipped[key], c.out)
            if n:
                print(f"zoo-results: {n} shipped cells copied into {rel(c.out)}/per_image (used where "
                      f"their record matches)", flush=True)
        res = tables.run(cfg)
        res_single = tables.run(single_cfg)
    except OSError as e:
        raise tables.disk_error(e, cfg.out) from None
    staged = zoo.card_cells(cfg.out, root)              # refuses a non-finite or absurd cell
    rows, gain_csv, gain_md = zoo.gain_texts(cfg.out, single_out)
    files = {docs / "tables.md": (cfg.out / "tables.md").read_text(),
             docs / "tables.csv": (cfg.out / "tables.csv").read_text(),
             docs / "ensemble_gain.csv": gain_csv, docs / "ensemble_gain.md": gain_md}
    files.update({Path(folder) / zoo.CARD: text for folder, _, text in staged})
    cells = {**cell_files(cfg, res, shipped["main"]), **cell_files(single_cfg, res_single, shipped["single"])}
    files.update(cells)
    try:
        atomic_write_all(files)
    except OSError as e:
        raise UserError(f"{rel(e.filename) if e.filename else rel(docs)}: cannot write the shipped results "
                        f"({e.strerror}); nothing of them was replaced") from None
    for old in (f for folder in shipped.values() for f in sorted(folder.glob("*")) if f not in cells):
        old.unlink()                   # cells of models no longer shipped (or made otherwise)
    return {"cells": len(res["ours"]), "missing": len(res["missing"]), "gain_rows": len(rows),
            "cards": {card["name"]: len(card["cells"]) for _, card, _ in staged}}


def cmd_zoo_results(args) -> int:
    cfg = tables.config_from_args(args)
    out = run(cfg)
    print(f"wrote {rel(DOCS)}/tables.md, tables.csv and ensemble_gain.md: {out['cells']} cells computed, "
          f"{out['missing']} without a result; cards: "
          + ", ".join(f"{n} {k} cells" for n, k in out["cards"].items()))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("zoo-results", help="Tables 1-7 of the shipped models -> docs/results/ and the cards",
                              description=__doc__.splitlines()[0])
    tables.add_arguments(p, out=OUT)
    p.set_defaults(func=cmd_zoo_results)
