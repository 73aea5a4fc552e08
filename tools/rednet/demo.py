"""The demo: ``bin/python -m rednet demo`` (``make demo``). Two legs, the first needs nothing
but the clone:

1. **The shipped models** (a minute or two): the zoo's models (``models/``) restore the
   images that ship with the project (data/images): the 14 images at sigma=30 (RED10, and
   RED30's single model) and sigma=50 (the single RED30), Set5 at x3 (RED10, RED30) and x2,
   x4 (RED30), each cell by the model the tables pick (``rednet.tables``: the same images,
   noise, protocol and cell cache, one forward pass each). Writes ``results/demo/results.md``
   (each cell beside the shipped tables' value, docs/results, and the paper's), ``zoo.csv``
   and one side-by-side crop per cell (``<cell>.png``: input, ours, ground truth, PSNR on
   each).
2. **Training** (where BSD300 is present or can be fetched; else skipped with one line):
   builds a small sigma=30 database from BSD300 (``rednet.patches.build_db``) in
   ``data/db/demo-denoise-s30/``, trains RED10 on it with the caffe binary (``rednet.train``:
   run ``runs/demo/``, the paper's Adam solver) until ``--iters`` iterations or ``--minutes``
   of training, restores Set12 at sigma=30 with it (and with the shipped RED10 for
   comparison), and adds a second section to results.md, ``training.csv`` and
   ``set12_05_Monarch.png``.

Every step resumes: the cells are cached, the database builder keeps complete shards, the
run resumes from its newest snapshot, and the training time already spent counts against
``--minutes``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import paths
from .errors import UserError, atomic_write_bytes, atomic_write_text
from .pictures import gray_panels
from .report import csv_text, md_table

SIGMA = 30
TASK = f"denoise-s{SIGMA}"
NET = "red10"
RUN = "demo"
DB_NAME = f"demo-{TASK}"
SET12 = [f"{i:02d}" for i in range(1, 13)]
SET12_NAMES = ["C.man", "House", "Peppers", "Starfish", "Monarch", "Airplane", "Parrot", "Lena",
               "Barbara", "Boat", "Man", "Couple"]

#: the zoo leg's cells, (table, dataset, setting, method), each filled by the model the tables
#: pick for it (a per-level model, else the single model for all levels, said in the notes)
ZOO_CELLS = (
    (1, "denoise14", "sigma=30", "RED10"),
    (1, "denoise14", "sigma=30", "RED30"),
    (6, "denoise14", "sigma=50", "RED30"),
    (3, "Set5", "x3", "RED10"),
    (3, "Set5", "x3", "RED30"),
    (7, "Set5", "x2", "RED30"),
    (7, "Set5", "x4", "RED30"),
)
#: the image each cell's picture shows, and the crop's side in pixels
SHOWN = {"denoise14": "05", "Set5": "butterfly"}
CROP = 96
DATASET_LABEL = {"denoise14": "the 14 images", "Set5": "Set5"}


# --------------------------------------------------------------------------- leg 1: the zoo
def zoo_leg(out_dir: Path, datasets, limit: int | None, progress: bool) -> list[dict]:
    """Restore every cell of :data:`ZOO_CELLS` that has a shipped model; one dict per cell
    (``missing`` set where there is no model)."""
    from . import metrics, tables as T
    cfg = T.EvalConfig(datasets=datasets, ensemble=False, zoo_only=True, limit=limit,
                       out=out_dir / "cells")
    paper = T.read_paper()
    shipped = _shipped_cells()
    restorers: dict = {}
    out = []
    for table, dataset, setting, method in ZOO_CELLS:
        spec = T.TABLES[table]
        key = (table, dataset, setting, method)
        row = {"table": table, "dataset": dataset, "setting": setting, "method": method,
               "paper": (paper.get(key) or {}).get("psnr"), "paper_ssim": (paper.get(key) or {}).get("ssim"),
               "shipped": shipped.get(key)}
        t0 = time.monotonic()
        res = T.evaluate_cell(spec, dataset, setting, method, cfg, restorers)
        if isinstance(res, T.Missing):
            row["missing"] = str(res)
            print(f"[1/2] table {table} {dataset} {setting} {method}: no shipped model", flush=True)
            out.append(row)
            continue
        model, _ = T.find_red_model(method, spec, T.level_of(setting), cfg)
        row.update(what=res.what, weights=paths.rel(model.weights), images=len(res.rows),
                   psnr=float(np.mean([r["psnr"] for r in res.rows])),
                   ssim=float(np.mean([r["ssim"] for r in res.rows])))
        restorer = restorers[(str(model.deploy), str(model.weights))][0]
        row["picture"] = _picture(out_dir, row, spec.kind, T.level_of(setting), restorer, cfg, metrics, T)
        print(f"[1/2] table {table} {DATASET_LABEL[dataset]} {setting} {method}: {row['psnr']:.2f} dB "
              f"with {paths.rel(model.weights)} ({time.monotonic() - t0:.0f} s)", flush=True)
        out.append(row)
    return out


def _shipped_cells() -> dict:
    """``(table, dataset, setting, method) -> PSNR`` of our cells in docs/results/tables.csv."""
    import csv
    p = paths.ROOT / "docs" / "results" / "tables.csv"
    if not p.is_file():
        return {}
    with open(p, newline="") as f:
        return {(int(r["table"]), r["dataset"], r["setting"], r["method"]): float(r["psnr"])
                for r in csv.DictReader(f) if r["source"] == "ours" and r["psnr"]}


def _picture(out_dir: Path, row: dict, kind: str, level: int, restorer, cfg, metrics, T) -> Path | None:
    """input | ours | ground truth, a crop of the cell's shown image (where it has the most
    detail), each titled with the whole image's PSNR."""
    images = dict(T.load_images(row["dataset"], cfg))
    name = SHOWN[row["dataset"]] if SHOWN[row["dataset"]] in images else next(iter(images))
    img = images[name]
    if kind == "denoise":
        clean = img
        x = metrics.add_noise(clean, level, f"{row['dataset']}/{name}", cfg.seed)
        out = restorer.restore(x.astype(np.float32), False)
        p_in, p_out = metrics.denoise_scores(x, clean)[0], metrics.denoise_scores(out, clean)[0]
        titles = (f"noisy, sigma={level}", row["method"])
    else:
        clean, x = metrics.sr_pair(img, level)
        out = restorer.restore(x.astype(np.float32), False)
        p_in, p_out = metrics.sr_scores(x, clean, level)[0], metrics.sr_scores(out, clean, level)[0]
        titles = (f"bicubic x{level}", row["method"])
    y0, x0 = _detailed_window(clean, CROP)
    crop = lambda a: np.asarray(a, dtype=np.float64)[y0:y0 + CROP, x0:x0 + CROP]  # noqa: E731
    png = gray_panels([(f"{titles[0]}: {p_in:.2f} dB", crop(x)), (f"{titles[1]}: {p_out:.2f} dB", crop(out)),
                       ("ground truth", crop(clean / 255.0))],
                      f"{DATASET_LABEL[row['dataset']]} {name}, {row['setting']} (Table {row['table']}); "
                      f"PSNR of the whole image{', luminance' if kind == 'sr' else ''}; "
                      f"{CROP}x{CROP} crop at ({x0}, {y0})")
    dest = out_dir / f"t{row['table']}_{row['dataset']}_{row['setting'].replace('=', '')}_{row['method']}.png"
    atomic_write_bytes(dest, png)
    return dest


def _detailed_window(img: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` window (on a grid of size/4 steps) with the most
    gradient energy: where restoration shows."""
    g = np.asarray(img, dtype=np.float64)
    energy = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
    h, w = energy.shape
    step = max(1, size // 4)
    best, where = -1.0, (0, 0)
    for y in range(0, max(1, h - size + 1), step):
        for x in range(0, max(1, w - size + 1), step):
            e = float(energy[y:y + size, x:x + size].sum())
            if e > best:
                best, where = e, (y, x)
    return where


def zoo_section(cells: list[dict], limit: int | None) -> list[str]:
    lines = [
        "# Demo: the shipped models",
        "",
        "Restored on this machine with the models that ship in `models/`, on the test images that "
        "ship in `data/images`, one forward pass each (the tables average 8 orientations where "
        "their notes say so), as `make tables` computes each cell: the authors' noise (float, "
        "unclipped, fixed draws) and protocol (docs/evaluation.md)."
        + (f" **Shortened run: the first {limit} images of each set.**" if limit else ""),
        "",
    ]
    rows, notes = [], []
    for c in cells:
        label = f"Table {c['table']}: {DATASET_LABEL[c['dataset']]}, {c['setting']}, {c['method']}"
        paper = f"{c['paper']:.2f}" if c.get("paper") is not None else ""
        shipped = f"{c['shipped']:.2f}" if c.get("shipped") is not None else ""
        if "missing" in c:
            rows.append([label, "no shipped model", "", "", shipped, paper, ""])
            continue
        rows.append([label, f"`{c['weights']}`", c["images"], f"{c['psnr']:.2f} / {c['ssim']:.4f}",
                     shipped, paper, f"![{c['picture'].stem}]({c['picture'].name})" if c.get("picture") else ""])
        if "single model for all levels" in c["what"] or "fine-tuned" in c["what"]:
            notes.append(f"- {label}: {c['what']}")
    lines += md_table(["cell", "model", "images", "this demo, one pass: PSNR (dB) / SSIM",
                       "our tables (docs/results)", "paper", "input / ours / ground truth"], rows)
    lines += ["", "Models that stand in for a cell's own:" if notes else ""] + notes
    return lines


def write_zoo_csv(cells: list[dict], out_dir: Path) -> None:
    rows = [[c["table"], c["dataset"], c["setting"], c["method"], c.get("weights", ""), c.get("images", ""),
             f"{c['psnr']:.4f}" if "psnr" in c else "", f"{c['ssim']:.5f}" if "ssim" in c else "",
             "" if c.get("shipped") is None else f"{c['shipped']:.4f}",
             "" if c.get("paper") is None else f"{c['paper']:.2f}", c.get("missing", "")] for c in cells]
    atomic_write_text(out_dir / "zoo.csv", csv_text(
        ["table", "dataset", "setting", "method", "weights", "images", "psnr_one_pass", "ssim_one_pass",
         "psnr_tables", "psnr_paper", "missing"], rows))


# --------------------------------------------------------------------------- leg 2: training


def build_database(max_images: int, max_patches: int, shard_size: int, progress: bool) -> Path:
    from . import patches
    out = paths.DB / DB_NAME
    print(f"[2/2] database: {max_patches} sigma={SIGMA} patches from at most {max_images} BSD300 images "
          f"-> {paths.rel(out)}", flush=True)
    return patches.build_db(TASK, out, max_images=max_images, max_patches=max_patches, noise_repeats=1,
                            shard_size=shard_size, val=True, progress=progress)


def train_demo(train_list: Path, iters: int, minutes: float, progress: bool, blas_core: str | None = None) -> dict:
    from . import train as T
    from .runrecord import RunLayout, RunRecord
    run_dir = paths.RUNS / RUN
    rec = RunRecord.load(run_dir) if RunLayout(run_dir).is_run() else None
    spent = rec.training_seconds() if rec else 0.0
    left = minutes * 60 - spent
    done_iter = (rec.iterations_trained if rec else None) or 0
    print(f"[2/2] training {NET} with bin/caffe: up to {iters} iterations or {minutes:g} min "
          f"({spent / 60:.1f} min spent so far) -> {paths.rel(run_dir)}", flush=True)
    if rec is not None and (left <= 5 or done_iter >= iters):
        print(f"      training budget used up: keeping {done_iter} iterations")
        return rec.to_dict()
    val_list = train_list.parent / "val.txt"
    return T.train(NET, TASK, iters=iters, run=RUN,
                   files=T.TrainFiles(data=str(train_list), val=str(val_list) if val_list.is_file() else None),
                   options=T.SessionOptions(snapshot_every=100, display=10, time_limit=left, progress=progress,
                                            blas_core=blas_core))


def evaluate(run_dir: Path, datasets: Path, ensemble: bool, out_dir: Path) -> dict:
    from . import metrics
    from .datasets import load_set
    from .models import from_run, pick_model
    from .restore import Restorer
    from .runrecord import snapshot_iter
    spec = from_run(run_dir)
    shipped = pick_model(TASK, NET, zoo_only=True)
    zr = Restorer(shipped.deploy, shipped.weights) if shipped else None
    it = snapshot_iter(spec.weights)
    print(f"[2/2] Set12, sigma={SIGMA}: restoring with {paths.rel(spec.weights)} "
          f"({'8-orientation average' if ensemble else 'one forward pass'})", flush=True)
    r = Restorer(spec.deploy, spec.weights)
    rows = []
    shown = None
    from tqdm import tqdm
    images = dict(load_set("Set12", datasets))          # every file checked against data/manifests
    if sorted(images) != SET12:
        raise UserError(f"{datasets / 'Set12'}: expected the images {', '.join(SET12)}, found {', '.join(sorted(images))}")
    for k in tqdm(SET12, unit="img", desc="Set12"):
        clean = images[k]
        if clean.ndim == 3:
            clean = clean[..., 0]
        noisy = metrics.add_noise(clean, SIGMA, f"Set12/{k}")
        out = r.restore(noisy, ensemble=ensemble)
        p_in = metrics.psnr(noisy.astype(np.float64) * 255.0, clean)
        p_out = metrics.psnr(out.astype(np.float64) * 255.0, clean)
        rows.append({"image": k, "name": SET12_NAMES[int(k) - 1], "size": f"{clean.shape[1]}x{clean.shape[0]}",
                     "psnr_noisy": p_in, "psnr_red10": p_out})
        if zr is not None:
            rows[-1]["psnr_zoo"] = metrics.psnr(zr.restore(noisy, ensemble=ensemble).astype(np.float64) * 255.0, clean)
        if k == "05":
            shown = (k, noisy, out, clean, p_in, p_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = side_by_side(out_dir, *shown) if shown else None
    return {"iterations": it, "weights": paths.rel(spec.weights), "rows": rows, "picture": picture,
            "zoo": _zoo_label(shipped) if shipped else None}


def _zoo_label(spec) -> str:
    from . import zoo
    card = zoo.read_card(spec.weights.parent)
    return f"{card['name']} ({card['iterations']:,} iterations)"


def side_by_side(out_dir: Path, k, noisy, out, clean, p_in, p_out) -> Path:
    png = gray_panels([(f"noisy, sigma={SIGMA} ({p_in:.2f} dB)", noisy), (f"RED10 ({p_out:.2f} dB)", out),
                       ("clean", clean / 255.0)], width=4.0, height=4.4, fontsize=12)
    dest = out_dir / f"set12_{k}_{SET12_NAMES[int(k) - 1]}.png"
    atomic_write_bytes(dest, png)
    return dest


def training_section(res: dict, info: dict, out_dir: Path, ensemble: bool, db_info: dict) -> list[str]:
    """Writes training.csv; returns the page's second section."""
    rows = res["rows"]
    avg_in = float(np.mean([r["psnr_noisy"] for r in rows]))
    avg_out = float(np.mean([r["psnr_red10"] for r in rows]))
    zoo = res.get("zoo")
    avg_zoo = float(np.mean([r["psnr_zoo"] for r in rows])) if zoo else None
    table = [[r["image"], r["name"], r["size"], f"{r['psnr_noisy']:.4f}", f"{r['psnr_red10']:.4f}",
              f"{r['psnr_red10'] - r['psnr_noisy']:.4f}", res["iterations"], f"{r['psnr_zoo']:.4f}" if zoo else ""]
             for r in rows]
    table.append(["average", "", "", f"{avg_in:.4f}", f"{avg_out:.4f}", f"{avg_out - avg_in:.4f}",
                  res["iterations"], f"{avg_zoo:.4f}" if zoo else ""])
    atomic_write_text(out_dir / "training.csv",       # the csv module's line ends, \r\n
                      csv_text(["image", "name", "size", "psnr_noisy", "psnr_red10", "gain", "iterations", "psnr_zoo"],
                               table, lineterminator="\r\n"))
    from .runrecord import RunRecord
    minutes = RunRecord.from_dict(paths.RUNS / RUN, info).training_seconds() / 60
    lines = [
        "# Demo, second leg: RED10 trained here for a few minutes, Set12 at sigma = 30",
        "",
        f"**RED10 was trained for {res['iterations']} iterations** (batch {info.get('batch_size')}, "
        f"{res['iterations'] * (info.get('batch_size') or 16)} patches seen, {minutes:.1f} min of training on this "
        f"machine, Adam lr 1e-4) on a small database of {db_info.get('patches')} sigma=30 patches (50x50) "
        f"from BSD300 -- a tiny fraction of the paper's training, so the PSNR is well below the "
        f"paper's Table 1; the point is a real gain over the noisy input, end to end.",
        "",
        f"Noise as in the authors' test code: `clean/255 + 30/255*randn`, float, not clipped; PSNR of the float "
        f"output x 255 against the uint8 clean image, no border cropped. Restoration: "
        f"{'mean of 8 orientations' if ensemble else 'one forward pass (no 8-orientation average)'}, "
        f"weights `{res['weights']}`.",
        "",
        (f"The last column is the zoo's shipped model `{zoo}` on the same noisy images." if zoo else
         "No shipped RED10 sigma=30 model in `models/` to compare with."),
        "",
    ]
    lines += md_table(["image", "name", "size", "noisy input PSNR (dB)", "RED10 PSNR (dB)", "gain (dB)"]
                      + (["zoo model (dB)"] if zoo else []),
                      [[r["image"], r["name"], r["size"], f"{r['psnr_noisy']:.2f}", f"{r['psnr_red10']:.2f}",
                        f"{r['psnr_red10'] - r['psnr_noisy']:+.2f}"] + ([f"{r['psnr_zoo']:.2f}"] if zoo else [])
                       for r in rows]
                      + [["**average**", "", "", f"**{avg_in:.2f}**", f"**{avg_out:.2f}**", f"**{avg_out - avg_in:+.2f}**"]
                         + ([f"**{avg_zoo:.2f}**"] if zoo else [])])
    lines += ["", f"Side by side: `{res['picture'].name}` (noisy / restored / clean)." if res["picture"] else "",
              f"Run folder: `runs/{RUN}/` (log, snapshots, run.json); `make curves RUNS={RUN}` plots its loss.", ""]
    print("\n".join(lines[-(len(rows) + 6):]))
    return lines


def write_page(out_dir: Path, first: list[str], second: list[str]) -> Path:
    dest = out_dir / "results.md"
    atomic_write_text(dest, "\n".join(first + [""] + second).rstrip("\n") + "\n")
    return dest


def cmd_demo(args) -> int:
    t0 = time.monotonic()
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: expected a positive number of images")
    if args.no_progress:
        import os
        os.environ["TQDM_DISABLE"] = "1"             # the cells' progress bars too
    from . import datasets as D
    root = D._root(args.datasets)   # a named folder that does not exist is refused here
    # before any long step: a swapped or damaged shipped image is named now
    for name in ("denoise14", "Set5"):
        D.verify(name, root)
    out_dir = paths.RESULTS / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[1/2] the shipped models (models/) on the images that ship with the project, one pass each",
          flush=True)
    cells = zoo_leg(out_dir, args.datasets, args.limit, not args.no_progress)
    write_zoo_csv(cells, out_dir)
    first = zoo_section(cells, args.limit)
    if args.no_train:
        second = ["# Demo, second leg: training", "", "Not run (`--no-train`)."]
        page = write_page(out_dir, first, second)
        print(f"written: {paths.rel(page)} ({(time.monotonic() - t0) / 60:.1f} min); training leg not run (--no-train)")
        return 0
    try:
        D.source_of("BSD300", root)         # present, or fetched now
    except D.SetMissing as e:
        second = ["# Demo, second leg: training", "", f"Skipped: {e}."]
        page = write_page(out_dir, first, second)
        print(f"[2/2] training leg skipped: {e}")
        print(f"written: {paths.rel(page)} ({(time.monotonic() - t0) / 60:.1f} min)")
        return 0
    page = write_page(out_dir, first, ["# Demo, second leg: training", "",
                                       "Running (`make demo` again resumes it)."])
    print(f"written: {paths.rel(page)} ({(time.monotonic() - t0) / 60:.1f} min); now the training leg",
          flush=True)
    D.verify("Set12", root)
    import os
    os.environ["DATASETS"] = str(root)
    train_list = build_database(args.max_images, args.max_patches, args.shard_size, not args.no_progress)
    from .schedule import read_list
    db_info = {"patches": sum(s.rows for s in read_list(train_list))}
    info = train_demo(train_list, args.iters, args.minutes, not args.no_progress, args.blas_core)
    res = evaluate(paths.RUNS / RUN, root, args.ensemble, out_dir)
    page = write_page(out_dir, first, training_section(res, info, out_dir, args.ensemble, db_info))
    print(f"written: {paths.rel(page)}, zoo.csv, training.csv and the pictures")
    print(f"demo finished in {(time.monotonic() - t0) / 60:.1f} min")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the demo: the shipped models on the shipped images, then a short RED10 training",
                              description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=3000, help="train to at most this iteration (default %(default)s)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time budget, all sessions (default %(default)s)")
    p.add_argument("--max-images", type=int, default=100, help="BSD300 images used (default %(default)s)")
    p.add_argument("--max-patches", type=int, default=16384, help="training patches (default %(default)s)")
    p.add_argument("--shard-size", type=int, default=4096, help="patches per shard (default %(default)s)")
    p.add_argument("--ensemble", action="store_true", help="training leg: average 8 orientations (8x slower)")
    p.add_argument("--limit", type=int, default=None, help="zoo leg: the first N images of each set only (a shortened run)")
    p.add_argument("--no-train", action="store_true", help="the zoo leg only")
    p.add_argument("--blas-core", help="OPENBLAS_CORETYPE for caffe: auto or a core name (default: the environment's)")
    p.add_argument("--datasets", help="benchmark image folder (default $DATASETS, else data/datasets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
