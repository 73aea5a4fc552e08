"""Images as MATLAB's ``imread`` sees them, and the project's view built on it.

The authors' MATLAB code reads every image with ``im = imread(file)`` and then branches on
``size(im, 3) == 3`` (``rgb2ycbcr`` for super-resolution, ``rgb2gray`` for gray denoising).
What that code sees therefore depends on the file's mode:

| file                         | ``imread`` (MATLAB, and :func:`imread`) | :func:`load_image` (the project)          |
|------------------------------|-----------------------------------------|-------------------------------------------|
| 8-bit gray                   | uint8 HxW                               | the same                                  |
| 8-bit RGB                    | uint8 HxWx3                             | the same                                  |
| RGB with equal channels      | uint8 HxWx3 (still 3 channels)          | the same (so SR takes ``rgb2ycbcr`` Y)    |
| gray/RGB with alpha          | alpha dropped (it is imread's 3rd output)| the same                                 |
| palette (indexed)            | uint8 HxW of 0-based palette *indices*  | uint8 HxWx3 of the palette colours        |
| 16-bit gray / RGB            | uint16                                  | uint8 by ``im2uint8`` (``round(x/257)``)  |
| 1-bit                        | logical                                 | uint8 0/255 (``im2uint8``)                |

The project deliberately departs from MATLAB for palette images: a single-output
``imread`` returns the index matrix, which the reference code would then treat as
intensities; :func:`load_image` applies the palette instead (``ind2rgb`` + ``im2uint8``,
exact since palette entries are 8-bit).  CMYK JPEGs and other modes are refused.
JPEG is decoded by Pillow (libjpeg-turbo, integer DCT, fancy upsampling), which
reproduces the decodes the BSD100/BSD300 PNGs were made from exactly (tested).
EXIF orientation is ignored, as MATLAB ignores it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import UserError

# MATLAB rgb2gray: the first row of inv(NTSC matrix), 0.298936021293776 etc.
_RGB2GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621],
                                    [1.0, -0.272, -0.647],
                                    [1.0, -1.106, 1.703]]))[0]


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG file, None for other formats."""
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 26:
        return None
    return head[24], head[25]


def _read_16bit_png(path: Path) -> np.ndarray:
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{path}: cannot decode image (16-bit PNG)")
    if img.ndim == 3:
        img = img[..., :3][..., ::-1]            # BGR(A) -> RGB, alpha dropped
    return np.ascontiguousarray(img.astype(np.uint16))


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError
    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: cannot decode image ({e})") from None
    return im


def imread(path: os.PathLike | str) -> np.ndarray:
    """MATLAB's ``imread(path)`` (first output): see the module table."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image file not found")
    hdr = _png_header(path)
    if hdr is not None and hdr[0] == 16:
        return _read_16bit_png(path)
    im = _open(path)
    mode = im.mode
    if mode in ("P", "PA"):
        return np.asarray(im.convert("P") if mode == "PA" else im, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(im, dtype=bool).copy()
    if mode == "L":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode == "LA":
        return np.asarray(im, dtype=np.uint8)[..., 0].copy()
    if mode in ("RGB", "RGBA", "RGBX"):
        return np.asarray(im, dtype=np.uint8)[..., :3].copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I" and hdr is None:
        a = np.asarray(im)
        if a.min() >= 0 and a.max() <= 65535:
            return a.astype(np.uint16)
    raise UserError(f"{path}: unsupported image mode {mode!r} (expected gray, RGB, palette, 16-bit or 1-bit)")


def alpha_of(path: os.PathLike | str) -> np.ndarray | None:
    """The alpha channel of an image file at its own depth (uint8 or uint16 H x W), or None
    when it has none (MATLAB returns it as imread's third output; the restore command passes it
    through)."""
    import cv2
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None or a.ndim != 3 or a.shape[2] != 4:
        return None
    return np.ascontiguousarray(a[..., 3])


def palette_of(path: os.PathLike | str) -> np.ndarray:
    """The colour map of a palette image as uint8 Kx3 (MATLAB's ``map`` times 255)."""
    im = _open(Path(path))
    if im.mode not in ("P", "PA"):
        raise UserError(f"{path}: not a palette image (mode {im.mode})")
    pal = np.array(im.getpalette("RGB") or [], dtype=np.uint8)
    return pal[: len(pal) // 3 * 3].reshape(-1, 3)


def im2uint8_any(img: np.ndarray) -> np.ndarray:
    """MATLAB ``im2uint8`` for uint8 / uint16 / logical images."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    if img.dtype == np.uint16:
        return np.floor(img.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    raise TypeError(f"im2uint8_any: unsupported dtype {img.dtype}")


def load_image(path: os.PathLike | str) -> np.ndarray:
    """The project's view of an image file: uint8, HxW (gray) or HxWx3 (colour).

    Exactly MATLAB's ``imread`` for 8-bit gray and RGB files; palette images get their
    palette applied, 16-bit and 1-bit images go through ``im2uint8`` (module table).
    """
    path = Path(path)
    img = imread(path)
    if img.ndim == 2 and img.dtype == np.uint8 and _is_palette(path):
        pal = palette_of(path)
        idx = np.minimum(img, len(pal) - 1)
        return np.ascontiguousarray(pal[idx])
    return np.ascontiguousarray(im2uint8_any(img))


def _is_palette(path: Path) -> bool:
    hdr = _png_header(path)
    if hdr is not None:
        return hdr[1] == 3
    from PIL import Image
    with Image.open(path) as im:
        return im.mode in ("P", "PA")


def rgb2gray(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray``: 2-D input is returned as is; uint8 RGB -> uint8 rounded
    (``0.298936*R + 0.587043*G + 0.114021*B``); float RGB -> float."""
    if img.ndim == 2:
        return img
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb2gray: expected HxW or HxWx3, got {img.shape}")
    g = img[..., :3].astype(np.float64) @ _RGB2GRAY
    if img.dtype == np.uint8:
        return np.clip(np.floor(g + 0.5), 0, 255).astype(np.uint8)
    if img.dtype == np.uint16:
        return np.clip(np.floor(g + 0.5), 0, 65535).astype(np.uint16)
    return g.astype(img.dtype)


def to_gray(img: np.ndarray) -> np.ndarray:
    """Gray uint8 for denoising: 2-D stays, RGB goes through MATLAB ``rgb2gray``."""
    return rgb2gray(img)


def to_luma(img: np.ndarray) -> np.ndarray:
    """Luminance uint8 for super-resolution, as the authors' test code: ``rgb2ycbcr`` Y
    when the image has 3 channels (also when they are equal), the image itself when 2-D."""
    if img.ndim == 2:
        return img
    from . import matlab
    return matlab.rgb2y(img)
