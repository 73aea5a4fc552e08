"""rednet.imageio_ml: every image mode loads as MATLAB's imread sees it (module table).

Files are written by Pillow / OpenCV in each mode, then read back through the project.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from rednet import imageio_ml as io
from rednet import matlab
from rednet.errors import UserError


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)


def test_gray_and_rgb_are_unchanged(tmp_path, rgb):
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    for f, want in (("g.png", rgb[..., 0]), ("c.png", rgb)):
        a = io.imread(tmp_path / f)
        assert a.dtype == np.uint8 and a.shape == want.shape
        np.testing.assert_array_equal(a, want)
        np.testing.assert_array_equal(io.load_image(tmp_path / f), want)


def test_rgb_with_equal_channels_stays_rgb_and_uses_rgb2ycbcr(tmp_path, rgb):
    g = rgb[..., 1]
    Image.fromarray(np.dstack([g, g, g])).save(tmp_path / "eq.png")
    a = io.load_image(tmp_path / "eq.png")
    assert a.shape == g.shape + (3,)
    y = io.to_luma(a)
    np.testing.assert_array_equal(y, matlab.rgb2y(a))
    # MATLAB's Y of a gray RGB pixel v is round(16 + 219/255 v), not v itself
    np.testing.assert_array_equal(y, np.floor(16 + 219 / 255 * g.astype(float) + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(io.to_gray(a), g)       # rgb2gray of equal channels is v
    np.testing.assert_array_equal(io.to_luma(g), g)       # a 2-D image is its own luminance


def test_palette_gives_indices_to_imread_and_colours_to_load_image(tmp_path, rgb):
    pal_img = Image.fromarray(rgb).quantize(colors=16)
    pal_img.save(tmp_path / "p.png")
    idx = io.imread(tmp_path / "p.png")
    assert idx.ndim == 2 and idx.dtype == np.uint8 and idx.max() < 16
    np.testing.assert_array_equal(idx, np.asarray(pal_img))
    colours = io.load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(colours, np.asarray(pal_img.convert("RGB")))
    assert colours.shape == rgb.shape
    # a GIF palette image too
    pal_img.save(tmp_path / "p.gif")
    np.testing.assert_array_equal(io.load_image(tmp_path / "p.gif"), colours)


def test_16bit_gray_and_rgb(tmp_path):
    rng = np.random.default_rng(1)
    g16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    c16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    cv2.imwrite(str(tmp_path / "c16.png"), c16[..., ::-1])          # OpenCV writes BGR
    a = io.imread(tmp_path / "g16.png")
    assert a.dtype == np.uint16
    np.testing.assert_array_equal(a, g16)
    c = io.imread(tmp_path / "c16.png")
    assert c.dtype == np.uint16
    np.testing.assert_array_equal(c, c16)
    np.testing.assert_array_equal(io.load_image(tmp_path / "g16.png"),
                                  matlab.im2uint8(g16))               # round(x / 257)
    np.testing.assert_array_equal(io.load_image(tmp_path / "c16.png"), matlab.im2uint8(c16))
    assert io.load_image(tmp_path / "c16.png").dtype == np.uint8


def test_alpha_is_dropped_and_1bit_is_logical(tmp_path, rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(io.load_image(tmp_path / "a.png"), rgb)
    Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(io.load_image(tmp_path / "la.png"), rgb[..., 0])
    bits = rgb[..., 0] > 127
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert io.imread(tmp_path / "b.png").dtype == bool
    np.testing.assert_array_equal(io.load_image(tmp_path / "b.png"), bits.astype(np.uint8) * 255)


def test_rgb2gray_matches_matlab_values():
    # MATLAB: rgb2gray(uint8(cat(3,255,0,0))) = 76, green 150, blue 29, white 255
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(io.rgb2gray(px)[0], [76, 150, 29, 255])
    np.testing.assert_allclose(io.rgb2gray(px / 255.0)[0], [0.298936021293776, 0.587043074451121,
                                                            0.114020904255103, 1.0], atol=1e-12)


def test_undecodable_and_missing_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    for f in ("bad.png", "bad.jpg"):
        with pytest.raises(UserError, match=rf"{f}: cannot decode image") as e:
            io.load_image(tmp_path / f)
        assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="image file not found"):
        io.load_image(tmp_path / "none.png")
    Image.new("CMYK", (4, 4)).save(tmp_path / "cmyk.jpg")
    with pytest.raises(UserError, match="unsupported image mode 'CMYK'"):
        io.load_image(tmp_path / "cmyk.jpg")
