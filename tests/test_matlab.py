"""rednet.matlab against MATLAB's own outputs (shared reference vectors) and MATLAB's rules.

Every case in ``matlab_imresize/`` (cases.json: 14 small cases; two butterfly cases as .npy)
must agree to 1e-10.  The other tests check documented MATLAB behaviour that the vectors do
not cover (scale-factor form, uint8 rounding, rgb2ycbcr constants, modcrop).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from rednet import matlab
from rednet.imageio_ml import load_image

TOL = 1e-10


def _cases(reference_dir):
    return json.loads((reference_dir / "matlab_imresize" / "cases.json").read_text())


def test_all_small_cases_agree_with_matlab(reference_dir):
    cases = _cases(reference_dir)["small_cases"]
    assert len(cases) == 14
    for case in cases:
        x = np.array(case["input"], dtype=np.float64)
        want = np.array(case["matlab_output"], dtype=np.float64)
        got = matlab.imresize(x, output_shape=tuple(case["output_size"]),
                              antialiasing=case["antialiasing"])
        assert got.shape == want.shape, case["name"]
        err = np.abs(got - want).max()
        assert err <= TOL, f"{case['name']}: max |diff| {err:.3g}"


@pytest.mark.parametrize("aa", [False, True])
def test_butterfly_cases_agree_with_matlab(reference_dir, aa):
    ref = reference_dir / "matlab_imresize"
    cases = {c["name"]: c for c in _cases(reference_dir)["image_cases"]}
    case = cases[f"down_down_butterfly_irregular_{'aa' if aa else 'noaa'}"]
    assert case["antialiasing"] is aa
    x = matlab.im2double(load_image(ref / "butterfly.png"))
    want = np.load(ref / case["matlab_output"])
    got = matlab.imresize(x, output_shape=tuple(case["output_size"]), antialiasing=aa)
    assert got.shape == want.shape == (123, 234, 3)
    assert np.abs(got - want).max() <= TOL


def test_every_reference_file_is_used(reference_dir):
    """No case in the folder goes untested (a new .npy would need a test)."""
    ref = reference_dir / "matlab_imresize"
    used = {c["matlab_output"] for c in _cases(reference_dir)["image_cases"]}
    assert {p.name for p in ref.glob("*.npy")} == used


def test_antialiasing_matters_when_shrinking(reference_dir):
    cases = {c["name"]: c for c in _cases(reference_dir)["small_cases"]}
    x = np.array(cases["down_down_aa"]["input"], dtype=np.float64)
    a = matlab.imresize(x, output_shape=(3, 4), antialiasing=True)
    b = matlab.imresize(x, output_shape=(3, 4), antialiasing=False)
    assert np.abs(a - b).max() > 0.1


def test_scale_form_equals_size_form_after_modcrop():
    rng = np.random.default_rng(1)
    x = rng.random((24, 36))
    for s in (2, 3, 4):
        hr = matlab.modcrop(x, s)
        assert hr.shape[0] % s == 0 and hr.shape[1] % s == 0
        by_scale = matlab.imresize(hr, 1 / s)
        by_size = matlab.imresize(hr, output_shape=(hr.shape[0] // s, hr.shape[1] // s))
        np.testing.assert_allclose(by_scale, by_size, rtol=0, atol=1e-12)
        up = matlab.imresize(by_scale, s)
        assert up.shape == hr.shape


def test_uint8_in_uint8_out_rounded_like_matlab():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    got = matlab.imresize(x, 0.5)
    ref = matlab.imresize(x.astype(np.float64), 0.5)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.clip(np.floor(ref + 0.5), 0, 255).astype(np.uint8))


def test_matlab_round_halves_away_from_zero():
    np.testing.assert_array_equal(matlab.matlab_round(np.array([0.5, 1.5, 2.5, -0.5, -2.5])),
                                  [1, 2, 3, -1, -3])
    np.testing.assert_array_equal(matlab.im2uint8(np.array([0.5 / 255, 2.5 / 255, 1.2, -0.1])),
                                  np.array([1, 3, 255, 0], dtype=np.uint8))


def test_rgb2ycbcr_uint8_and_double():
    # MATLAB: rgb2ycbcr(uint8([255 0 0])) = [81 90 240]; white -> 235, black -> 16
    rgb = np.array([[[255, 0, 0], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    np.testing.assert_array_equal(matlab.rgb2ycbcr(rgb)[0], [[81, 90, 240], [235, 128, 128], [16, 128, 128]])
    d = matlab.rgb2ycbcr(rgb.astype(np.float64) / 255)
    np.testing.assert_allclose(d[0, 0] * 255, [81.481, 90.203, 240.0], atol=1e-9)
    assert matlab.rgb2y(rgb).dtype == np.uint8
    back = matlab.ycbcr2rgb(matlab.rgb2ycbcr(rgb))
    assert np.abs(back.astype(int) - rgb).max() <= 2


def test_modcrop_keeps_top_left():
    x = np.arange(7 * 10).reshape(7, 10)
    np.testing.assert_array_equal(matlab.modcrop(x, 3), x[:6, :9])
