"""Image quality metrics and the two evaluation protocols of the paper.

All conventions are described once, in ``docs/evaluation.md``; this module implements them.

Metric functions (documented in the style of BasicSR's ``psnr_ssim.py``):

- :func:`psnr`: ``10 log10(data_range^2 / MSE)`` in float64; inputs in [0, 255] (uint8 or
  float, floats are *not* rounded or clipped), optional ``crop_border`` and Y-channel option.
- :func:`ssim`: Wang et al.'s ``ssim_index.m`` (11x11 Gaussian window, sigma 1.5, K1 0.01,
  K2 0.03, L 255, mean over the 'valid' part of the SSIM map), computed by
  ``skimage.metrics.structural_similarity`` with the settings that make it agree with the
  MATLAB code to 1e-14 (see ``shared/reference/README.md``).

Protocols:

- Denoising (:func:`add_noise`, :func:`noise_seed`): ``noisy = clean/255 + sigma/255 * randn``,
  float, unclipped, unrounded, seeded per (image, sigma) so every method sees the same noise;
  PSNR/SSIM of the float output times 255 against the uint8 clean image, no border crop
  (the authors' ``demo_denoising.m``).
- Super-resolution (:func:`sr_pair`, :func:`sr_scores`): Y of the uint8 RGB image (MATLAB
  ``rgb2ycbcr``, rounded to uint8), ``modcrop`` to a multiple of s, network input
  ``imresize(imresize(single(Y)/255, 1/s), s)`` (MATLAB bicubic, float, unrounded).
  Two scoring conventions:
  ``authors`` (the released ``demo_super_resolution.m``: float output times 255, no crop) and
  ``srcnn`` (SRCNN/VDSR evaluation code: output rounded to uint8 like MATLAB ``uint8()``,
  ``s`` pixels shaved from every border). The published bicubic baselines use ``srcnn``.

Lookup by name, as BasicSR's ``METRIC_REGISTRY`` and ``calculate_metric`` do it
(``basicsr/metrics/__init__.py``): :data:`METRIC_REGISTRY` holds ``psnr`` and ``ssim``,
:func:`calculate_metric` calls one from an options dict (``{"type": "psnr", "crop_border": 2}``),
and :data:`SR_PROTOCOL_REGISTRY` holds the two SR scoring conventions that :func:`sr_scores`
looks up (:data:`SR_PROTOCOLS` lists their names).
"""
from __future__ import annotations

import zlib

import numpy as np
from skimage.metrics import structural_similarity

from . import matlab
from .lookup import Registry

__all__ = ["psnr", "ssim", "to_y", "noise_seed", "add_noise", "sr_pair", "sr_scores",
           "denoise_scores", "calculate_metric", "METRIC_REGISTRY", "SR_PROTOCOL_REGISTRY",
           "SR_PROTOCOLS", "SSIM_KW"]

#: the image metrics by name: ``METRIC_REGISTRY.get("psnr")(img, ref, crop_border=...)``
METRIC_REGISTRY = Registry("metric")
#: the SR scoring conventions by name: ``f(output, hr_y, scale) -> (psnr, ssim)``
SR_PROTOCOL_REGISTRY = Registry("sr protocol")

#: skimage settings equal to Wang et al.'s ssim_index (Gaussian 11x11, sigma 1.5, valid region)
SSIM_KW = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _check_pair(img: np.ndarray, ref: np.ndarray, name: str) -> None:
    if img.shape != ref.shape:
        raise ValueError(f"{name}: image shapes differ: {img.shape} vs {ref.shape}")


def _crop(a: np.ndarray, crop_border: int) -> np.ndarray:
    if crop_border:
        return a[crop_border:-crop_border, crop_border:-crop_border, ...]
    return a


def to_y(img: np.ndarray) -> np.ndarray:
    """Luminance in [0, 255] of an H x W x 3 RGB image, as MATLAB ``rgb2ycbcr`` gives it.

    uint8 input: MATLAB's uint8 ``rgb2ycbcr`` (rounded to integers, Y in [16, 235]), returned
    as float64. Float input in [0, 255]: the unrounded ``rgb2ycbcr(img/255) * 255``.
    A 2-D image is returned unchanged (as float64).
    """
    img = np.asarray(img)
    if img.ndim == 2:
        return img.astype(np.float64)
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0].astype(np.float64)
    if img.dtype == np.uint8:
        return matlab.rgb2y(img).astype(np.float64)
    return matlab.rgb2y(img.astype(np.float64) / 255.0) * 255.0


def _prepare(img, ref, name: str, crop_border: int, test_y_channel: bool):
    """Both images checked, optionally reduced to luminance, as float64, borders cropped."""
    img, ref = np.asarray(img), np.asarray(ref)
    _check_pair(img, ref, name)
    if test_y_channel:
        img, ref = to_y(img), to_y(ref)
    return _crop(img.astype(np.float64), crop_border), _crop(ref.astype(np.float64), crop_border)


@METRIC_REGISTRY.register()
def psnr(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, test_y_channel: bool = False,
         data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB.

    Args:
        img: the image to score, H x W or H x W x C, values in [0, 255] (uint8 or float;
            floats are used as they are: no rounding, no clipping).
        ref: the reference image, same shape and range.
        crop_border: pixels removed from each border of both images before scoring.
        test_y_channel: score the luminance (:func:`to_y`) of RGB inputs instead of all channels.
        data_range: the peak value, 255 for images in [0, 255].

    Returns:
        ``10 * log10(data_range**2 / mean((img - ref)**2))`` over all pixels (and channels);
        ``inf`` for identical images.
    """
    a, b = _prepare(img, ref, "psnr", crop_border, test_y_channel)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range ** 2 / mse))


@METRIC_REGISTRY.register()
def ssim(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, test_y_channel: bool = False,
         data_range: float = 255.0) -> float:
    """Structural similarity as Wang et al.'s ``ssim_index.m`` computes it.

    Args:
        img, ref: H x W (or H x W x C: the mean over channels) in [0, 255], uint8 or float.
        crop_border: pixels removed from each border before scoring (the SSIM map is then the
            'valid' part of what remains: another 5 pixels on each side are not scored).
        test_y_channel: score the luminance of RGB inputs (:func:`to_y`).
        data_range: L in the SSIM constants C1 = (0.01 L)^2, C2 = (0.03 L)^2; 255 here.

    Returns:
        the mean SSIM over the valid region, a float in [-1, 1].
    """
    a, b = _prepare(img, ref, "ssim", crop_border, test_y_channel)
    if min(a.shape[:2]) < 11:
        raise ValueError(f"ssim: image of {a.shape[:2]} is smaller than the 11x11 window")
    if a.ndim == 3:
        return float(np.mean([structural_similarity(a[..., c], b[..., c], data_range=data_range,
                                                    **SSIM_KW) for c in range(a.shape[2])]))
    return float(structural_similarity(a, b, data_range=data_range, **SSIM_KW))


def calculate_metric(data: dict, opt: dict) -> float:
    """One metric by name, as BasicSR's ``calculate_metric``: ``opt["type"]`` names it in
    :data:`METRIC_REGISTRY`, the other keys of ``opt`` are its options, ``data`` holds the
    images (``{"img": ..., "ref": ...}``). ``opt`` is not changed."""
    opt = dict(opt)
    metric_type = opt.pop("type")
    return METRIC_REGISTRY.get(metric_type)(**data, **opt)


# --------------------------------------------------------------------------- denoising
def noise_seed(image_id: str, sigma: float, base_seed: int = 0) -> int:
    """The seed of the noise for one (image, sigma): a CRC32 of ``"<image_id>|<sigma>"`` plus
    ``base_seed``. Stable across runs, processes and machines, the same for every method."""
    key = f"{image_id}|{float(sigma):g}".encode()
    return (zlib.crc32(key) + int(base_seed) * 0x9E3779B1) % (2 ** 32)


def add_noise(clean: np.ndarray, sigma: float, image_id: str, base_seed: int = 0) -> np.ndarray:
    """``clean/255 + sigma/255 * randn``: float32, in [0, 1] plus noise, not clipped or rounded.

    ``clean`` is the uint8 image; the noise comes from numpy's PCG64 generator seeded with
    :func:`noise_seed` (standard normal, float64, then cast to float32 with the image, as the
    authors' ``single(...)`` arithmetic does).
    """
    clean = np.asarray(clean)
    if clean.dtype != np.uint8:
        raise ValueError(f"add_noise: expected a uint8 clean image, got {clean.dtype}")
    rng = np.random.default_rng(noise_seed(image_id, sigma, base_seed))
    noise = rng.standard_normal(clean.shape)
    return (clean.astype(np.float64) / 255.0 + (sigma / 255.0) * noise).astype(np.float32)


def denoise_scores(output: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(PSNR, SSIM) of a float output in [0, 1] (unclipped) against the uint8 clean image, no crop."""
    out255 = np.asarray(output, dtype=np.float64) * 255.0
    return psnr(out255, clean), ssim(out255, clean)


# --------------------------------------------------------------------------- super-resolution
def sr_pair(img: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR luminance uint8, bicubic network input float64 in about [0, 1]) for one test image.

    ``img``: uint8, gray (H x W) or RGB (H x W x 3). RGB becomes its MATLAB ``rgb2ycbcr``
    luminance (uint8); both are ``modcrop``-ed to a multiple of ``scale``; the input is
    ``imresize(imresize(Y/255, 1/scale), scale)`` with MATLAB's bicubic (antialiased when
    shrinking), in float: not rounded, not clipped.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"sr_pair: expected a uint8 image, got {img.dtype}")
    y = matlab.rgb2y(img) if img.ndim == 3 else img
    y = matlab.modcrop(y, scale)
    lr = matlab.imresize(y.astype(np.float64) / 255.0, 1.0 / scale)
    up = matlab.imresize(lr, float(scale))
    if up.shape != y.shape:   # by modcrop this cannot happen; guard the protocol anyway
        raise ValueError(f"sr_pair: bicubic round trip changed the size {y.shape} -> {up.shape}")
    return y, up


@SR_PROTOCOL_REGISTRY.register("authors")
def _sr_authors(output: np.ndarray, hr_y: np.ndarray, scale: int) -> tuple[float, float]:
    """The released RED-Net test code: output times 255, unrounded, whole image."""
    out = np.asarray(output, dtype=np.float64) * 255.0
    return psnr(out, hr_y), ssim(out, hr_y)


@SR_PROTOCOL_REGISTRY.register("srcnn")
def _sr_srcnn(output: np.ndarray, hr_y: np.ndarray, scale: int) -> tuple[float, float]:
    """SRCNN/VDSR evaluation code: output rounded to uint8, ``scale`` pixels shaved."""
    out = matlab.im2uint8(np.asarray(output, dtype=np.float64))
    return psnr(out, hr_y, crop_border=scale), ssim(out, hr_y, crop_border=scale)


#: the names of the SR scoring protocols, in registration order
SR_PROTOCOLS = SR_PROTOCOL_REGISTRY.keys()


def sr_scores(output: np.ndarray, hr_y: np.ndarray, scale: int,
              protocol: str = "authors") -> tuple[float, float]:
    """(PSNR, SSIM) of an SR output (float in [0, 1]) against the uint8 HR luminance.

    ``protocol="authors"``: output times 255, unrounded, whole image (the released RED-Net
    test code). ``protocol="srcnn"``: output rounded to uint8 as MATLAB's ``uint8(x*255)``
    (half away from zero, saturated) and ``scale`` pixels shaved from each border (SRCNN
    and VDSR evaluation code; the published bicubic baselines). Looked up in
    :data:`SR_PROTOCOL_REGISTRY`.
    """
    if protocol not in SR_PROTOCOL_REGISTRY:
        raise ValueError(f"sr protocol {protocol!r}: expected one of {', '.join(SR_PROTOCOLS)}")
    return SR_PROTOCOL_REGISTRY.get(protocol)(output, hr_y, scale)
