"""HDF5 patch databases for Caffe's HDF5Data layer: ``bin/python -m rednet data``.

A database ``data/db/<task>/`` holds shards ``train_00000.h5 ...`` and ``val_00000.h5 ...``
with float32 datasets ``data`` (network input) and ``label`` (clean target), both
N x 1 x P x P (P = 50, or the task's ``-p<N>`` patch size), plus ``meta`` (int32 N x 5: image, y, x, level index, repeat; Caffe
ignores it), and the list files ``train.txt`` / ``val.txt`` Caffe reads (one shard path
a line, relative to the repository root).  docs/data.md explains every choice.

How a pair is made, and why it is byte-identical for any number of workers:
:mod:`rednet.pairs`.  Memory stays bounded: the source images (46 MB of gray uint8 for the 300 BSD images) are held once,
and each worker fills one shard at a time.  Shards are written under a temporary name and
renamed when complete; an interrupted build resumes with the missing shards; the list
files are written last, atomically.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import multiprocessing as mp
import os
import queue
import re
import resource
import shutil
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import paths
from .errors import UserError, atomic_path, atomic_write_text
from . import pairs
from .tasks import PATCH, Task, get_task, task_from_words

SHARD_SIZE = 8192            # pairs per shard: 164 MB of float32 data+label in Caffe's memory
                             # (for P x P patches: scaled by 50^2 / P^2, see default_shard_size)
DENOISE_STRIDE = 19          # 345 patches per 481x321 image, 103,500 for the 300 images
NOISE_REPEATS = 5            # ... times 5 noise draws = 517,500 pairs (the paper's ~0.5M)
SR_STRIDE = 9                # one scale: ~1,480 patches per image, ~445k pairs
SR_MIXED_STRIDE = 15         # x2, x3, x4 of every patch: ~495k pairs
FORMAT = 1                   # bump when the shard layout changes
#: the code that decides a pair's values (its bytes are the database's ``code`` digest)
_CODE = ("pairs.py", "imageio_ml.py", "matlab.py")


# --------------------------------------------------------------------------- configuration
@dataclass
class Config:
    task: str
    kind: str
    levels: tuple
    stride: int
    noise_repeats: int
    patch: int = PATCH
    seed: int = 0
    max_images: int | None = None
    max_patches: int | None = None
    shard_size: int = SHARD_SIZE
    augment: str = "none"
    val: bool = True
    datasets: str = ""
    code: str = field(default="", repr=False)

    def fingerprint(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d["format"] = FORMAT
        d.pop("datasets")          # the data are pinned by the manifests' hashes instead
        d["manifests"] = _manifest_digest()
        return d


def config_digest(fp: dict) -> str:
    """The hash a shard carries (HDF5 attribute ``config_sha256``): sha256 of the fingerprint."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def _manifest_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((paths.DATA / "manifests").glob("*")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _code_digest(here: Path | None = None) -> str:
    """The hash of the code that decides a pair's values (``_CODE`` in ``here``, by default
    this package): not of the builder, whose edits leave every database's values alone."""
    h = hashlib.sha256()
    here = Path(here) if here is not None else Path(__file__).resolve().parent
    for name in _CODE:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def default_noise_repeats(patch: int) -> int:
    """Noise draws per clean denoising patch: 5 for 50x50 patches; for P x P patches scaled by
    50^2 / P^2 (at least 1), so a database holds about the paper's number of pixels
    (243x243: 1 draw, 19,500 pairs, 9.2 GB, against 517,500 pairs and 10.4 GB at 50x50)."""
    return max(1, round(NOISE_REPEATS * PATCH ** 2 / patch ** 2))


def default_shard_size(patch: int) -> int:
    """Pairs per shard: 8192 for 50x50 patches, scaled by 50^2 / P^2 (at least 16, one batch)
    so that the shard Caffe holds in memory stays about 164 MB (243x243: 346 pairs)."""
    return max(16, SHARD_SIZE * PATCH ** 2 // patch ** 2)


def make_config(task, *, datasets=None, stride=None, noise_repeats=None, max_images=None,
                max_patches=None, seed=0, shard_size=None, augment="none", val=True,
                patch=None) -> Config:
    t: Task = task if isinstance(task, Task) else get_task(str(task))
    if patch is None:
        patch = t.patch
    elif t.patch != PATCH and patch != t.patch:
        raise UserError(f"patch={patch!r}: task {t.name} has {t.patch}x{t.patch} patches (its -p{t.patch} suffix)")
    if stride is None:
        stride = DENOISE_STRIDE if t.kind == "denoise" else (SR_MIXED_STRIDE if t.mixed else SR_STRIDE)
    if noise_repeats is None:
        noise_repeats = default_noise_repeats(patch) if t.kind == "denoise" else 1
    if shard_size is None:
        shard_size = default_shard_size(patch)
    for name, v, lo in (("stride", stride, 1), ("noise_repeats", noise_repeats, 1),
                        ("patch", patch, 1), ("shard_size", shard_size, 1), ("seed", seed, 0)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise UserError(f"{name}={v!r}: expected an integer >= {lo}")
    if t.kind == "sr" and noise_repeats != 1:
        raise UserError(f"noise_repeats={noise_repeats}: super-resolution pairs have no noise (use 1)")
    for name, v in (("max_images", max_images), ("max_patches", max_patches)):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise UserError(f"{name}={v!r}: expected a positive integer")
    if augment not in ("none", "dihedral"):
        raise UserError(f"augment={augment!r}: expected none or dihedral")
    root = _datasets_root(datasets)
    return Config(task=t.name, kind=t.kind, levels=tuple(t.levels), stride=int(stride),
                  noise_repeats=int(noise_repeats), patch=int(patch), seed=int(seed),
                  max_images=max_images, max_patches=max_patches, shard_size=int(shard_size),
                  augment=augment, val=bool(val), datasets=str(root), code=_code_digest())


def _datasets_root(datasets) -> Path:
    from .datasets import _root
    return _root(datasets)


# --------------------------------------------------------------------------- shard writing
_STATE: dict = {}
_LOCK: dict = {"fd": None}


def _set_state(state, progress_q):
    _STATE.update(state)
    _STATE["q"] = progress_q


def _init_worker(state, progress_q):
    _set_state(state, progress_q)
    if _LOCK["fd"] is not None:       # the folder lock belongs to the main process alone: a
        with contextlib.suppress(OSError):   # worker outliving a killed builder must not hold it
            os.close(_LOCK["fd"])
        _LOCK["fd"] = None


def _write_shard(job) -> str:
    split, k, rows, dest = job
    import h5py
    cfg: Config = _STATE["cfg"]
    q = _STATE.get("q")
    data, label = pairs.make_pairs(cfg, _STATE["sources"][split], rows, split,
                                   q.put if q is not None else None)
    with atomic_path(dest) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("label", data=label)
            f.create_dataset("meta", data=rows)
            f.attrs["task"] = cfg.task
            f.attrs["kind"] = cfg.kind
            f.attrs["levels"] = np.asarray(cfg.levels, np.float64)
            f.attrs["meta_columns"] = "image,y,x,level_index,repeat"
            f.attrs["seed"] = cfg.seed
            f.attrs["config_sha256"] = _STATE["digest"]
    return str(dest)


def _shard_ok(path: Path, n: int, patch: int, digest: str) -> bool:
    """A shard is reused only when whole and made by this very configuration (its
    ``config_sha256`` attribute); a shard of another configuration, or one written before
    shards carried the hash, is rebuilt."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return (f.attrs.get("config_sha256") == digest
                    and f["data"].shape == (n, 1, patch, patch) == f["label"].shape
                    and f["data"].dtype == np.float32)
    except Exception:  # noqa: BLE001 - any unreadable shard is rebuilt
        return False


# --------------------------------------------------------------------------- the build
@dataclass
class Plan:
    cfg: Config
    out_dir: Path
    files: dict            # split -> [Path]
    rows: dict             # split -> rows array
    shards: dict           # split -> [(k, rows slice, dest)]

    def count(self, split):
        return len(self.rows.get(split, ()))

    def nbytes(self, split):
        P = self.cfg.patch
        n = self.count(split)
        return n * 2 * P * P * 4 + n * 5 * 4 + len(self.shards.get(split, ())) * 8192


def _db_dir(task: str, out_dir) -> Path:
    return Path(out_dir) if out_dir is not None else paths.DB / task


def make_plan(cfg: Config, out_dir: Path, shapes: dict | None = None) -> Plan:
    splits = ["train"] + (["val"] if cfg.val else [])
    files = {s: pairs.source_files(cfg, s) for s in splits}
    if shapes is None:
        shapes = {s: [pairs.header_shape(p) for p in files[s]] for s in splits}
    rows, shards = {}, {}
    for s in splits:
        for p, (h, w) in zip(files[s], shapes[s]):
            if cfg.kind == "denoise":
                pairs.check_size(p, (h, w), cfg.patch, "")
            else:
                for sc in cfg.levels:
                    pairs.check_size(p, (h - h % sc, w - w % sc), cfg.patch, f" after modcrop by {sc}")
        rows[s] = pairs.plan_rows(cfg, s, shapes[s])
        if len(rows[s]) == 0:
            raise UserError(f"{cfg.task}: no {s} patches from {len(files[s])} images")
        S = cfg.shard_size
        shards[s] = [(k, rows[s][a:a + S], out_dir / f"{s}_{k:05d}.h5")
                     for k, a in enumerate(range(0, len(rows[s]), S))]
    return Plan(cfg, out_dir, files, rows, shards)


#: kept free on the database's disk beyond the shards (said in the message)
DISK_RESERVE = 64 << 20


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return ""


def preview(task, out_dir=None, *, datasets=None, stride=None, noise_repeats=None, max_images=None,
            max_patches=None, seed=0, workers=2, shard_size=None, val=True, progress=True,
            augment="none", patch=None, verify=True, quiet=False) -> dict:
    """Print (unless quiet) and return the patch counts and bytes a build would write."""
    cfg = make_config(task, datasets=datasets, stride=stride, noise_repeats=noise_repeats,
                      max_images=max_images, max_patches=max_patches, seed=seed,
                      shard_size=shard_size, augment=augment, val=val, patch=patch)
    out = _db_dir(cfg.task, out_dir)
    plan = make_plan(cfg, out)
    info = {"task": cfg.task, "out_dir": paths.rel(out)}
    for s in plan.rows:
        info[s] = {"images": len(plan.files[s]), "patches": plan.count(s),
                   "shards": len(plan.shards[s]), "bytes": plan.nbytes(s)}
    info["bytes"] = sum(plan.nbytes(s) for s in plan.rows)
    info["free_bytes"] = _free_bytes(out)
    if not quiet:
        lev = "sigma" if cfg.kind == "denoise" else "scale"
        print(f"{cfg.task} ({lev} {', '.join(map(str, cfg.levels))}; stride {cfg.stride}, "
              f"noise repeats {cfg.noise_repeats}, patch {cfg.patch}, seed {cfg.seed}) -> {info['out_dir']}")
        for s in plan.rows:
            d = info[s]
            print(f"  {s:5s}: {d['patches']:,} patches from {d['images']} images in {d['shards']} "
                  f"shards, {fmt_bytes(d['bytes'])}")
        print(f"  total: {fmt_bytes(info['bytes'])} (free on disk: {fmt_bytes(info['free_bytes'])})")
    return info


def _free_bytes(p: Path) -> int:
    p = Path(p).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def read_list(list_file) -> list[Path]:
    """The shard paths of a list file (relative lines are taken from the repository root)."""
    out = []
    for line in Path(list_file).read_text().splitlines():
        if line.strip():
            p = Path(line.strip())
            out.append(p if p.is_absolute() else paths.ROOT / p)
    return out


def _clear(out: Path) -> None:
    """Remove a previous database's lists (first), shards and config from ``out``."""
    for name in ("train.txt", "val.txt", "config.json"):
        (out / name).unlink(missing_ok=True)
    for p in out.glob("*.h5"):
        if re.fullmatch(r"(train|val)_\d{5}\.h5", p.name):
            p.unlink()


def _clean_temps(out: Path) -> None:
    for p in out.glob(".*.tmp.*"):
        p.unlink(missing_ok=True)


def build_db(task, out_dir=None, *, datasets=None, stride=None, noise_repeats=None, max_images=None,
             max_patches=None, seed=0, workers=2, shard_size=None, val=True, progress=True,
             augment="none", patch=None, verify=True) -> Path:
    """Build (or finish) the database of ``task``; returns the train list file.

    Defaults give the paper-scale database (docs/data.md).  ``max_images`` / ``max_patches``
    / a larger ``stride`` make a small one (the demo).  Already complete shards of the same
    configuration are kept; a different configuration replaces the database.
    """
    cfg = make_config(task, datasets=datasets, stride=stride, noise_repeats=noise_repeats,
                      max_images=max_images, max_patches=max_patches, seed=seed,
                      shard_size=shard_size, augment=augment, val=val, patch=patch)
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise UserError(f"workers={workers!r}: expected an integer >= 1")
    out = _db_dir(cfg.task, out_dir)
    from . import datasets as D
    if verify:
        D.verify("BSD300", cfg.datasets)
        D.verify(pairs.VAL_DENOISE[0] if cfg.kind == "denoise" else pairs.VAL_SR[0], cfg.datasets)
    plan = make_plan(cfg, out)
    fp = cfg.fingerprint()
    with _db_lock(out):
        try:
            return _build(plan, fp, workers, progress)
        except BrokenProcessPool:
            _clean_temps(out)
            raise UserError(f"{paths.rel(out)}: a worker process died (killed, e.g. by the out-of-memory "
                            f"killer); complete shards are kept and a rerun resumes from them "
                            f"(fewer workers, DATA_WORKERS=1 / --workers 1, need less memory)") from None
        except OSError as e:
            _clean_temps(out)
            if e.errno == errno.ENOSPC or "No space left" in str(e):
                raise UserError(f"{paths.rel(out)}: disk full while writing the database; complete shards "
                                f"are kept: free space and run the same command again") from None
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise UserError(f"{paths.rel(out)}: cannot write the database there ({e.strerror})") from None
            raise


@contextlib.contextmanager
def _db_lock(out: Path):
    """Hold an exclusive lock on the database folder (``flock`` on the folder itself, so no
    lock file is left) for the whole build: a second builder of the same folder is refused
    with one line instead of mixing its shards in.  The folder is made here (after every
    input check) and removed again when the build fails before writing anything into it."""
    created = not out.is_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()       # writable? (a read-only disk, permissions)
    except OSError as e:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise UserError(f"{paths.rel(out)}: cannot write the database there ({e.strerror})") from None
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{paths.rel(out)}: another `rednet data` is building this database folder "
                        f"(wait for it, or give another --out / DB_DIR)") from None
    except OSError:
        pass                                           # a file system without flock: unlocked
    _LOCK["fd"] = fd
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()                            # only when still empty
        raise
    finally:
        _LOCK["fd"] = None
        os.close(fd)                                   # releases the lock


def _build(plan: Plan, fp: dict, workers: int, progress: bool) -> Path:
    cfg, out = plan.cfg, plan.out_dir
    digest = config_digest(fp)
    list_files = {s: out / f"{s}.txt" for s in plan.rows}

    # an up-to-date database: nothing to do
    cfg_file = out / "config.json"
    try:
        old = json.loads(cfg_file.read_text()) if cfg_file.is_file() else None
    except ValueError:
        old = {}                                       # unreadable: another configuration
    if old is not None and old != fp:
        _clear(out)
    _clean_temps(out)
    todo = {s: [job for job in plan.shards[s]
                if not (job[2].is_file() and _shard_ok(job[2], len(job[1]), cfg.patch, digest))]
            for s in plan.rows}
    if old == fp and not any(todo.values()) and all(f.is_file() for f in list_files.values()):
        return list_files["train"]

    need = sum(len(r) for s in todo for _, r, _ in todo[s]) * 2 * cfg.patch ** 2 * 4
    free = _free_bytes(out)
    total = need * 1.02 + DISK_RESERVE
    if total > free:
        raise UserError(f"{paths.rel(out)}: the database needs {fmt_bytes(total)} free "
                        f"({fmt_bytes(need)} of shards, 2 % for HDF5's own bookkeeping and a "
                        f"{DISK_RESERVE >> 20} MiB reserve), but only {fmt_bytes(free)} is free on that disk")

    # read and prepare the sources (in parallel), then write the missing shards (in parallel)
    state = {"cfg": cfg, "sources": {}, "digest": digest}
    ctx = mp.get_context("fork")
    from tqdm import tqdm
    tqdm.monitor_interval = 0
    for s in plan.rows:
        if not todo[s]:
            continue
        jobs = [(p, cfg.kind, cfg.levels, cfg.patch) for p in plan.files[s]]
        used = sorted(set(plan.rows[s][:, 0].tolist()))
        srcs = [None] * len(jobs)
        with _pool(ctx, workers, {}, None) as pool, \
                tqdm(total=len(used), desc=f"{cfg.task} {s} images", unit="img",
                     disable=not progress) as bar:
            for i, res in zip(used, pool.map(pairs.prepare, [jobs[i] for i in used])):
                srcs[i] = res
                bar.update(1)
        state["sources"][s] = srcs
    for f in list_files.values():      # no list may name a shard that is being (re)written
        f.unlink(missing_ok=True)
    atomic_write_text(cfg_file, json.dumps(fp, indent=1, sort_keys=True) + "\n")

    for s in plan.rows:
        jobs = [(s, k, rows, dest) for k, rows, dest in todo[s]]
        if not jobs:
            continue
        total = sum(len(j[2]) for j in jobs)
        q = ctx.Queue() if workers > 1 else None
        with tqdm(total=total, desc=f"{cfg.task} {s}", unit="patch", unit_scale=True,
                  disable=not progress, smoothing=0.1) as bar:
            if workers == 1:
                _set_state(state, None)
                for job in jobs:
                    _write_shard(job)
                    bar.update(len(job[2]))
            else:
                with _pool(ctx, workers, state, q) as pool:
                    pending = {pool.submit(_write_shard, job) for job in jobs}
                    while pending:
                        try:
                            bar.update(q.get(timeout=0.2))
                        except queue.Empty:
                            pass
                        done, pending = wait(pending, timeout=0, return_when=FIRST_COMPLETED)
                        for r in done:
                            r.result()         # re-raises a worker's error; BrokenProcessPool
                                               # when a worker died (never a hang)
                    while True:
                        try:
                            bar.update(q.get_nowait())
                        except queue.Empty:
                            break
        state["sources"].pop(s, None)
    # list files last (val first, so train.txt - the make target - is the very last write)
    for s in sorted(plan.rows, key=lambda s: s == "train"):
        lines = [paths.rel(dest) for _, _, dest in plan.shards[s]]
        atomic_write_text(list_files[s], "\n".join(lines) + "\n")
    return list_files["train"]


class _pool:
    """A fork pool (``concurrent.futures``: a worker that dies, e.g. to the out-of-memory
    killer, breaks the pool with ``BrokenProcessPool`` instead of hanging it) whose workers get
    ``state``; on errors the pending work is cancelled, the running jobs end, and workers
    that do not end within ``DRAIN_SECONDS`` are killed."""

    DRAIN_SECONDS = 60

    def __init__(self, ctx, workers, state, q):
        self.p = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(state, q))

    def __enter__(self):
        return self.p

    def __exit__(self, et, ev, tb):
        if et is None:
            self.p.shutdown(wait=True)
            return
        # Cancel what has not started and let the running jobs end (seconds each) before
        # anything is killed: a worker killed in the middle of sending its result (a prepared
        # image is megabytes) leaves half a message in the result pipe, and the executor's
        # manager thread then waits for the rest for ever, and the interpreter with it at exit
        # (it joins that thread). Workers are killed only where they do not end in time.
        procs = list((getattr(self.p, "_processes", None) or {}).values())
        manager = getattr(self.p, "_executor_manager_thread", None)
        self.p.shutdown(wait=False, cancel_futures=True)
        if manager is not None:
            manager.join(self.DRAIN_SECONDS)
            if not manager.is_alive():
                return
        for pr in procs:
            with contextlib.suppress(Exception):
                pr.kill()
        for pr in procs:
            with contextlib.suppress(Exception):
                pr.join(5)


# --------------------------------------------------------------------------- benchmark
def bench(parent: Path, *, task="denoise-s30", workers=2, keep=False, **kw) -> dict:
    """Build the full database into a new folder under ``parent``, report patches/s, bytes
    written and peak RSS, and delete the folder (unless ``keep``)."""
    import tempfile
    Path(parent).mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(prefix=f"bench-{task}-", dir=parent))
    t0 = time.time()
    try:
        lst = build_db(task, out_dir, workers=workers, **kw)
        dt = time.time() - t0
        shards = read_list(lst) + read_list(out_dir / "val.txt")
        nbytes = sum(p.stat().st_size for p in shards)
        import h5py
        n = 0
        for p in read_list(lst):
            with h5py.File(p, "r") as f:
                n += f["data"].shape[0]
    finally:
        if not keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    info = {"task": task, "patches": n, "seconds": round(dt, 1), "patches_per_s": round(n / dt),
            "bytes_written": nbytes, "peak_rss_self_mb": round(self_rss / 1024),
            "peak_rss_child_mb": round(child_rss / 1024), "workers": workers,
            "load_avg": os.getloadavg()}
    return info


# --------------------------------------------------------------------------- command line
def _task_from_args(args) -> str:
    return task_from_words(args.task, args.sigma, args.scale)


def _cmd(args) -> int:
    task = _task_from_args(args)
    kw = dict(datasets=args.datasets, stride=args.stride, noise_repeats=args.noise_repeats,
              max_images=args.max_images, max_patches=args.max_patches, seed=args.seed,
              shard_size=args.shard_size, val=not args.no_val, augment=args.augment,
              patch=args.patch)
    if args.print_task:
        print(task)
        return 0
    if args.bench:
        out = Path(args.out or paths.CACHE)
        info = bench(out, task=task, workers=args.workers, progress=not args.quiet, **kw)
        print(json.dumps(info))
        print(f"bench-data: {info['patches']:,} patches in {info['seconds']} s = "
              f"{info['patches_per_s']:,} patches/s; {fmt_bytes(info['bytes_written'])} written; "
              f"peak RSS {info['peak_rss_self_mb']} MB (main), {info['peak_rss_child_mb']} MB "
              f"(largest worker); {info['workers']} workers; load average {info['load_avg'][0]:.2f}")
        return 0
    if args.preview:
        preview(task, args.out, **kw)
        return 0
    lst = build_db(task, args.out, workers=args.workers, progress=not args.quiet,
                   verify=not args.no_verify, **kw)
    print(paths.rel(lst))
    return 0


def _pos_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    return v


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="build the HDF5 patch database of a task",
                              description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True,
                   help="a task name (denoise-s30, sr-x3, denoise-mixed, ...) or denoise / sr "
                        "with --sigma / --scale")
    p.add_argument("--sigma", default=None, help="noise level (0, 255] or mixed, with --task denoise")
    p.add_argument("--scale", default=None, help="2, 3, 4 or mixed, with --task sr")
    p.add_argument("--out", default=None, help="database folder (default data/db/<task>)")
    p.add_argument("--datasets", default=None, help="benchmark image folder (default $DATASETS)")
    p.add_argument("--stride", type=_pos_int, default=None,
                   help=f"patch stride (default {DENOISE_STRIDE} denoise, {SR_STRIDE} sr, "
                        f"{SR_MIXED_STRIDE} sr-mixed)")
    p.add_argument("--noise-repeats", type=_pos_int, default=None,
                   help=f"noisy copies of each clean patch (default {NOISE_REPEATS} for {PATCH}x{PATCH} "
                        f"patches, fewer for larger ones)")
    p.add_argument("--patch", type=_pos_int, default=None,
                   help=f"patch size (default: the task's, {PATCH} unless its name ends in -p<N>)")
    p.add_argument("--max-images", type=_pos_int, default=None, help="use only the first N training images")
    p.add_argument("--max-patches", type=_pos_int, default=None, help="keep only N training pairs")
    p.add_argument("--seed", type=_pos_int, default=0)
    p.add_argument("--shard-size", type=_pos_int, default=None,
                   help=f"pairs per HDF5 shard (default {SHARD_SIZE} for {PATCH}x{PATCH} patches, fewer for larger ones)")
    p.add_argument("--augment", choices=["none", "dihedral"], default="none",
                   help="dihedral: each pair in one of the 8 rotations/flips (default none, as the paper)")
    p.add_argument("--workers", type=_pos_int, default=2, help="worker processes")
    p.add_argument("--no-val", action="store_true", help="no validation database")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the images")
    p.add_argument("--preview", action="store_true", help="print patch count and bytes, write nothing")
    p.add_argument("--bench", action="store_true",
                   help="build into a new folder under --out (default data/cache), print "
                        "patches/s, bytes and peak RSS, then delete it")
    p.add_argument("--print-task", action="store_true", help="print the task name and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd)
