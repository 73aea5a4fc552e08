"""MATLAB-faithful image operations used by the paper's data and evaluation code.

The authors prepared data and evaluated in MATLAB; super-resolution PSNRs move by close to
1 dB when MATLAB's ``imresize`` is replaced by OpenCV or PIL (they differ by up to 54/255 at
the borders and do not antialias when shrinking). This module is a port of the parts of
MATLAB the protocol needs:

- :func:`imresize`: ``imresize(I, scale)`` / ``imresize(I, [rows cols])`` with the default
  ``'bicubic'`` kernel (Keys, a = -0.5) and MATLAB's antialiasing when shrinking,
  symmetric border handling, and the dimension order MATLAB uses (the most-shrunk
  dimension first). ``uint8`` in gives ``uint8`` out (rounded, saturated), like MATLAB.
- :func:`rgb2ycbcr` / :func:`rgb2y` / :func:`ycbcr2rgb`: ITU-R BT.601 as MATLAB implements
  it, for ``uint8`` (results rounded to ``uint8``) and ``double`` input in [0, 1].
- :func:`modcrop`, :func:`im2double`, :func:`im2uint8` (MATLAB rounds half away from zero).

It is written with numpy only: no library reproduces MATLAB's resize to 1e-10 (the test
vectors in the shared reference folder are the proof), so it is hand-written on purpose.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["imresize", "rgb2ycbcr", "rgb2y", "ycbcr2rgb", "modcrop", "im2double", "im2uint8",
           "matlab_round"]


# --------------------------------------------------------------------------- resize
def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return ((1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
            + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((1 < absx) & (absx <= 2)))


def _contributions(in_len: int, out_len: int, scale: float, antialiasing: bool):
    """Weights (out_len x P) and 0-based source indices, exactly as MATLAB's contributions()."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        # antialiasing: stretch the kernel by 1/scale (a lowpass filter)
        def h(x):
            return scale * _cubic(scale * x)
        kernel_width = kernel_width / scale
    else:
        h = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)          # output pixel x maps to input u (1-based)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p, dtype=np.float64)[None, :]
    weights = h(u[:, None] - indices)
    weights = weights / np.sum(weights, axis=1, keepdims=True)
    # symmetric padding: mirror indices that fall outside [1, in_len]
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _resize_dim(a: np.ndarray, dim: int, out_len: int, scale: float, antialiasing: bool) -> np.ndarray:
    weights, idx = _contributions(a.shape[dim], out_len, scale, antialiasing)
    a = np.moveaxis(a, dim, 0)
    out = np.zeros((out_len,) + a.shape[1:], dtype=np.float64)
    for k in range(weights.shape[1]):
        w = weights[:, k].reshape((-1,) + (1,) * (a.ndim - 1))
        out += w * a[idx[:, k]]
    return np.moveaxis(out, 0, dim)


def imresize(img: np.ndarray, scale: float | None = None, output_shape=None,
             antialiasing: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` or ``imresize(img, [rows cols], 'bicubic')``.

    ``img``: H x W or H x W x C; ``uint8`` (returned as ``uint8``, rounded half away from
    zero and saturated, as MATLAB does) or floating (returned as float64, not clipped).
    Give exactly one of ``scale`` (output size ``ceil(scale * size)``; the kernel uses
    ``scale`` itself, as MATLAB does) or ``output_shape`` ``(rows, cols)``, where either
    may be ``None`` to keep the aspect ratio (MATLAB's NaN).
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: give exactly one of scale and output_shape")
    img = np.asarray(img)
    is_uint8 = img.dtype == np.uint8
    a = img.astype(np.float64)
    in_shape = a.shape[:2]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"imresize: scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_shape = tuple(int(math.ceil(s * n)) for s, n in zip(scales, in_shape))
    else:
        rows, cols = output_shape
        if rows is None and cols is None:
            raise ValueError("imresize: output_shape needs at least one size")
        if rows is None:
            s = cols / in_shape[1]
            rows = int(math.ceil(s * in_shape[0]))
            scales = (s, s)
        elif cols is None:
            s = rows / in_shape[0]
            cols = int(math.ceil(s * in_shape[1]))
            scales = (s, s)
        else:
            scales = (rows / in_shape[0], cols / in_shape[1])
        out_shape = (int(rows), int(cols))
    # MATLAB resizes the dimension with the smallest scale first (stable for ties)
    order = sorted(range(2), key=lambda d: scales[d])
    for d in order:
        a = _resize_dim(a, d, out_shape[d], scales[d], antialiasing)
    if is_uint8:
        return _saturate_uint8(a)
    return a


def _saturate_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(matlab_round(a), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- rounding, types
def matlab_round(a: np.ndarray) -> np.ndarray:
    """MATLAB's ``round``: halves away from zero (numpy's ``round`` goes to even)."""
    a = np.asarray(a, dtype=np.float64)
    return np.sign(a) * np.floor(np.abs(a) + 0.5)


def im2double(img: np.ndarray) -> np.ndarray:
    """MATLAB ``im2double``: uint8 / 255, uint16 / 65535, floats unchanged (as float64)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float64) / 65535.0
    if img.dtype == np.bool_:
        return img.astype(np.float64)
    return img.astype(np.float64)


def im2uint8(img: np.ndarray) -> np.ndarray:
    """MATLAB ``im2uint8``: floats in [0, 1] times 255, rounded half away from zero, saturated."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.copy()
    if img.dtype == np.uint16:
        return _saturate_uint8(img.astype(np.float64) / 257.0)
    return _saturate_uint8(img.astype(np.float64) * 255.0)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of ``scale`` (top-left kept), as the SR code's ``modcrop``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale, ...]


# --------------------------------------------------------------------------- colour
_T = np.array([[65.481, 128.553, 24.966],
               [-37.797, -74.203, 112.0],
               [112.0, -93.786, -18.214]])
_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb2ycbcr(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr``: uint8 RGB -> uint8 YCbCr (rounded); float RGB in [0,1] -> float.

    Y lies in [16, 235] (uint8) or [16/255, 235/255] (float).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb2ycbcr: expected an H x W x 3 image, got shape {img.shape}")
    if img.dtype == np.uint8:
        t, off = _T / 255.0, _OFFSET
    else:
        t, off = _T / 255.0, _OFFSET / 255.0
    rgb = img.astype(np.float64)
    out = np.empty(rgb.shape, dtype=np.float64)
    for p in range(3):   # imlincomb: K1*A1 + K2*A2 + K3*A3 + K4, in double
        out[..., p] = t[p, 0] * rgb[..., 0] + t[p, 1] * rgb[..., 1] + t[p, 2] * rgb[..., 2] + off[p]
    if img.dtype == np.uint8:
        return _saturate_uint8(out)
    return out


def rgb2y(img: np.ndarray) -> np.ndarray:
    """The luminance channel of :func:`rgb2ycbcr` (same dtype rules)."""
    return rgb2ycbcr(img)[..., 0]


def ycbcr2rgb(img: np.ndarray) -> np.ndarray:
    """MATLAB ``ycbcr2rgb``: uint8 -> uint8 (rounded, saturated); float -> float clipped to [0, 1]."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"ycbcr2rgb: expected an H x W x 3 image, got shape {img.shape}")
    tinv = np.linalg.inv(_T)
    if img.dtype == np.uint8:
        t = tinv * 255.0
        ycc = img.astype(np.float64)
        out = np.empty(ycc.shape)
        # rgb255 = 255 * Tinv * (ycc - offset)
        for p in range(3):
            out[..., p] = (t[p, 0] * ycc[..., 0] + t[p, 1] * ycc[..., 1] + t[p, 2] * ycc[..., 2]
                           - 255.0 * (tinv[p] @ _OFFSET))
        return _saturate_uint8(out)
    ycc = img.astype(np.float64)
    out = np.empty(ycc.shape)
    for p in range(3):
        out[..., p] = (tinv[p, 0] * 255.0 * ycc[..., 0] + tinv[p, 1] * 255.0 * ycc[..., 1]
                       + tinv[p, 2] * 255.0 * ycc[..., 2] - tinv[p] @ _OFFSET)
    return np.clip(out, 0.0, 1.0)
