"""Regenerate Tables 1-7 of the paper: ``bin/python -m rednet tables`` (``make tables``).

For every cell of every table (dataset, noise level or scale, method) this writes the paper's
number (``data/paper_tables.csv``) beside ours and the difference:

- ``results/tables.md``: each table in the paper's layout, ``paper / ours (difference)``,
  then the list of cells that have no result and why (no model yet, method not
  implemented here, BM3D switched off). Every cell of the paper has its value in
  ``data/paper_tables.csv``, so methods not computed here (EPLL, SRCNN, ...) show
  ``paper / —``.
- ``results/tables.csv``: one row per cell and source,
  ``table,dataset,setting,method,source,psnr,ssim`` (``source`` is ``paper`` or ``ours``).
- ``results/per_image/t<table>_<dataset>_<setting>_<method>.csv``: per-image scores, with a
  ``.json`` beside it saying exactly what produced it; a later run reuses a cell whose
  record matches (so an interrupted run resumes, and adding one model only computes its cells).

What is computed ("ours"): the RED-Net columns from whatever trained models exist (chosen
by :func:`rednet.models.pick_model`, the order ``restore`` and the demo use too: the
column's nets in order, the zoo ``models/<name>/`` before ``runs/<name>/``), bicubic interpolation for the SR tables (always; a row the paper does not
have), and BM3D for the denoising tables when asked (``--bm3d``, PyPI ``bm3d``, cached under
``data/cache/bm3d/``). Protocols and every convention: ``docs/evaluation.md``.

Structure: the methods that can fill a cell are registered by name in
:data:`METHOD_REGISTRY` (as BasicSR's ``METRIC_REGISTRY``); :func:`evaluate_cell` looks the
cell's method up and returns a typed result, a :class:`Cell` (per-image rows and what made
them) or a :class:`Missing` (:class:`NoModel`, :class:`NotComputedHere`, :class:`SwitchedOff`,
:class:`NoImages`); :func:`render_md` and :func:`render_csv` turn the results into the files,
with the tables written by :mod:`rednet.report`.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import matlab, metrics, paths
from .errors import UserError, atomic_write_text, check_writable
from .lookup import Registry
from .paths import CACHE, DATA, RESULTS, datasets_dir, rel
from .report import csv_text, md_table
from .tasks import SCALES, SIGMAS

PAPER_CSV = DATA / "paper_tables.csv"
PAPER_COLUMNS = ("table", "dataset", "setting", "method", "psnr", "ssim", "status", "source")
CSV_COLUMNS = ("table", "dataset", "setting", "method", "source", "psnr", "ssim")

DENOISE_METHODS = ("BM3D", "EPLL", "NCSR", "PCLR", "PGPD", "WNNM", "RED10", "RED20", "RED30")
SR_METHODS = ("SRCNN", "NBSRF", "CSCN", "CSC", "TSE", "ARFL+", "RED10", "RED20", "RED30")
#: the nets tried, in order, for each RED column (first with a model wins; the order of
#: rednet.models.NET_PREFERENCE)
DEFAULT_RED_NETS = {"RED10": ("red10",), "RED20": ("red20",), "RED30": ("red30", "red30-official")}
DEFAULT_BSD200_SCALE = 0.5

#: published bicubic averages (SRCNN/VDSR protocol), quoted in VDSR (Kim et al., CVPR 2016) Table 2
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
    ("BSD100", 2): (29.56, 0.8431), ("BSD100", 3): (27.21, 0.7385), ("BSD100", 4): (25.96, 0.6675),
}


@dataclass(frozen=True)
class TableSpec:
    number: int
    kind: str                     # "denoise" or "sr"
    datasets: tuple
    levels: tuple
    methods: tuple
    caption: str
    single_model: bool = False

    def settings(self) -> list[str]:
        return [setting_name(self.kind, lv) for lv in self.levels]

    def cells(self):
        """(dataset, setting, method) of every cell, in the table's order."""
        for d in self.datasets:
            for s in self.settings():
                for m in self.methods:
                    yield d, s, m


TABLES: dict[int, TableSpec] = {t.number: t for t in (
    TableSpec(1, "denoise", ("denoise14",), SIGMAS, DENOISE_METHODS,
              "Average PSNR and SSIM of denoising on the 14 images, sigma 10, 30, 50, 70"),
    TableSpec(2, "denoise", ("BSD200",), SIGMAS, DENOISE_METHODS,
              "Average PSNR and SSIM of denoising on BSD200 (gray, resized), sigma 10, 30, 50, 70"),
    TableSpec(3, "sr", ("Set5",), SCALES, SR_METHODS,
              "Average PSNR and SSIM of super-resolution on Set5, scale 2, 3, 4"),
    TableSpec(4, "sr", ("Set14",), SCALES, SR_METHODS,
              "Average PSNR and SSIM of super-resolution on Set14, scale 2, 3, 4"),
    TableSpec(5, "sr", ("BSD100",), SCALES, SR_METHODS,
              "Average PSNR and SSIM of super-resolution on BSD100, scale 2, 3, 4"),
    TableSpec(6, "denoise", ("denoise14", "BSD200"), SIGMAS, ("RED30",),
              "Denoising with a single RED30 for all four noise levels", single_model=True),
    TableSpec(7, "sr", ("Set5", "Set14", "BSD100"), SCALES, ("RED30",),
              "Super-resolution with a single RED30 for all three scales", single_model=True),
)}


def setting_name(kind: str, level) -> str:
    return f"sigma={level}" if kind == "denoise" else f"x{level}"


def level_of(setting: str) -> int:
    return int(setting.split("=")[1]) if setting.startswith("sigma=") else int(setting[1:])


# --------------------------------------------------------------------------- paper numbers
def read_paper(path: Path = PAPER_CSV) -> dict[tuple, dict]:
    """``(table, dataset, setting, method) -> row`` of ``data/paper_tables.csv``; psnr/ssim are
    floats or None (an empty field; the committed file has none). Refuses a file whose columns
    or keys are wrong."""
    if not path.is_file():
        raise UserError(f"{rel(path)}: the paper's numbers are missing")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    out = {}
    for i, r in enumerate(rows, 2):
        if tuple(r.keys()) != PAPER_COLUMNS:
            raise UserError(f"{rel(path)}: columns must be {','.join(PAPER_COLUMNS)}")
        key = (int(r["table"]), r["dataset"], r["setting"], r["method"])
        if key in out:
            raise UserError(f"{rel(path)}: row {i}: duplicate cell {key}")
        def num(v, name):
            if v.strip() == "":
                return None
            try:
                return float(v)
            except ValueError:
                raise UserError(f"{rel(path)}: row {i}: {name}={v!r} is not a number") from None
        out[key] = dict(r, psnr=num(r["psnr"], "psnr"), ssim=num(r["ssim"], "ssim"))
    return out


# --------------------------------------------------------------------------- test images
@dataclass
class EvalConfig:
    datasets: Path | None = None
    ensemble: bool = True
    no_ensemble_tables: tuple = ()   # tables computed with one forward pass even when ensemble is on
    sr_protocol: str = "authors"
    bsd200_scale: float = DEFAULT_BSD200_SCALE
    denoise14_extras: tuple | None = None
    bm3d: bool = False
    limit: int | None = None
    seed: int = 0
    max_memory_mb: float = 2048
    red_nets: dict = field(default_factory=lambda: dict(DEFAULT_RED_NETS))
    zoo_only: bool = False         # only the shipped models of models/, not runs/
    models_root: Path | None = None  # the zoo folders searched instead of models/ (checkpoints/, candidates)
    tables: tuple = tuple(TABLES)
    out: Path = RESULTS

    def ensemble_for(self, table: int) -> bool:
        """Whether Table ``table``'s RED cells average the 8 orientations."""
        return self.ensemble and table not in self.no_ensemble_tables

    def dataset_params(self, dataset: str) -> dict:
        p = {"dataset": dataset, "limit": self.limit}
        if dataset == "BSD200":
            p["gray"] = "rgb2gray"
            p["scale"] = self.bsd200_scale
        if dataset == "denoise14":
            from .datasets import DENOISE14_DEFAULT_EXTRAS
            p["extras"] = list(self.denoise14_extras or DENOISE14_DEFAULT_EXTRAS)
        return p


_SETS: dict = {}
_NOT_HERE: set = set()       # (set, datasets) found missing and not fetched in this process: tried once


def load_images(dataset: str, cfg: EvalConfig) -> list[tuple[str, np.ndarray]]:
    """``[(name, uint8 image)]`` of a test set as the tables use it (sha256-verified).

    BSD200: MATLAB ``rgb2gray`` then MATLAB-bicubic ``imresize(.., bsd200_scale)`` of the
    uint8 image (uint8 out, as MATLAB). denoise14: Set12 plus two extras, 512x512 halved.
    """
    from . import datasets as ds
    from .imageio_ml import to_gray
    key = json.dumps(cfg.dataset_params(dataset), sort_keys=True) + str(cfg.datasets)
    if key in _SETS:
        return _SETS[key]
    if (dataset, str(cfg.datasets)) in _NOT_HERE:
        from .datasets import SetMissing
        raise SetMissing(f"{dataset}: not available (said above)")
    root = datasets_dir(cfg.datasets)
    if dataset == "denoise14":
        images = ds.load_set("denoise14", root, extras=cfg.denoise14_extras)
    elif dataset == "BSD200":
        if not 0 < cfg.bsd200_scale <= 1:
            raise UserError(f"--bsd200-scale {cfg.bsd200_scale}: expected a factor in (0, 1]")
        images = []
        for name, img in ds.load_set("BSD200", root):
            g = to_gray(img)
            images.append((name, g if cfg.bsd200_scale == 1 else matlab.imresize(g, cfg.bsd200_scale)))
    else:
        images = ds.load_set(dataset, root)
    if cfg.limit:
        images = images[: cfg.limit]
    _SETS[key] = images
    return images


# --------------------------------------------------------------------------- typed results
@dataclass(frozen=True)
class Cell:
    """A computed cell: its per-image rows (``image``, ``psnr``, ``ssim``, and for SR the
    scores under both protocols) and what produced them."""
    rows: list
    what: str

    def mean(self, column: str) -> float:
        return float(np.mean([r[column] for r in self.rows]))

    @property
    def psnr(self) -> float:
        return self.mean("psnr")

    @property
    def ssim(self) -> float:
        return self.mean("ssim")

    @property
    def provenance(self) -> str:
        return f"{self.what}, {len(self.rows)} images"


class Missing:
    """Why a cell has no result. ``text`` (and ``str()``) is the sentence tables.md shows."""
    text: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class NoModel(Missing):
    """A RED column without a trained model for the cell's task."""
    task: str
    nets: tuple
    make: str            # the command that trains one

    @property
    def hint(self) -> str:
        return f"{self.make}, or a zoo model for {self.task} in models/<name>/"

    @property
    def text(self) -> str:
        return f"no model for {self.task} with net {' or '.join(self.nets)} ({self.hint})"


@dataclass(frozen=True)
class NotComputedHere(Missing):
    """A method of the paper's tables this project does not run (EPLL, SRCNN, ...)."""
    text: str = "not implemented in this project (paper value only)"


@dataclass(frozen=True)
class SwitchedOff(Missing):
    """A method that runs only when asked (BM3D)."""
    switch: str

    @property
    def text(self) -> str:
        return f"off ({self.switch})"


@dataclass(frozen=True)
class NoImages(Missing):
    dataset: str

    @property
    def text(self) -> str:
        return f"no images in {self.dataset}"


@dataclass(frozen=True)
class SetNotHere(Missing):
    """A test set that is neither in the datasets folder nor could be fetched (offline)."""
    dataset: str

    @property
    def text(self) -> str:
        return (f"{self.dataset} is not in the datasets folder and could not be fetched "
                f"(`make datasets`, docs/data.md)")


# --------------------------------------------------------------------------- methods
class Bm3dCache:
    """BM3D outputs (float32 .npy) cached per dataset, image and sigma under data/cache/bm3d/."""

    def __init__(self, root: Path = CACHE / "bm3d"):
        try:
            import bm3d  # noqa: F401
        except ImportError:
            raise UserError("BM3D: the PyPI package bm3d is not installed "
                            "(make tables BM3D=1 installs requirements-bm3d.txt)") from None
        self.root = root

    def __call__(self, noisy: np.ndarray, sigma: float, tag: str) -> np.ndarray:
        import bm3d
        path = self.root / f"{tag}.npy"
        if path.is_file():
            out = np.load(path)
            if out.shape == noisy.shape:
                return out
        out = np.asarray(bm3d.bm3d(noisy.astype(np.float64), sigma_psd=sigma / 255.0), dtype=np.float32)
        from .errors import atomic_path
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, out)
        return out


def find_red_model(method: str, spec: TableSpec, level: int, cfg: EvalConfig):
    """The ModelSpec for a RED column at one level, or (None, :class:`NoModel`).

    A RED30 cell of Tables 1-5 without a model for its level is filled from the single model
    trained on all levels (Tables 6-7's), when there is one; its ``task`` says so.
    """
    from .models import mixed_task, pick_model
    mixed = mixed_task(spec.kind)
    task = mixed if spec.single_model else (f"denoise-s{level}" if spec.kind == "denoise" else f"sr-x{level}")
    nets = cfg.red_nets[method]
    m = pick_model(task, nets=nets, zoo_only=cfg.zoo_only, root=cfg.models_root)
    if m is not None:
        return m, None
    if method == "RED30" and not spec.single_model:
        m = pick_model(mixed, nets=nets, zoo_only=cfg.zoo_only, root=cfg.models_root)
        if m is not None:
            return m, None
    kind, lvl = (("denoise", f"SIGMA={'mixed' if spec.single_model else level}") if spec.kind == "denoise"
                 else ("sr", f"SCALE={'mixed' if spec.single_model else level}"))
    return None, NoModel(task, tuple(nets), f"make train NET={nets[0]} TASK={kind} {lvl}")


def _file_id(p: Path) -> dict:
    """What a cached cell depends on in a file: its path and its content (sha256).

    Content, not size and mtime: a retrained or copied-in model of the same shape has the
    same size, and can carry the same whole-second (or coarse-tick) mtime as the old one.
    """
    from .datasets import sha256_file
    return {"path": rel(p), "sha256": sha256_file(p)}


# --------------------------------------------------------------------------- evaluating one cell
def _score_denoise(images, sigma, restore_fn, dataset, cfg, desc):
    from tqdm import tqdm
    rows = []
    for name, clean in tqdm(images, desc=desc, unit="img", leave=False):
        if clean.ndim != 2:
            raise UserError(f"{dataset}/{name}: denoising tables expect gray images")
        noisy = metrics.add_noise(clean, sigma, f"{dataset}/{name}", cfg.seed)
        out = restore_fn(noisy, name)
        p, s = metrics.denoise_scores(out, clean)
        rows.append({"image": name, "psnr": p, "ssim": s})
    return rows


def _score_sr(images, scale, restore_fn, cfg, desc):
    from tqdm import tqdm
    rows = []
    for name, img in tqdm(images, desc=desc, unit="img", leave=False):
        hr, up = metrics.sr_pair(img, scale)
        out = restore_fn(up, name)
        pa, sa = metrics.sr_scores(out, hr, scale, "authors")
        pc, sc = metrics.sr_scores(out, hr, scale, "srcnn")
        p, s = (pa, sa) if cfg.sr_protocol == "authors" else (pc, sc)
        rows.append({"image": name, "psnr": p, "ssim": s, "psnr_authors": pa, "ssim_authors": sa,
                     "psnr_srcnn": pc, "ssim_srcnn": sc})
    return rows


#: the modules whose code decides a cell's numbers (noise, bicubic, colour conversion, the
#: forward pass and its ensemble, the metrics), with :func:`load_images` and the two scoring
#: functions above: a cell made by other code is never reused
EVAL_MODULES = ("metrics", "matlab", "imageio_ml", "restore")


def eval_code_id() -> str:
    """A sha256 (16 hex digits) of the code that computes a cell, part of every cell's record,
    so that a cached or shipped cell made before a change to that code is computed again."""
    global _EVAL_CODE
    if _EVAL_CODE is None:
        import inspect
        h = hashlib.sha256()
        for mod in EVAL_MODULES:
            h.update((Path(__file__).parent / f"{mod}.py").read_bytes())
        for fn in (load_images, _score_denoise, _score_sr):
            h.update(inspect.getsource(fn).encode())
        _EVAL_CODE = h.hexdigest()[:16]
    return _EVAL_CODE


_EVAL_CODE: str | None = None


def _write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (v if k == "image" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]


def cell_path(cfg: EvalConfig, table: int | str, dataset: str, setting: str, method: str) -> Path:
    safe = method.replace("+", "plus")
    return cfg.out / "per_image" / f"t{table}_{dataset}_{setting.replace('=', '')}_{safe}.csv"


#: the methods that fill cells, by column name: ``f(job) -> Prepared | Missing``. A column
#: of the paper's tables that is not registered (EPLL, SRCNN, ...) shows the paper's value only.
METHOD_REGISTRY = Registry("method")


@dataclass(frozen=True)
class CellJob:
    """One cell to evaluate, as a method sees it."""
    spec: TableSpec
    dataset: str
    setting: str
    method: str
    cfg: EvalConfig
    restorers: dict       # Restorers (and their files' hashes) already made in this run, by model

    @property
    def level(self) -> int:
        return level_of(self.setting)


@dataclass(frozen=True)
class Prepared:
    """What a method gives for a cell: the record its cached result depends on, the function
    that restores one network input (``(input, image name) -> output``), and a description."""
    record: dict
    restore: Callable
    what: str


@METHOD_REGISTRY.register("Bicubic")
def _bicubic(job: CellJob) -> Prepared:
    """The network input itself: MATLAB-bicubic upscaling (SR tables only)."""
    return Prepared({"method": "bicubic (MATLAB imresize)"}, lambda up, name: up, "MATLAB bicubic")


@METHOD_REGISTRY.register("BM3D")
def _bm3d(job: CellJob) -> Prepared | Missing:
    """PyPI bm3d on the same noisy images, cached (``--bm3d``)."""
    cfg, level = job.cfg, job.level
    if not cfg.bm3d:
        return SwitchedOff("make tables BM3D=1")
    cache = Bm3dCache(CACHE / "bm3d")
    import bm3d
    return Prepared({"method": "bm3d", "bm3d_version": getattr(bm3d, "__version__", "?")},
                    lambda noisy, name: cache(noisy, level, _stable_tag(cfg, job.dataset, name, level)),
                    "PyPI bm3d")


def _red(job: CellJob) -> Prepared | Missing:
    """A trained RED net (:func:`find_red_model`) through pycaffe, with the 8-orientation
    ensemble where the configuration asks for it."""
    spec, cfg, method, restorers = job.spec, job.cfg, job.method, job.restorers
    model, missing = find_red_model(method, spec, job.level, cfg)
    if model is None:
        return missing
    key = (str(model.deploy), str(model.weights))
    if key not in restorers:   # the net and the files' hashes, once per model and run
        from .restore import Restorer
        restorers[key] = (Restorer(model.deploy, model.weights, max_memory_mb=cfg.max_memory_mb),
                          {"weights": _file_id(model.weights), "deploy": _file_id(model.deploy)})
    r, file_ids = restorers[key]
    ens = cfg.ensemble_for(spec.number)
    record = {"method": method, "net": model.net, "task": model.task, **file_ids, "ensemble": ens,
              "caffe_build": paths.caffe_build()}
    what = f"{model.net} {model.task} {rel(model.weights)}" + (f" ({model.about})" if model.about else "")
    if model.task and model.task.endswith("-mixed") and not spec.single_model:
        what += " (the single model for all levels, as in Tables 6-7)"
    return Prepared(record, lambda x, name: r.restore(x.astype(np.float32), ens), what)


for _name in DEFAULT_RED_NETS:       # RED10, RED20, RED30
    METHOD_REGISTRY.register(_name, obj=_red)


def evaluate_cell(spec: TableSpec, dataset: str, setting: str, method: str, cfg: EvalConfig,
                  restorers: dict) -> Cell | Missing:
    """One cell: a :class:`Cell` (per-image rows, from the cache when its record matches), or
    the :class:`Missing` reason there is none. The method is looked up in :data:`METHOD_REGISTRY`."""
    if method not in METHOD_REGISTRY:
        return NotComputedHere()
    job = CellJob(spec, dataset, setting, method, cfg, restorers)
    prepared = METHOD_REGISTRY.get(method)(job)
    if isinstance(prepared, Missing):
        return prepared
    level = job.level
    record = dict(prepared.record, table=spec.number, setting=setting, data=cfg.dataset_params(dataset),
                  seed=cfg.seed, sr_protocol=cfg.sr_protocol if spec.kind == "sr" else None,
                  code=eval_code_id())
    path = cell_path(cfg, spec.number, dataset, setting, method)
    meta = path.with_suffix(".json")
    cached = _cached_rows(path, meta, record)
    if cached is None:
        cached = _rows_of_another_table(cfg, dataset, setting, record)
        if cached is not None:
            _write_cell(path, meta, record, cached)
    if cached is not None:
        return Cell(cached, prepared.what)
    from .datasets import SetMissing
    try:
        images = load_images(dataset, cfg)
    except SetMissing as e:
        if (dataset, str(cfg.datasets)) not in _NOT_HERE:
            print(f"tables: {e}; its cells are left empty", file=sys.stderr, flush=True)
            _NOT_HERE.add((dataset, str(cfg.datasets)))
        return SetNotHere(dataset)
    if not images:
        return NoImages(dataset)
    desc = f"T{spec.number} {dataset} {setting} {method}"
    if spec.kind == "denoise":
        rows = _score_denoise(images, level, prepared.restore, dataset, cfg, desc)
    else:
        rows = _score_sr(images, level, prepared.restore, cfg, desc)
    _write_cell(path, meta, record, rows)
    return Cell(rows, prepared.what)


def _write_cell(path: Path, meta: Path, record: dict, rows: list[dict]) -> None:
    """A cell's per-image rows, then the record of what made them with the rows' sha256 (a
    cut write leaves a record that does not check, never a wrong cell)."""
    _write_rows(path, rows)
    check = {"images": [r["image"] for r in rows], "rows_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    atomic_write_text(meta, json.dumps({**record, "check": check}, sort_keys=True, indent=1) + "\n")


def _rows_of_another_table(cfg: EvalConfig, dataset: str, setting: str, record: dict) -> list[dict] | None:
    """The rows of the same cell in another table, made exactly as ``record`` says but for the
    table's number, or None.  A RED30 cell of Tables 1-5 filled from the single model for all
    levels is the very computation of Tables 6-7's cell (same model, images, noise, ensemble):
    it is run once.  (This table's own cell never matches here: had its record matched, it
    would have been used as cached.)"""
    want = {k: v for k, v in record.items() if k != "table"}
    pattern = cell_path(cfg, "*", dataset, setting, "*").with_suffix(".json").relative_to(cfg.out)
    for other in sorted(cfg.out.glob(str(pattern))):
        cell = read_cell(other) if other.with_suffix(".csv").is_file() else None
        if cell is not None and {k: v for k, v in cell[0].items() if k != "table"} == want:
            return cell[1]
    return None


def read_cell(meta: Path) -> tuple[dict, list[dict]] | None:
    """A cached cell: (the record of what made it, its per-image rows), or None unless it
    checks: the CSV's sha256 is the one written with the record, its images are those listed,
    and every score is a finite number.  A cut, emptied or edited CSV, or one left from an
    interrupted write, is therefore never used."""
    try:
        m = json.loads(Path(meta).read_text())
        check = m.pop("check", None)
        if not isinstance(check, dict):
            return None
        path = Path(meta).with_suffix(".csv")
        if hashlib.sha256(path.read_bytes()).hexdigest() != check.get("rows_sha256"):
            return None
        rows = _read_rows(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not rows or [r["image"] for r in rows] != check.get("images"):
        return None
    if not all(math.isfinite(r["psnr"]) and math.isfinite(r["ssim"]) for r in rows):
        return None
    return m, rows


def _cached_rows(path: Path, meta: Path, record: dict) -> list[dict] | None:
    """The cached rows of a cell made exactly as ``record`` says (see :func:`read_cell`)."""
    cell = read_cell(meta) if meta.is_file() and path.is_file() else None
    return cell[1] if cell is not None and cell[0] == record else None


def _stable_tag(cfg: EvalConfig, dataset: str, name: str, sigma: int) -> str:
    import zlib
    params = json.dumps({k: v for k, v in cfg.dataset_params(dataset).items() if k != "limit"}, sort_keys=True)
    return f"{dataset}/{zlib.crc32(params.encode()):08x}/{name}_s{sigma}_seed{cfg.seed}"


# --------------------------------------------------------------------------- the whole run
def _fmt(v, digits):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _cell_text(paper, ours, digits):
    if ours is None:
        return f"{_fmt(paper, digits)} / —"
    if paper is None:
        return f"— / {ours:.{digits}f}"
    return f"{paper:.{digits}f} / {ours:.{digits}f} ({ours - paper:+.{digits}f})"


def _methods(spec) -> list:
    """A table's method columns, plus Bicubic for the SR tables (always computed)."""
    return list(spec.methods) + (["Bicubic"] if spec.kind == "sr" else [])


def _cells(tables):
    """Every (table, spec, dataset, setting, method) of the given tables, in the paper's order."""
    for t in tables:
        spec = TABLES[t]
        for d in spec.datasets:
            for s in spec.settings():
                for m in _methods(spec):
                    yield t, spec, d, s, m


def run(cfg: EvalConfig) -> dict:
    """Evaluate every requested table; write tables.md, tables.csv and per-image CSVs.

    Returns ``results`` (``(table, dataset, setting, method) -> Cell | Missing``), and from
    it ``ours`` (``key -> (psnr, ssim)`` of the computed cells), ``missing`` (``key -> Missing``)
    and ``bicubic_check`` (the SRCNN-protocol bicubic rows beside the published averages)."""
    paper = read_paper()
    restorers: dict = {}
    results: dict[tuple, Cell | Missing] = {}
    for t, spec, d, s, m in _cells(cfg.tables):
        results[(t, d, s, m)] = evaluate_cell(spec, d, s, m, cfg, restorers)
    ours = {k: (c.psnr, c.ssim) for k, c in results.items() if isinstance(c, Cell)}
    missing = {k: c for k, c in results.items() if isinstance(c, Missing)}
    check = bicubic_check(results)
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg.out / "tables.csv", render_csv(cfg, paper, results))
    atomic_write_text(cfg.out / "tables.md", render_md(cfg, paper, results, check))
    return {"results": results, "ours": ours, "missing": missing, "bicubic_check": check}


def bicubic_check(results: dict) -> list[tuple]:
    """``(set, setting, ours PSNR, ours SSIM, published PSNR, published SSIM, images)`` of every
    Bicubic cell of Tables 3-5 with a published average, scored with the SRCNN protocol."""
    out = []
    for (t, d, s, m), c in results.items():
        if isinstance(c, Cell) and m == "Bicubic" and (d, level_of(s)) in PUBLISHED_BICUBIC and t in (3, 4, 5):
            out.append((d, s, c.mean("psnr_srcnn"), c.mean("ssim_srcnn"),
                        *PUBLISHED_BICUBIC[(d, level_of(s))], len(c.rows)))
    return out


def render_csv(cfg, paper, results) -> str:
    """tables.csv: per cell the paper's row, then ours where it was computed."""
    rows = []
    for t, spec, d, s, m in _cells(cfg.tables):
        p = paper.get((t, d, s, m))
        if p is not None:
            rows.append([t, d, s, m, "paper", _num(p["psnr"], 2), _num(p["ssim"], 4)])
        o = results.get((t, d, s, m))
        if isinstance(o, Cell):
            rows.append([t, d, s, m, "ours", f"{o.psnr:.4f}", f"{o.ssim:.5f}"])
    return csv_text(CSV_COLUMNS, rows)


def _num(v, digits):
    return "" if v is None else f"{v:.{digits}f}"


def _table_rows(t, spec, methods, paper, results) -> list[str]:
    """One table's markdown rows (header included), each cell ``paper / ours (difference)``."""
    def cell(d, s, m, metric, digits):
        p = paper.get((t, d, s, m))
        o = results.get((t, d, s, m))
        return _cell_text(None if p is None else p[metric],
                          getattr(o, metric) if isinstance(o, Cell) else None, digits)
    metrics_ = (("PSNR", "psnr", 2), ("SSIM", "ssim", 4))
    if spec.single_model:
        cols = [(d, s) for d in spec.datasets for s in spec.settings()]
        return md_table(["metric", "method"] + [f"{d} {s}" for d, s in cols],
                        [[label, m] + [cell(d, s, m, metric, digits) for d, s in cols]
                         for label, metric, digits in metrics_ for m in methods])
    cols = [(d, m) for d in spec.datasets for m in methods]
    head = (lambda d, m: m) if len(spec.datasets) == 1 else (lambda d, m: f"{d} {m}")
    return md_table(["metric", "sigma" if spec.kind == "denoise" else "scale"] + [head(d, m) for d, m in cols],
                    [[label, s.split("=")[-1]] + [cell(d, s, m, metric, digits) for d, m in cols]
                     for label, metric, digits in metrics_ for s in spec.settings()])


def _notes(t, methods, results) -> list[str]:
    """Under a table: per method, the cells without a result and why, and what computed the others."""
    notes = []
    for m in methods:
        mine = {k: c for k, c in results.items() if k[0] == t and k[3] == m}
        nomodel = [c for c in mine.values() if isinstance(c, NoModel)]
        if nomodel:
            tasks = sorted({c.task for c in nomodel}, key=lambda x: (len(x), x))
            notes.append(f"- {m}: **no model** for {', '.join(tasks)} "
                         f"({len(nomodel)} cells; e.g. {nomodel[0].hint})")
        other = [c.text for c in mine.values() if isinstance(c, Missing) and not isinstance(c, NoModel)]
        for r in sorted(set(other)):
            notes.append(f"- {m}: {r} ({other.count(r)} cells)")
        for line in sorted({c.provenance for c in mine.values() if isinstance(c, Cell)}):
            notes.append(f"- {m}: computed with {line}")
    return notes


def render_md(cfg, paper, results, bicubic_rows=()) -> str:
    """tables.md: the settings, each table in the paper's layout with its notes, the bicubic check."""
    L = ["# Tables 1-7 of the paper, regenerated", "",
         "Each cell: `paper / ours (ours - paper)`; `—` where there is no number "
         "(see the list under each table). Conventions: docs/evaluation.md.", "",
         f"- self-ensemble (8 orientations): {'on' if cfg.ensemble else 'off'}"
         + (f", except Table{'s' if len(cfg.no_ensemble_tables) > 1 else ''} "
            f"{', '.join(map(str, cfg.no_ensemble_tables))} (one forward pass, to save CPU time)"
            if cfg.ensemble and cfg.no_ensemble_tables else ""),
         f"- SR scores: `{cfg.sr_protocol}` protocol "
         + ("(float output, whole image, as the authors' test code)" if cfg.sr_protocol == "authors"
            else "(output rounded to uint8, s pixels shaved, as SRCNN/VDSR)"),
         f"- RED cells: pycaffe of the {paths.caffe_build()} Caffe build (`CAFFE=stock|fast`)",
         f"- denoising noise: seeded per image and sigma (base seed {cfg.seed}), the same for every method",
         f"- BSD200: MATLAB rgb2gray, then MATLAB-bicubic resize by {cfg.bsd200_scale}",
         f"- 14 images: Set12 (512x512 halved) + {' + '.join(cfg.dataset_params('denoise14')['extras'])}",
         f"- BM3D: {'on (PyPI bm3d)' if cfg.bm3d else 'off (make tables BM3D=1)'}"]
    if cfg.limit:
        L.append(f"- **only the first {cfg.limit} images of each set** (--limit): not the paper's averages")
    L.append("")
    for t in cfg.tables:
        spec = TABLES[t]
        methods = _methods(spec)
        L += [f"## Table {t}: {spec.caption}", ""]
        # the paper's layout. Tables 1-5: rows PSNR/SSIM x level, columns the methods.
        # Tables 6-7 (one model): columns test set x level, rows PSNR/SSIM (x method: RED30,
        # plus Bicubic for SR, a row the paper does not have).
        L += _table_rows(t, spec, methods, paper, results)
        L.append("")
        notes = _notes(t, methods, results)
        nopaper = [k for k in ((t, d, s, m) for d, s, m in spec.cells())
                   if paper.get(k) is None or paper[k]["psnr"] is None or paper[k]["ssim"] is None]
        if nopaper:   # data/paper_tables.csv holds every cell; this flags an edited or damaged file
            notes.append(f"- no paper value (PSNR or SSIM) for {len(nopaper)} of "
                         f"{len(list(spec.cells()))} cells (data/paper_tables.csv)")
        L += notes + [""]
    if bicubic_rows:
        L += ["## Check: bicubic with the SRCNN/VDSR protocol against the published averages", ""]
        L += md_table(["set", "scale", "ours PSNR", "published", "diff", "ours SSIM", "published", "diff", "images"],
                      [[d, s, f"{p:.2f}", f"{pp:.2f}", f"{p - pp:+.2f}", f"{q:.4f}", f"{pq:.4f}", f"{q - pq:+.4f}", n]
                       for d, s, p, q, pp, pq, n in bicubic_rows])
        L.append("")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- command line
def _parse_tables(text: str) -> tuple:
    out = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            rng = range(int(a), int(b) + 1) if a.isdigit() and b.isdigit() else None
        else:
            rng = [int(part)] if part.isdigit() else None
        if rng is None or not all(n in TABLES for n in rng):
            raise UserError(f"--tables {text!r}: expected numbers 1-7, e.g. 1,3-5")
        out += [n for n in rng if n not in out]
    return tuple(sorted(out))


def cmd_tables(args) -> int:
    check_writable(args.out, f"--out {args.out}")
    cfg = config_from_args(args)
    try:
        res = run(cfg)
    except OSError as e:
        raise disk_error(e, args.out) from None
    print(f"wrote {rel(cfg.out / 'tables.md')} and {rel(cfg.out / 'tables.csv')}: "
          f"{len(res['ours'])} cells computed, {len(res['missing'])} without a result (listed in tables.md)")
    return 0


def disk_error(e: OSError, out) -> UserError:
    """A full disk while the tables were written, as one line (other errors raised again)."""
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        raise e
    # every file is written under a temporary name and renamed: the one cut short is gone
    return UserError(f"--out {out}: disk full while writing {rel(e.filename) if e.filename else 'results'} "
                     f"({e.strerror}); the cells finished before are kept: free space and run again")


def config_from_args(args) -> EvalConfig:
    """The :class:`EvalConfig` of the ``tables`` command line (checked)."""
    if args.sr_protocol not in metrics.SR_PROTOCOLS:
        raise UserError(f"--sr-protocol {args.sr_protocol}: expected one of {', '.join(metrics.SR_PROTOCOLS)}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: expected a positive number of images")
    if not 0 < args.max_memory < math.inf:
        raise UserError(f"--max-memory {args.max_memory:g}: expected a positive number of MB")
    red_nets = dict(DEFAULT_RED_NETS)
    if args.red30_nets:
        red_nets["RED30"] = tuple(n.strip() for n in args.red30_nets.split(",") if n.strip())
    cfg = EvalConfig(datasets=args.datasets, ensemble=not args.no_ensemble, sr_protocol=args.sr_protocol,
                     no_ensemble_tables=_parse_tables(args.no_ensemble_tables) if args.no_ensemble_tables else (),
                     bsd200_scale=args.bsd200_scale,
                     denoise14_extras=tuple(args.extras) if args.extras else None, bm3d=args.bm3d,
                     limit=args.limit, seed=args.seed, max_memory_mb=args.max_memory,
                     red_nets=red_nets, tables=_parse_tables(args.tables), out=Path(args.out),
                     zoo_only=getattr(args, "zoo_only", True),
                     models_root=Path(args.models) if getattr(args, "models", None) else None)
    if cfg.models_root is not None and not cfg.models_root.is_dir():
        raise UserError(f"--models {args.models}: no such folder (expected zoo folders <name>/readme.md in it)")
    return cfg


def register(subparsers) -> None:
    p = subparsers.add_parser("tables", help="regenerate Tables 1-7 (paper vs ours) into results/",
                              description=__doc__.splitlines()[0])
    add_arguments(p, out=RESULTS)
    p.add_argument("--zoo-only", action="store_true", help="only the shipped models of models/ (not runs/)")
    p.add_argument("--models", metavar="DIR", help="search the zoo folders under DIR instead of models/ (e.g. "
                                                   "checkpoints/, or candidates exported with ZOO_ROOT=)")
    p.set_defaults(func=cmd_tables)


def add_arguments(p, out: Path) -> None:
    """The evaluation's options (``tables``, and ``zoo-results`` with ``out`` its own folder)."""
    p.add_argument("--tables", default="1-7", help="which tables, e.g. 1,3-5 (default 1-7)")
    p.add_argument("--datasets", default=None, help="benchmark image folder (default $DATASETS)")
    p.add_argument("--out", default=str(out), help=f"output folder (default {rel(out)}/)")
    p.add_argument("--no-ensemble", action="store_true", help="one pass per image, not 8 orientations")
    p.add_argument("--no-ensemble-tables", metavar="TABLES",
                   help="these tables with one pass per image even with the ensemble on, e.g. 2 (BSD200's 200 images)")
    p.add_argument("--sr-protocol", default="authors", help="authors (default) or srcnn; see docs/evaluation.md")
    p.add_argument("--bsd200-scale", type=float, default=DEFAULT_BSD200_SCALE,
                   help=f"BSD200 resize factor after rgb2gray (default {DEFAULT_BSD200_SCALE})")
    p.add_argument("--extras", nargs=2, metavar="NAME", help="the two extra images of the 14")
    p.add_argument("--bm3d", action="store_true", help="compute BM3D (PyPI bm3d; slow, cached)")
    p.add_argument("--limit", type=int, help="only the first N images of each set (quick look)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the denoising noise (default 0)")
    p.add_argument("--red30-nets", help="nets tried for the RED30 column, in order (default red30,red30-official)")
    p.add_argument("--max-memory", type=float, default=2048, help="forward-pass memory budget, MB (default 2048)")
