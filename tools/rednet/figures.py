"""The paper's analysis, retrained and drawn: ``bin/python -m rednet figures`` (``make figures``).

Four experiments (docs/nets.md, "The paper's analysis nets", has one recipe each), every net
trained by ``rednet.train`` in its own resumable run folder under ``runs/figures/`` (a run
that already reached the budget is not trained again; RED30 at sigma=70 is shared by 3(b)
and 3(c)):

- ``section2-1-1``: 5- and 10-layer fully convolutional nets against RED10 without skips
  (conv + deconv), sigma=30;
- ``figure3a``: five stride-3 convolutions down to a 1x1 code and five deconvolutions back
  (243x243 patches), without and with skips, sigma=70;
- ``figure3b``: training loss of 10/20/30 layers without skips and 20/30 with, sigma=70;
- ``figure3c``: Block-i-RED against Block-i-He et al., 30 layers, i = 2 and 4, sigma=70.

Every curve of a panel: the same task's database, the same number of iterations, the same
solver seed and data order.  Curves come from each run's own ``train.log``
(:mod:`rednet.logparse`): the training loss, and the validation PSNR of the fixed validation
patches (Caffe's test phase: ``10 log10(C H W / (2 loss))``).  The final points are the 14
images at the panel's sigma, one forward pass, the noise of the tables (for 3(a), whose nets
take sides that are multiples of 243, their top-left 243x243).

Written per experiment: ``<name>.csv`` (the curves), ``<name>.png`` (drawn like the paper's
panel: PSNR for 3(a), 3(c) and 2.1.1, training loss on a log scale for 3(b)); for 3(a) also
``figure3a-images.png`` (one validation image restored by each net); ``summary.csv`` and a
page ``README.md`` (the paper's statement, our numbers at the last iteration, a verdict).
Only the default budgets write ``docs/results/figures/``; any other goes to
``results/figures/``.
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import paths
from .errors import UserError, atomic_path
from .report import md_table

DOCS = paths.ROOT / "docs" / "results" / "figures"
OUT = paths.RESULTS / "figures"
RUNS = paths.RUNS / "figures"
TEST_SET = "denoise14"
#: a difference smaller than this (dB) between two final points is not read as an ordering
MARGIN_DB = 0.05
#: a validation pass every this many iterations (the solvers' 500 gives 5 points in 2,000)
TEST_INTERVAL = 100


@dataclass(frozen=True)
class Curve:
    label: str                    # the paper's legend
    net: str                      # a preset, or a net rendered by `rednet gen` from ``gen``
    gen: tuple = ()               # the gen options of a custom net (docs/nets.md); () for a preset
    skips: bool = True            # for 3(b): the net has skip connections


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    task: str
    iters: int                    # the default budget (iterations, batch 16)
    curves: tuple
    metric: str                   # "psnr" (validation PSNR) or "loss" (training loss, log scale)
    claim: str                    # the paper's statement
    choice: str                   # what the paper leaves open and what we chose
    paper_last: dict = field(default_factory=dict)   # label -> the paper's PSNR at the last iteration

    @property
    def sigma(self) -> int:
        from .tasks import get_task
        return int(get_task(self.task).levels[0])


EXPERIMENTS = {e.name: e for e in (
    Experiment(
        "section2-1-1", "Section 2.1.1: convolution + deconvolution against fully convolutional nets",
        "denoise-s30", 2000,
        (Curve("FCN, 5 layers", "fcn5", ("--preset", "red10", "--depth", "5", "--conv-decoder")),
         Curve("FCN, 10 layers", "fcn10", ("--preset", "red10", "--conv-decoder")),
         Curve("RED10 (5 conv + 5 deconv, no skips)", "red10")),
        "psnr",
        "\"In terms of Peak Signal-to-Noise Ratio (PSNR), using deconvolution works slightly better "
        "than the fully convolutional counterpart.\" (5- and 10-layer fully convolutional nets against "
        "the 10-layer conv + deconv net without skips)",
        "sigma = 30 (the paper gives none; the project's main task)"),
    Experiment(
        "figure3a", "Figure 3(a): recovering details through a 1x1 code, with and without skips",
        "denoise-s70-p243", 3000,
        (Curve("conv + deconv, no skips", "fig3a",
               ("--preset", "red10", "--stride", "3", "--down", "5", "--no-input-residual")),
         Curve("conv + deconv + skips", "fig3a-skip",
               ("--preset", "red10", "--stride", "3", "--down", "5", "--skip", "2", "--no-input-residual"))),
        "psnr",
        "\"it is hard for deconvolution to recover details from only a vector encoding the abstraction "
        "of the input ... However, if we use skip connections, the network can still recover the input\"",
        "the spacing of the skips and the deconvolutions' kernels: skips every two layers (the paper's "
        "RED spacing), kernel 5 stride 3 (docs/nets.md); sigma = 70 and 243x243 patches are the paper's"),
    Experiment(
        "figure3b", "Figure 3(b): training loss, 10/20/30 layers without skips, 20/30 with",
        "denoise-s70", 2000,
        (Curve("10 layers, no skips", "red10", skips=False),
         Curve("20 layers, no skips", "red20-noskip", ("--preset", "red20", "--skip", "none"), skips=False),
         Curve("30 layers, no skips", "red30-noskip", ("--preset", "red30", "--skip", "none"), skips=False),
         Curve("20 layers, skips", "red20"),
         Curve("30 layers, skips", "red30")),
        "loss",
        "\"using skip connections help to back-propagate gradient in training to better fit the end-to-end "
        "mapping\": without skips the deeper nets train to a higher loss, with skips the deeper net to a "
        "lower one",
        "sigma = 70 (the paper gives none; that of 3(a) and 3(c))"),
    Experiment(
        "figure3c", "Figure 3(c): Block-i-RED against Block-i-He et al., 30 layers",
        "denoise-s70", 2000,
        (Curve("Block-2-RED", "red30"),
         Curve("Block-2-He et al.", "block2-he", ("--preset", "red30", "--sequential", "--skip", "2")),
         Curve("Block-4-RED", "block4-red", ("--preset", "red30", "--skip", "4")),
         Curve("Block-4-He et al.", "block4-he", ("--preset", "red30", "--sequential", "--skip", "4"))),
        "psnr",
        "\"our connections often converge to a better optimum\" (the caption's last-iteration PSNRs: "
        "25.08, 24.59, 25.30, 25.21 dB)",
        "30 layers and sigma = 70 (the paper gives neither: the caption's PSNRs lie in Table 1's sigma = 70 "
        "row); the caption's four values are read in the legend's order",
        {"Block-2-RED": 25.08, "Block-2-He et al.": 24.59, "Block-4-RED": 25.30, "Block-4-He et al.": 25.21}),
)}


# --------------------------------------------------------------------------- training
def render_net(curve: Curve, task: str) -> None:
    """A custom net's files in gen/<net>/ and solvers/ (only what changed); presets ship."""
    if not curve.gen:
        return
    from . import netgen
    import argparse
    p = argparse.ArgumentParser()
    netgen.register(p.add_subparsers())
    args = p.parse_args(["gen", *curve.gen, "--name", curve.net])
    netgen.write_net(netgen.config_from_args(args), paths.ROOT / "gen" / curve.net, tasks=[task])


def run_name(curve: Curve, exp: Experiment) -> str:
    return f"{curve.net}_{exp.task}"


def train_curve(curve: Curve, exp: Experiment, iters: int, runs: Path, progress: bool) -> dict:
    from . import train as T
    render_net(curve, exp.task)
    return T.train(curve.net, exp.task, iters=iters, run=run_name(curve, exp), runs_dir=runs,
                   options=T.SessionOptions(progress=progress, test_interval=TEST_INTERVAL))


# --------------------------------------------------------------------------- curves and final points
def curve_rows(run_dir: Path) -> list[dict]:
    """``iteration, train_loss, val_psnr`` of a run, from its train.log."""
    from .logparse import parse_log
    from .runrecord import RunLayout
    from .zoo import val_patch_pixels
    table = parse_log(RunLayout(run_dir).log)
    pix = val_patch_pixels(run_dir)
    return [{"iteration": r.iteration, "train_loss": r.train_loss,
             "val_psnr": 10 * math.log10(pix / (2 * r.test_loss)) if r.test_loss else None}
            for r in table.sorted_rows()]


def test_images(exp: Experiment, datasets, limit: int | None) -> list[tuple[str, np.ndarray]]:
    """The 14 images as the tables read them; for 243-multiple nets their top-left crop."""
    from . import tables as Tb
    images = Tb.load_images(TEST_SET, Tb.EvalConfig(datasets=datasets, limit=limit))
    if exp.task.endswith("-p243"):
        images = [(n, img[: img.shape[0] // 243 * 243, : img.shape[1] // 243 * 243]) for n, img in images]
    return images


def final_point(run_dir: Path, exp: Experiment, images) -> float:
    """Mean PSNR of the run's newest weights on ``images`` at the panel's sigma, one pass,
    with the tables' noise (rednet.metrics.add_noise, the same draws for every net)."""
    from . import metrics
    from .models import from_run
    from .restore import Restorer
    spec = from_run(run_dir)
    r = Restorer(spec.deploy, spec.weights, progress=False)
    out = []
    for name, clean in images:
        noisy = metrics.add_noise(clean, exp.sigma, f"{TEST_SET}/{name}")
        out.append(metrics.denoise_scores(r.restore(noisy.astype(np.float32), False), clean)[0])
    return float(np.mean(out))


def _tail_loss(rows: list[dict], frac: float = 0.1) -> float | None:
    """Mean training loss over the last ``frac`` of the logged iterations (the loss of one
    batch scatters too much to read one value)."""
    tl = [(r["iteration"], r["train_loss"]) for r in rows if r["train_loss"] is not None]
    if not tl:
        return None
    last = tl[-1][0]
    tail = [v for it, v in tl if it >= last * (1 - frac)]
    return float(np.mean(tail))


# --------------------------------------------------------------------------- verdicts
def _order(a: float | None, b: float | None) -> int | None:
    """+1 if a is clearly above b, -1 if clearly below, 0 within the margin, None if unknown."""
    if a is None or b is None:
        return None
    return 0 if abs(a - b) < MARGIN_DB else (1 if a > b else -1)


def verdict(exp: Experiment, res: dict) -> tuple[str, str]:
    """(holds | does not hold | not decidable at this budget, the reason in numbers)."""
    fp = {c.label: res[c.label]["final_psnr"] for c in exp.curves}
    undecided = "not decidable at this budget"
    if exp.name == "section2-1-1":
        red = fp["RED10 (5 conv + 5 deconv, no skips)"]
        o = [_order(red, fp[k]) for k in ("FCN, 5 layers", "FCN, 10 layers")]
        why = (f"RED10 {red:.2f} dB against FCN-5 {fp['FCN, 5 layers']:.2f} and FCN-10 "
               f"{fp['FCN, 10 layers']:.2f} on the 14 images")
        if all(x == 1 for x in o):
            return "holds", why
        if any(x == -1 for x in o):
            return "does not hold", why
        return undecided, why + f" (within {MARGIN_DB} dB)"
    if exp.name == "figure3a":
        a, b = fp["conv + deconv, no skips"], fp["conv + deconv + skips"]
        why = f"with skips {b:.2f} dB, without {a:.2f} dB on the 14 images (243x243 crops)"
        o = _order(b, a)
        if o == 1 and b - a >= 1.0:
            return "holds", why
        if o == -1:
            return "does not hold", why
        return undecided, why + " (the claim needs a clear gap; under 1 dB is not read as one)"
    if exp.name == "figure3b":
        loss = {c.label: res[c.label]["tail_loss"] for c in exp.curves}
        no = [loss[c.label] for c in exp.curves if not c.skips]
        yes = [loss[c.label] for c in exp.curves if c.skips]
        why = ("training loss (mean of the last 10 % of iterations): without skips "
               + " / ".join(f"{v:.3g}" for v in no) + " (10/20/30 layers), with skips "
               + " / ".join(f"{v:.3g}" for v in yes) + " (20/30 layers)")
        deeper_worse = all(b > a for a, b in zip(no, no[1:]))
        deeper_better = all(b < a for a, b in zip(yes, yes[1:]))
        skips_help = all(s < n for s, n in zip(yes, no[1:]))
        if deeper_worse and deeper_better and skips_help:
            return "holds", why
        if not skips_help:
            return "does not hold", why + "; a net with skips is not below its depth without"
        return undecided, why + "; the skips lower the loss at 20 and 30 layers, the ordering by depth is not yet as claimed"
    if exp.name == "figure3c":
        pairs = [("Block-2-RED", "Block-2-He et al."), ("Block-4-RED", "Block-4-He et al.")]
        o = [_order(fp[r], fp[h]) for r, h in pairs]
        why = "; ".join(f"{r} {fp[r]:.2f} dB against {h} {fp[h]:.2f}" for r, h in pairs) + " on the 14 images"
        if all(x == 1 for x in o):
            return "holds", why
        if all(x == -1 for x in o):
            return "does not hold", why
        return undecided, why + (f" (within {MARGIN_DB} dB, or one way for one block size and the other way for "
                                 f"the other)")
    raise UserError(f"experiment {exp.name!r}: no verdict rule")


# --------------------------------------------------------------------------- drawing
def draw(exp: Experiment, res: dict, iters: int, machine: str, dest: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    for k, c in enumerate(exp.curves):
        rows = res[c.label]["rows"]
        color = f"C{k}"
        if exp.metric == "loss":
            pts = [(r["iteration"], r["train_loss"]) for r in rows if r["train_loss"] is not None]
            if pts:
                it, v = zip(*pts)
                ax.plot(it, v, color=color, lw=0.5, alpha=0.3)
                w = max(1, len(v) // 25)
                sm = np.convolve(v, np.ones(w) / w, mode="valid")
                ax.plot(it[w - 1:], sm, color=color, lw=1.6, label=c.label, marker="o" if len(v) < 10 else None,
                        ms=3)
        else:
            pts = [(r["iteration"], r["val_psnr"]) for r in rows if r["val_psnr"] is not None]
            if pts:
                ax.plot(*zip(*pts), color=color, lw=1.5, marker="o", ms=3, label=c.label)
    if exp.metric == "loss":
        ax.set_yscale("log")
        ax.set_ylabel("training loss (Caffe EuclideanLoss; line: moving mean)")
    else:
        ax.set_ylabel("PSNR (dB), validation patches")
    ax.set_xlabel("iteration")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(exp.title, fontsize=9)
    fig.text(0.01, 0.005, f"{iters:,} iterations each, batch 16, sigma={exp.sigma}, Adam lr 1e-4; {machine}",
             fontsize=6.5, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _save(fig, dest)


def draw_images(exp: Experiment, runs: Path, datasets, dest: Path) -> None:
    """One validation image (Set5 baby, its top-left 243x243) at the panel's sigma restored by
    each net of 3(a), beside the noisy input and the clean image."""
    from . import metrics
    from .datasets import load_set
    from .imageio_ml import to_gray
    from .models import from_run
    from .pictures import gray_panels
    from .restore import Restorer
    clean = to_gray(dict(load_set("Set5", datasets))["baby"])[:243, :243]
    noisy = metrics.add_noise(clean, exp.sigma, "Set5/baby")
    panels = [(f"noisy, sigma={exp.sigma}: {metrics.denoise_scores(noisy, clean)[0]:.2f} dB", noisy)]
    for c in exp.curves:
        spec = from_run(runs / run_name(c, exp))
        out = Restorer(spec.deploy, spec.weights, progress=False).restore(noisy.astype(np.float32), False)
        panels.append((f"{c.label}: {metrics.denoise_scores(out, clean)[0]:.2f} dB", out))
    panels.append(("clean", clean / 255.0))
    _STAGED[dest] = gray_panels(panels, "Set5 baby (a validation image), top-left 243x243", height=3.4,
                                fontsize=8)


def _save(fig, dest: Path) -> None:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    _STAGED[dest] = buf.getvalue()


_STAGED: dict[Path, bytes] = {}


def curves_csv(exp: Experiment, res: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["curve", "net", "run", "iteration", "train_loss", "val_psnr"])
    for c in exp.curves:
        for r in res[c.label]["rows"]:
            w.writerow([c.label, c.net, run_name(c, exp), r["iteration"],
                        "" if r["train_loss"] is None else f"{r['train_loss']:.6g}",
                        "" if r["val_psnr"] is None else f"{r['val_psnr']:.4f}"])
    return buf.getvalue()


# --------------------------------------------------------------------------- the page
def machine_label() -> str:
    from .paths import caffe_build
    from .provenance import cpu_model
    return f"{cpu_model() or 'unknown CPU'}, {caffe_build()} build, {time.strftime('%Y-%m-%d')}"


def page(results: dict, budgets: dict, machine: str, limit: int | None) -> str:
    lines = ["# The paper's analysis, retrained: Figure 3 (a, b, c) and Section 2.1.1", "",
             f"Made by `make figures` ({machine}). Every net of a panel: the same database, "
             "iterations, solver seed and data order; Adam at the paper's lr 1e-4, batch 16, 64 maps. "
             "Curves from each run's `train.log`; the validation PSNR is that of the fixed validation "
             "patches (Caffe's test phase); the final points are the 14 images at the panel's sigma, "
             "one forward pass, the tables' noise draws. A difference under "
             f"{MARGIN_DB} dB is not read as an ordering. Recipes: [docs/nets.md](../../nets.md).",
             ""]
    if limit:
        lines += [f"**Shortened run: the first {limit} of the 14 images.**", ""]
    for name, res in results.items():
        exp = EXPERIMENTS[name]
        v, why = res["verdict"]
        lines += [f"## {exp.title}", "", f"![{name}]({name}.png)", "",
                  f"**The paper:** {exp.claim}", "", f"**Where the paper is silent:** {exp.choice}.", ""]
        if name == "figure3a":
            lines += ["![figure3a-images](figure3a-images.png)", ""]
        rows = []
        for c in exp.curves:
            r = res["curves"][c.label]
            vp = [x["val_psnr"] for x in r["rows"] if x["val_psnr"] is not None]
            paper = exp.paper_last.get(c.label)
            rows.append([c.label, f"`{c.net}`", f"{r['iterations']:,}",
                         "" if r["tail_loss"] is None else f"{r['tail_loss']:.4g}",
                         f"{vp[-1]:.2f}" if vp else "", f"{r['final_psnr']:.2f}",
                         "" if paper is None else f"{paper:.2f}"])
        lines += md_table(["curve", "net", "iterations", "training loss (last 10 %)", "validation PSNR (dB)",
                           f"14 images, sigma={exp.sigma} (dB)", "paper (dB)"], rows)
        lines += ["", f"**Verdict at {budgets[name]:,} iterations: {v}.** {why}.", "",
                  f"Data: [{name}.csv]({name}.csv).", ""]
    return "\n".join(lines).rstrip() + "\n"


def summary_csv(results: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["experiment", "curve", "net", "iterations", "tail_train_loss", "last_val_psnr", "final_psnr_14",
                "paper_last_psnr", "verdict"])
    for name, res in results.items():
        exp = EXPERIMENTS[name]
        for c in exp.curves:
            r = res["curves"][c.label]
            vp = [x["val_psnr"] for x in r["rows"] if x["val_psnr"] is not None]
            w.writerow([name, c.label, c.net, r["iterations"],
                        "" if r["tail_loss"] is None else f"{r['tail_loss']:.6g}",
                        f"{vp[-1]:.4f}" if vp else "", f"{r['final_psnr']:.4f}",
                        exp.paper_last.get(c.label, ""), res["verdict"][0]])
    return buf.getvalue()


# --------------------------------------------------------------------------- the command
def run(names: list[str], iters: int | None, limit: int | None, datasets, out: Path | None,
        progress: bool = True) -> Path:
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise UserError(f"FIGURES={','.join(unknown)}: expected some of {', '.join(EXPERIMENTS)}")
    if iters is not None and iters < 1:
        raise UserError(f"FIGURES_ITERS={iters}: expected a positive number of iterations")
    if limit is not None and limit < 1:
        raise UserError(f"LIMIT={limit}: expected a positive number of images")
    default = iters is None and limit is None and list(names) == list(EXPERIMENTS)
    if out is None:
        out = DOCS if default else OUT
    elif Path(out).resolve() == DOCS.resolve() and not default:
        raise UserError(f"{paths.rel(DOCS)}: holds only the default run (all four experiments at their "
                        f"budgets, all 14 images); a shortened one goes to {paths.rel(OUT)}")
    budgets = {n: iters or EXPERIMENTS[n].iters for n in names}
    runs = RUNS
    # train every net first (each resumes or is skipped when done): the slow part
    for n in names:
        exp = EXPERIMENTS[n]
        for c in exp.curves:
            print(f"[{n}] {c.label}: {c.net} on {exp.task} to iteration {budgets[n]:,}", flush=True)
            rec = train_curve(c, exp, budgets[n], runs, progress)
            if int(rec.get("iterations_trained") or 0) < budgets[n]:
                raise UserError(f"{paths.rel(runs / run_name(c, exp))}: stopped at iteration "
                                f"{rec.get('iterations_trained')} of {budgets[n]} ({rec.get('status')}); "
                                f"`make figures` again resumes it")
    machine = machine_label()
    _STAGED.clear()
    results = {}
    for n in names:
        exp = EXPERIMENTS[n]
        images = test_images(exp, datasets, limit)
        res = {"curves": {}}
        for c in exp.curves:
            rd = runs / run_name(c, exp)
            rows = [r for r in curve_rows(rd) if r["iteration"] <= budgets[n]]
            from .runrecord import RunRecord
            res["curves"][c.label] = {"rows": rows, "tail_loss": _tail_loss(rows),
                                      "iterations": int(RunRecord.load(rd).iterations_trained or 0),
                                      "final_psnr": final_point(rd, exp, images)}
            print(f"[{n}] {c.label}: {res['curves'][c.label]['final_psnr']:.2f} dB on the 14 images", flush=True)
        res["verdict"] = verdict(exp, res["curves"])
        print(f"[{n}] verdict: {res['verdict'][0]} ({res['verdict'][1]})", flush=True)
        draw(exp, res["curves"], budgets[n], machine, out / f"{n}.png")
        if n == "figure3a":
            draw_images(exp, runs, datasets, out / "figure3a-images.png")
        _STAGED[out / f"{n}.csv"] = curves_csv(exp, res["curves"]).encode()
        results[n] = res
    _STAGED[out / "summary.csv"] = summary_csv(results).encode()
    _STAGED[out / "README.md"] = page(results, budgets, machine, limit).encode()
    _write_all(out)
    return out


def _write_all(out: Path) -> None:
    """Every file of the page at once: nothing of it is replaced unless all were written."""
    import contextlib
    try:
        with contextlib.ExitStack() as stack:
            for dest, data in _STAGED.items():
                stack.enter_context(atomic_path(dest)).write_bytes(data)
    except OSError as e:
        raise UserError(f"{paths.rel(out)}: cannot write the figures there ({e.strerror}); nothing of them "
                        f"was replaced") from None


def cmd_figures(args) -> int:
    names = [n.strip() for n in args.figures.split(",")] if args.figures else list(EXPERIMENTS)
    out = run(names, args.iters, args.limit, args.datasets, Path(args.out) if args.out else None,
              progress=not args.no_progress)
    print(f"written: {paths.rel(out)}/README.md and its panels")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("figures", help="train and draw Figure 3 (a, b, c) and Section 2.1.1",
                              description=__doc__.splitlines()[0])
    p.add_argument("--figures", help=f"comma-separated experiments (default all: {','.join(EXPERIMENTS)})")
    p.add_argument("--iters", type=int, default=None,
                   help="iterations for every net instead of the budgets (writes results/figures/)")
    p.add_argument("--limit", type=int, default=None, help="the first N of the 14 images only (results/figures/)")
    p.add_argument("--datasets", help="benchmark image folder (default $DATASETS, else data/datasets)")
    p.add_argument("--out", help="output folder (default docs/results/figures for the default run, "
                                 "else results/figures)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_figures)
