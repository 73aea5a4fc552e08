"""What a training pair is: the source images, the patch grid, the noise and the bicubic round
trip, in the authors' MATLAB recipe.  Builder plumbing (shards, processes, locks) lives in
:mod:`rednet.patches`.

This module, :mod:`rednet.imageio_ml` and :mod:`rednet.matlab` are the code whose bytes a
database's ``config.json`` records (``code``): an edit here makes every database stale; an
edit of the builder does not, so a database rebuilt after one keeps its fingerprint and runs
on it still resume.  Anything that changes a pair's values belongs here.

How a pair is made:
- denoising: ``label = clean/255`` (gray: MATLAB ``rgb2gray``), ``data = label +
  sigma/255 * randn`` in float64, then float32; not clipped, not rounded.
- super-resolution: ``hr = modcrop(Y, s)`` (``rgb2ycbcr`` Y), ``label = hr/255``,
  ``data = imresize(imresize(hr/255, 1/s), s)`` (MATLAB bicubic), the patch is cut from
  both whole images at the same place.

Determinism: every pair's randomness comes from its own generator seeded with
``(seed, split, image, y, x, repeat)``, and the global shuffle from one seeded permutation,
so the arrays are byte-identical for any number of workers or order of work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UserError
from .tasks import PATCH

VAL_STRIDE = 50              # validation: non-overlapping patches, one noise draw
VAL_DENOISE = ("Set5", ("baby", "bird", "head", "woman"))   # not butterfly (= Set12 Monarch)
VAL_SR = ("BSD200", 10)      # the first 10 BSDS500 test images by id
SPLITS = {"train": 0, "val": 1}

# ``cfg`` below is a :class:`rednet.patches.Config` (task, kind, levels, stride, noise_repeats,
# patch, seed, max_images, max_patches, augment, datasets).


# --------------------------------------------------------------------------- sources
def source_files(cfg, split: str) -> list[Path]:
    """The image files a split is cut from, in the fixed order that numbers them.

    Validation images smaller than the patch are left out (for 243x243 patches: Set5
    ``woman``, 228 pixels wide); when none is big enough all are returned, and the plan
    names the first that is too small."""
    from . import datasets as D
    if split == "train":
        files = D.list_images("BSD300", cfg.datasets)
        return files[: cfg.max_images] if cfg.max_images else files
    if cfg.kind == "denoise":
        name, keep = VAL_DENOISE
        files = [p for p in D.list_images(name, cfg.datasets) if p.stem in keep]
    else:
        name, n = VAL_SR
        files = D.list_images(name, cfg.datasets)[:n]
    if cfg.patch == PATCH:
        return files            # all of them hold 50x50 patches
    fits = [p for p in files if _fits(header_shape(p), cfg)]
    return fits or files


def _fits(shape: tuple[int, int], cfg) -> bool:
    h, w = shape
    levels = cfg.levels if cfg.kind == "sr" else (1,)
    return all(min(h - h % s, w - w % s) >= cfg.patch for s in levels)


def header_shape(path: Path) -> tuple[int, int]:
    """(height, width) from the image file's header, without decoding it."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as e:  # noqa: BLE001 - any decoder error is the user's file
        raise UserError(f"{path}: cannot decode image ({e})") from None
    return h, w


def check_size(path, shape, patch, what):
    if shape[0] < patch or shape[1] < patch:
        raise UserError(f"{path}: image is {shape[1]}x{shape[0]}{what}, smaller than the "
                        f"{patch}x{patch} patch")


def prepare(args):
    """One source image -> what the pairs are cut from: ``[gray]`` for denoising, one
    ``(hr, bicubic round trip)`` per scale for super-resolution.  ``args`` is one tuple
    ``(path, kind, scales, patch)`` so that a process pool can map it."""
    path, kind, scales, patch = args
    from . import imageio_ml, matlab
    img = imageio_ml.load_image(path)
    if kind == "denoise":
        g = imageio_ml.to_gray(img)
        check_size(path, g.shape, patch, "")
        return [g]
    y = imageio_ml.to_luma(img)
    out = []
    for s in scales:
        hr = matlab.modcrop(y, s)
        check_size(path, hr.shape, patch, f" after modcrop by {s}")
        if min(hr.shape) < 2 * s:
            raise UserError(f"{path}: {y.shape[1]}x{y.shape[0]} is too small for scale {s}")
        lr = matlab.imresize(hr.astype(np.float64) / 255.0, 1.0 / s)
        up = matlab.imresize(lr, float(s))
        assert up.shape == hr.shape, (up.shape, hr.shape)
        out.append((hr, up.astype(np.float32)))
    return out


# --------------------------------------------------------------------------- the pairs
def grid(h: int, w: int, patch: int, stride: int):
    ys = np.arange(0, h - patch + 1, stride)
    xs = np.arange(0, w - patch + 1, stride)
    return ys, xs


def plan_rows(cfg, split: str, shapes: list[tuple[int, int]]) -> np.ndarray:
    """All pairs of a split in canonical order, int32 rows (image, y, x, level index, repeat).

    Denoising: every grid patch ``noise_repeats`` times; with several sigmas (mixed), repeat
    ``r`` of the ``p``-th patch gets sigma number ``(p + r) % 4``.  Super-resolution: every
    grid patch of the image modcropped by each scale, once.  Then the seeded global
    permutation (a shuffled database), cut to ``max_patches``.
    """
    repeats = cfg.noise_repeats if split == "train" else 1
    stride = cfg.stride if split == "train" else VAL_STRIDE
    nlev = len(cfg.levels)
    chunks, p0 = [], 0
    for i, (h, w) in enumerate(shapes):
        if cfg.kind == "denoise":
            ys, xs = grid(h, w, cfg.patch, stride)
            yy, xx = np.meshgrid(ys, xs, indexing="ij")
            yy, xx = yy.ravel(), xx.ravel()
            p = p0 + np.arange(yy.size)
            p0 += yy.size
            for r in range(repeats):
                lev = (p + r) % nlev
                chunks.append(np.stack([np.full_like(yy, i), yy, xx, lev, np.full_like(yy, r)], 1))
        else:
            for li, s in enumerate(cfg.levels):
                ys, xs = grid(h - h % s, w - w % s, cfg.patch, stride)
                yy, xx = np.meshgrid(ys, xs, indexing="ij")
                yy, xx = yy.ravel(), xx.ravel()
                chunks.append(np.stack([np.full_like(yy, i), yy, xx, np.full_like(yy, li),
                                        np.zeros_like(yy)], 1))
    rows = np.concatenate(chunks).astype(np.int32) if chunks else np.zeros((0, 5), np.int32)
    perm = np.random.default_rng([cfg.seed, SPLITS[split], 0x5EED]).permutation(len(rows))
    rows = rows[perm]
    if split == "train" and cfg.max_patches:
        rows = rows[: cfg.max_patches]
    return rows


def make_pairs(cfg, sources: list, rows: np.ndarray, split: str,
               tick: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (data, label) arrays, N x 1 x P x P float32, of ``rows`` cut from ``sources`` (one
    :func:`prepare` result per image of the split); ``tick(n)`` is called as pairs are done."""
    P = cfg.patch
    n = len(rows)
    data = np.empty((n, 1, P, P), np.float32)
    label = np.empty((n, 1, P, P), np.float32)
    sp = SPLITS[split]
    done = 0
    for j, (i, y, x, li, r) in enumerate(rows.tolist()):
        if cfg.kind == "denoise":
            clean = sources[i][0][y:y + P, x:x + P].astype(np.float64) / 255.0
            g = np.random.default_rng([cfg.seed, sp, i, y, x, r])
            t = int(g.integers(8)) if cfg.augment == "dihedral" else 0
            noisy = clean + (cfg.levels[li] / 255.0) * g.standard_normal((P, P))
            a, b = noisy, clean
        else:
            hr, up = sources[i][li]
            b = hr[y:y + P, x:x + P].astype(np.float64) / 255.0
            a = up[y:y + P, x:x + P]
            t = (int(np.random.default_rng([cfg.seed, sp, i, y, x, li]).integers(8))
                 if cfg.augment == "dihedral" else 0)
        if t:
            a, b = dihedral(a, t), dihedral(b, t)
        data[j, 0] = a
        label[j, 0] = b
        if tick is not None and (j + 1) % 256 == 0:
            tick(256)
            done += 256
    if tick is not None and n > done:
        tick(n - done)
    return data, label


def dihedral(a: np.ndarray, t: int) -> np.ndarray:
    """The ``t``-th (0-7) of the eight rotations/flips (``augment="dihedral"``)."""
    a = np.rot90(a, t % 4)
    return a[:, ::-1] if t >= 4 else a
