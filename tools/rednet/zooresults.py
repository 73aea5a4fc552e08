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
    try:
        res = tables.run(cfg)
        tables.run(dataclasses.replace(cfg, tables=GAIN_TABLES, ensemble=False, no_ensemble_tables=(),
                                       out=single_out))
    except OSError as e:
        raise tables.disk_error(e, cfg.out) from None
    staged = zoo.card_cells(cfg.out, root)              # refuses a non-finite or absurd cell
    rows, gain_csv, gain_md = zoo.gain_texts(cfg.out, single_out)
    files = {docs / "tables.md": (cfg.out / "tables.md").read_text(),
             docs / "tables.csv": (cfg.out / "tables.csv").read_text(),
             docs / "ensemble_gain.csv": gain_csv, docs / "ensemble_gain.md": gain_md}
    files.update({Path(folder) / zoo.CARD: text for folder, _, text in staged})
    try:
        atomic_write_all(files)
    except OSError as e:
        raise UserError(f"{rel(e.filename) if e.filename else rel(docs)}: cannot write the shipped results "
                        f"({e.strerror}); nothing of them was replaced") from None
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
