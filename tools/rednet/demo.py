"""The end-to-end demo: ``bin/python -m rednet demo`` (``make demo``), ~15 minutes on 2 cores.

1. builds a small sigma=30 denoising database from BSD300 (``rednet.patches.build_db``,
   ``--max-patches`` patches from ``--max-images`` images, one noise draw each) in
   ``data/db/demo-denoise-s30/``;
2. trains RED10 on it with the stock caffe binary (``rednet.train``: run ``runs/demo/``,
   the paper's Adam solver ``solvers/red10_denoise-s30.prototxt``) until ``--iters``
   iterations or ``--minutes`` of training, whichever comes first;
3. restores the 12 Set12 images at sigma=30 with pycaffe (``rednet.restore.Restorer``, one
   forward pass; the paper's 8-orientation average with ``--ensemble``), noise as the
   authors' test code adds it (``rednet.metrics.add_noise``: float, unclipped);
4. restores the same noisy images with the shipped model of the zoo (``models/``, RED10
   sigma=30, trained for hours) where there is one, for comparison;
5. writes ``results/demo/results.md`` and ``results.csv`` (PSNR of the noisy input and of
   the trained RED10 per image, the average, and how many iterations were trained) and
   ``results/demo/<image>.png`` (noisy / restored / clean side by side).

Every step resumes: the database builder keeps complete shards, the run resumes from its
newest snapshot, and the training time already spent counts against ``--minutes``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import paths
from .errors import UserError, atomic_path, atomic_write_text
from .report import csv_text, md_table

SIGMA = 30
TASK = f"denoise-s{SIGMA}"
NET = "red10"
RUN = "demo"
DB_NAME = f"demo-{TASK}"
SET12 = [f"{i:02d}" for i in range(1, 13)]
SET12_NAMES = ["C.man", "House", "Peppers", "Starfish", "Monarch", "Airplane", "Parrot", "Lena",
               "Barbara", "Boat", "Man", "Couple"]


def build_database(max_images: int, max_patches: int, shard_size: int, progress: bool) -> Path:
    from . import patches
    out = paths.DB / DB_NAME
    print(f"[1/3] database: {max_patches} sigma={SIGMA} patches from at most {max_images} BSD300 images "
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
    print(f"[2/3] training {NET} with bin/caffe: up to {iters} iterations or {minutes:g} min "
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
    print(f"[3/3] Set12, sigma={SIGMA}: restoring with {paths.rel(spec.weights)} "
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=100)
    for ax, img, title in zip(axes, (noisy, out, clean / 255.0),
                              (f"noisy, sigma={SIGMA} ({p_in:.2f} dB)", f"RED10 ({p_out:.2f} dB)", "clean")):
        ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    dest = out_dir / f"set12_{k}_{SET12_NAMES[int(k) - 1]}.png"
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return dest


def write_results(res: dict, info: dict, out_dir: Path, ensemble: bool, db_info: dict) -> None:
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
    atomic_write_text(out_dir / "results.csv",       # the csv module's line ends, \r\n
                      csv_text(["image", "name", "size", "psnr_noisy", "psnr_red10", "gain", "iterations", "psnr_zoo"],
                               table, lineterminator="\r\n"))
    from .runrecord import RunRecord
    minutes = RunRecord.from_dict(paths.RUNS / RUN, info).training_seconds() / 60
    lines = [
        "# Demo: RED10 trained for a few minutes with stock Caffe, Set12 at sigma = 30",
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
    atomic_write_text(out_dir / "results.md", "\n".join(lines))
    print("\n".join(lines[-(len(rows) + 6):]))
    print(f"written: {paths.rel(out_dir / 'results.md')}, results.csv, {res['picture'].name if res['picture'] else ''}")


def cmd_demo(args) -> int:
    t0 = time.monotonic()
    datasets = paths.datasets_dir(args.datasets)
    if not (datasets / "Set12").is_dir() or not (datasets / "BSD300").is_dir():
        raise UserError(f"DATASETS={datasets}: expected the benchmark images (BSD300/, Set12/); set DATASETS=...")
    from .datasets import verify
    verify("Set12", datasets)      # before any long step: a swapped or damaged file is named now
    import os
    os.environ["DATASETS"] = str(datasets)
    train_list = build_database(args.max_images, args.max_patches, args.shard_size, not args.no_progress)
    from .schedule import read_list
    db_info = {"patches": sum(s.rows for s in read_list(train_list))}
    info = train_demo(train_list, args.iters, args.minutes, not args.no_progress, args.blas_core)
    out_dir = paths.RESULTS / "demo"
    res = evaluate(paths.RUNS / RUN, datasets, args.ensemble, out_dir)
    write_results(res, info, out_dir, args.ensemble, db_info)
    print(f"demo finished in {(time.monotonic() - t0) / 60:.1f} min")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the end-to-end demo: small db, RED10 in stock caffe, Set12 PSNR",
                              description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=3000, help="train to at most this iteration (default %(default)s)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time budget, all sessions (default %(default)s)")
    p.add_argument("--max-images", type=int, default=100, help="BSD300 images used (default %(default)s)")
    p.add_argument("--max-patches", type=int, default=16384, help="training patches (default %(default)s)")
    p.add_argument("--shard-size", type=int, default=4096, help="patches per shard (default %(default)s)")
    p.add_argument("--ensemble", action="store_true", help="average 8 orientations (8x slower evaluation)")
    p.add_argument("--blas-core", help="OPENBLAS_CORETYPE for caffe: auto or a core name (default: the environment's)")
    p.add_argument("--datasets", help="benchmark image folder (default $DATASETS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
