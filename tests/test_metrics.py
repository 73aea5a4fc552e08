"""Metrics and protocols: hand-computed values, an independent SSIM, the published bicubic numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import convolve2d

from rednet import matlab, metrics


# --------------------------------------------------------------------------- PSNR
def test_psnr_hand_computed():
    ref = np.zeros((4, 4), np.uint8)
    img = ref.copy()
    img[1, 2] = 255                      # MSE = 255^2 / 16  ->  PSNR = 10 log10(16)
    assert metrics.psnr(img, ref) == pytest.approx(10 * math.log10(16), abs=1e-12)
    # float input is used as is (no rounding): an error of 0.5 everywhere
    assert metrics.psnr(np.full((3, 3), 100.5), np.full((3, 3), 100, np.uint8)) == \
        pytest.approx(10 * math.log10(255 ** 2 / 0.25), abs=1e-12)
    assert metrics.psnr(ref, ref) == float("inf")


def test_psnr_crop_border():
    ref = np.zeros((6, 6), np.uint8)
    img = ref.copy().astype(np.float64)
    img[0, :] = 50                       # border row: gone with crop_border=1
    img[2, 3] = 8                        # inside: MSE = 64 / 16 = 4
    assert metrics.psnr(img, ref, crop_border=1) == pytest.approx(10 * math.log10(255 ** 2 / 4), abs=1e-12)
    assert metrics.psnr(img, ref) == pytest.approx(10 * math.log10(255 ** 2 / ((6 * 2500 + 64) / 36)), abs=1e-12)


def test_psnr_y_channel_uses_matlab_rgb2ycbcr():
    ref = np.zeros((2, 2, 3), np.uint8)                    # Y = 16 (black)
    img = ref.copy()
    img[0, 0] = (255, 0, 0)                                # pure red: Y = round(16 + 65.481) = 81
    y_err = 81 - 16
    want = 10 * math.log10(255 ** 2 / (y_err ** 2 / 4))
    assert metrics.psnr(img, ref, test_y_channel=True) == pytest.approx(want, abs=1e-12)
    # float RGB: unrounded Y = 16 + 65.481
    want_f = 10 * math.log10(255 ** 2 / (65.481 ** 2 / 4))
    assert metrics.psnr(img.astype(np.float64), ref.astype(np.float64), test_y_channel=True) == \
        pytest.approx(want_f, abs=1e-9)


# --------------------------------------------------------------------------- SSIM
def test_ssim_constant_images_hand_computed():
    """Constant images: sigma terms vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01*255)^2."""
    a, b = 100.0, 110.0
    c1 = (0.01 * 255) ** 2
    want = (2 * a * b + c1) / (a * a + b * b + c1)
    got = metrics.ssim(np.full((20, 20), a), np.full((20, 20), b))
    assert got == pytest.approx(want, abs=1e-12)
    assert metrics.ssim(np.full((20, 20), a), np.full((20, 20), a)) == pytest.approx(1.0, abs=1e-12)


def _ssim_index_numpy(img1, img2):
    """Wang et al.'s ssim_index.m written out: 11x11 Gaussian (sigma 1.5, normalised),
    filter2(..., 'valid'), K = (0.01, 0.03), L = 255, mean of the SSIM map."""
    x = np.arange(11) - 5
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5 ** 2))
    w = g / g.sum()
    f = lambda a: convolve2d(a, w[::-1, ::-1], mode="valid")  # noqa: E731  (filter2 = correlation)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    img1, img2 = img1.astype(np.float64), img2.astype(np.float64)
    mu1, mu2 = f(img1), f(img2)
    s1 = f(img1 * img1) - mu1 ** 2
    s2 = f(img2 * img2) - mu2 ** 2
    s12 = f(img1 * img2) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2))
    return m.mean()


def test_ssim_equals_wang_ssim_index():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (40, 53)).astype(np.uint8)
    img = np.clip(ref + rng.normal(0, 20, ref.shape), 0, 255)
    assert metrics.ssim(img, ref) == pytest.approx(_ssim_index_numpy(img, ref), abs=1e-12)
    # with a border crop it is the same computation on the cropped images
    assert metrics.ssim(img, ref, crop_border=3) == \
        pytest.approx(_ssim_index_numpy(img[3:-3, 3:-3], ref[3:-3, 3:-3]), abs=1e-12)


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        metrics.ssim(np.zeros((8, 30)), np.zeros((8, 30)))


# --------------------------------------------------------------------------- lookup by name
def test_metrics_by_name_as_basicsr_calculate_metric():
    """METRIC_REGISTRY / calculate_metric: the metric named by opt["type"], the rest its options."""
    assert metrics.METRIC_REGISTRY.keys() == ("psnr", "ssim")
    assert metrics.SR_PROTOCOLS == ("authors", "srcnn") == metrics.SR_PROTOCOL_REGISTRY.keys()
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (30, 30)).astype(np.uint8)
    img = np.clip(ref + rng.normal(0, 10, ref.shape), 0, 255)
    opt = {"type": "psnr", "crop_border": 2}
    assert metrics.calculate_metric({"img": img, "ref": ref}, opt) == metrics.psnr(img, ref, crop_border=2)
    assert opt == {"type": "psnr", "crop_border": 2}      # not consumed
    assert metrics.calculate_metric({"img": img, "ref": ref}, {"type": "ssim"}) == metrics.ssim(img, ref)
    with pytest.raises(KeyError, match="no metric named 'lpips': expected one of psnr, ssim"):
        metrics.calculate_metric({"img": img, "ref": ref}, {"type": "lpips"})


# --------------------------------------------------------------------------- denoising protocol
def test_noise_is_seeded_per_image_and_sigma_unclipped():
    clean = np.full((64, 64), 3, np.uint8)      # dark: noise goes below 0 and must stay there
    a = metrics.add_noise(clean, 30, "Set12/01")
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, metrics.add_noise(clean, 30, "Set12/01"))
    assert not np.array_equal(a, metrics.add_noise(clean, 30, "Set12/02"))
    assert not np.array_equal(a, metrics.add_noise(clean, 50, "Set12/01"))
    assert not np.array_equal(a, metrics.add_noise(clean, 30, "Set12/01", base_seed=1))
    n = (a.astype(np.float64) - 3 / 255) * 255
    assert abs(n.mean()) < 1.5 and abs(n.std() - 30) < 1.5
    assert a.min() < 0                          # not clipped
    assert not np.allclose(a * 255, np.round(a * 255))   # not rounded


def test_denoise_scores_float_output_no_crop():
    clean = np.full((16, 16), 100, np.uint8)
    out = clean / 255.0 + 2 / 255.0             # off by 2 grey levels everywhere, float
    p, s = metrics.denoise_scores(out, clean)
    assert p == pytest.approx(10 * math.log10(255 ** 2 / 4), abs=1e-9)


# --------------------------------------------------------------------------- SR protocol
def test_sr_pair_is_the_matlab_protocol():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (37, 50, 3)).astype(np.uint8)
    hr, up = metrics.sr_pair(rgb, 3)
    assert hr.shape == (36, 48) and hr.dtype == np.uint8
    np.testing.assert_array_equal(hr, matlab.rgb2ycbcr(rgb)[:36, :48, 0])
    want = matlab.imresize(matlab.imresize(hr / 255.0, 1 / 3), 3.0)
    np.testing.assert_allclose(up, want, atol=0)


def test_sr_scores_protocols():
    hr = np.full((20, 20), 100, np.uint8)
    out = np.full((20, 20), 100.4 / 255)        # rounds back to 100 under srcnn
    out[0, :] = 0                               # a bad border row: shaved by srcnn (s=2)
    p_auth, _ = metrics.sr_scores(out, hr, 2, "authors")
    mse = (19 * 20 * 0.4 ** 2 + 20 * 100 ** 2) / 400
    assert p_auth == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-6)
    p_srcnn, s_srcnn = metrics.sr_scores(out, hr, 2, "srcnn")
    assert p_srcnn == float("inf") and s_srcnn == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sr protocol"):
        metrics.sr_scores(out, hr, 2, "other")


@pytest.mark.datasets
def test_set5_bicubic_reproduces_published(datasets_dir):
    """SRCNN/VDSR protocol on Set5: 33.66/30.39/28.42 dB, SSIM 0.9299/0.8682/0.8104."""
    from rednet.datasets import load_set
    published = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}
    images = load_set("Set5", datasets_dir)
    assert len(images) == 5
    for s, (pp, ps) in published.items():
        scores = [metrics.sr_scores(up, hr, s, "srcnn") for hr, up in
                  (metrics.sr_pair(img, s) for _, img in images)]
        p, q = np.mean(scores, axis=0)
        assert abs(p - pp) <= 0.005 + 1e-9, (s, p)      # equal at the published 2 decimals
        assert abs(q - ps) <= 0.0005, (s, q)
