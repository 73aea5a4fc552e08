"""rednet.datasets: registry, sha256 manifests, the denoise14 reconstruction, download.

The download tests run the real code path (urllib, tarfile, hashing, staging) against a
local HTTP server on 127.0.0.1 serving archives the test builds from the official JPEGs.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ArchiveServer, tgz

from rednet import datasets as D
from rednet import matlab
from rednet.errors import UserError
from rednet.imageio_ml import load_image

ROOT = Path(__file__).resolve().parents[1]


def _copy_sets(src: Path, dst: Path, folders) -> Path:
    for f in folders:
        shutil.copytree(src / f, dst / f)
    return dst


# --------------------------------------------------------------------------- registry
def test_every_set_verifies_and_has_the_documented_size(datasets_dir):
    sizes = {"BSD300": 300, "BSD300-train": 200, "BSD300-test": 100, "BSD200": 200,
             "BSD100": 100, "Set5": 5, "Set14": 14, "Set12": 12, "denoise14": 14,
             "denoise-extra": 5}
    assert set(sizes) == set(D.NAMES)
    for name, n in sizes.items():
        files = D.list_images(name, datasets_dir)
        assert len(files) == n == len(set(files)), name
        assert D.verify(name, datasets_dir) >= n


def test_bsd300_follows_the_official_split(datasets_dir):
    files = D.list_images("BSD300", datasets_dir)
    train = (datasets_dir / "BSD300" / "iids_train.txt").read_text().split()
    test = (datasets_dir / "BSD300" / "iids_test.txt").read_text().split()
    assert [p.stem for p in files] == train + test
    assert {p.suffix for p in files[:200]} == {".png"} and {p.suffix for p in files[200:]} == {".jpg"}
    # BSD200 (BSDS500 test) is disjoint from the 300 training images
    assert not {p.stem for p in D.list_images("BSD200", datasets_dir)} & set(train + test)


def test_altered_and_missing_files_are_named_with_their_hash(datasets_dir, tmp_path):
    root = _copy_sets(datasets_dir, tmp_path, ["Set5"])
    expected = D.read_manifest(D.MANIFESTS / "Set5.sha256")["Set5/bird.png"]
    assert D.verify("Set5", root) == 5
    f = root / "Set5" / "bird.png"
    data = bytearray(f.read_bytes())
    data[-20] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(UserError) as e:
        D.verify("Set5", root)
    msg = str(e.value)
    assert "bird.png" in msg and expected in msg and "\n" not in msg
    f.unlink()
    with pytest.raises(UserError, match=rf"bird\.png: missing \(expected sha256 {expected}\)"):
        D.verify("Set5", root)
    with pytest.raises(UserError, match="bird.png: missing"):
        D.load_set("Set5", root, verify=False)


def test_cli_verify_exit_status_and_one_line(datasets_dir, tmp_path):
    root = _copy_sets(datasets_dir, tmp_path, ["Set12"])
    (root / "Set12" / "03.png").write_bytes(b"not the image")
    r = subprocess.run([str(ROOT / "bin" / "python"), "-m", "rednet", "datasets", "verify", "Set12",
                        "--datasets", str(root)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "03.png" in lines[0]
    r = subprocess.run([str(ROOT / "bin" / "python"), "-m", "rednet", "datasets", "list"],
                       capture_output=True, text=True, cwd=ROOT,
                       env={"DATASETS": str(tmp_path / "nope"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr


def test_missing_datasets_folder(tmp_path):
    for fn in (D.verify, D.list_images, D.load_set):
        with pytest.raises(UserError, match="folder does not exist"):
            fn("Set5", tmp_path / "nowhere")
    with pytest.raises(UserError, match="expected one of"):
        D.list_images("Set6", tmp_path)


def test_denoise14_halves_the_512_images_with_matlab_bicubic(datasets_dir):
    s12 = dict(D.load_set("Set12", datasets_dir))
    extra = dict(D.load_set("denoise-extra", datasets_dir))
    got = D.load_set("denoise14", datasets_dir)
    names = [n for n, _ in got]
    assert names == sorted(s12) + list(D.DENOISE14_DEFAULT_EXTRAS)
    for name, img in got:
        assert img.shape == (256, 256) and img.dtype == np.uint8, name
        src = s12.get(name, extra.get(name))
        if src.shape == (512, 512):
            np.testing.assert_array_equal(img, matlab.imresize(src, 0.5))
            assert not np.array_equal(img, src[::2, ::2])
        else:
            np.testing.assert_array_equal(img, src)
    assert sum(s12[n].shape == (512, 512) for n in s12) == 5
    other = D.load_set("denoise14", datasets_dir, extras=("hill", "leaves"))
    assert [n for n, _ in other][-2:] == ["hill", "leaves"]
    np.testing.assert_array_equal(other[-2][1], matlab.imresize(extra["hill"], 0.5))
    for bad in (("hill",), ("hill", "hill"), ("hill", "lena")):
        with pytest.raises(UserError, match="denoise14 extras"):
            D.load_set("denoise14", datasets_dir, extras=bad)


def test_bsd100_is_a_crop_of_the_decoded_official_jpegs(bsd_datasets):
    """Our JPEG decoding reproduces the decodes the benchmark PNGs were made from, exactly."""
    mapping = (bsd_datasets / "BSD100" / "mapping_img_to_bsd_id.txt").read_text().splitlines()[1:]
    assert len(mapping) == 100
    for line in mapping:
        fname, iid, _ = line.split()
        png = load_image(bsd_datasets / "BSD100" / fname)
        jpg = load_image(bsd_datasets / "BSD300" / "images" / "test" / f"{iid}.jpg")
        np.testing.assert_array_equal(png, jpg[: png.shape[0], : png.shape[1]])


def test_set14_modes_are_as_documented(datasets_dir):
    imgs = dict(D.load_set("Set14", datasets_dir))
    assert imgs["bridge"].ndim == 2
    man = imgs["man"]
    assert man.ndim == 3 and np.array_equal(man[..., 0], man[..., 2])
    assert all(v.ndim == 3 for k, v in imgs.items() if k != "bridge")


# --------------------------------------------------------------------------- download
@pytest.fixture(scope="module")
def server():
    s = ArchiveServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def bsds500(bsd_datasets):
    """An archive laid out like BSR_bsds500.tgz with the 200 official test JPEGs (+ noise)."""
    members = {f"BSR/BSDS500/data/images/test/{p.name}": p.read_bytes()
               for p in sorted((bsd_datasets / "BSD200").glob("*.jpg"))}
    members["BSR/BSDS500/data/images/test/Thumbs.db"] = b"x"
    members["BSR/bench/README"] = b"not needed"
    return members


def test_download_unpacks_only_verified_files(server, bsds500, tmp_path):
    server.files["good500.tgz"] = tgz(bsds500)
    root = tmp_path / "ds"
    D.download(root, sets=("BSD200",), bsds500_url=server.url + "good500.tgz", progress=False)
    assert sorted(p.name for p in (root / "BSD200").iterdir()) == sorted(
        Path(m).name for m in bsds500 if m.endswith(".jpg"))
    assert D.verify("BSD200", root) == 200
    assert not (root / "BSR").exists()
    assert not (root / ".download" / "staging-BSD200").exists()
    # a second call finds everything in place and re-verifies, without a server
    D.download(root, sets=("BSD200",), bsds500_url=server.url + "gone.tgz", progress=False)


def test_download_truncated_transfer(server, bsds500, tmp_path):
    server.files["short.tgz"] = tgz(bsds500)
    server.truncate.add("short.tgz")
    root = tmp_path / "ds"
    with pytest.raises(UserError, match="truncated|interrupted") as e:
        D.download(root, sets=("BSD200",), bsds500_url=server.url + "short.tgz", progress=False)
    assert "\n" not in str(e.value)
    assert not (root / "BSD200").exists()
    assert list((root / ".download").iterdir()) == []       # no .part, no archive left


def test_download_wrong_file_in_archive(server, bsds500, tmp_path):
    members = dict(bsds500)
    bad = "BSR/BSDS500/data/images/test/100007.jpg"
    members[bad] = members[bad][:-100] + b"\0" * 100
    server.files["wrong.tgz"] = tgz(members)
    root = tmp_path / "ds"
    official = D.official_bsds500_test()["BSD200/100007.jpg"][0]
    with pytest.raises(UserError) as e:
        D.download(root, sets=("BSD200",), bsds500_url=server.url + "wrong.tgz", progress=False)
    assert "100007.jpg" in str(e.value) and official in str(e.value)
    assert not (root / "BSD200").exists()


def test_download_broken_archive_and_missing_members(server, bsds500, bsd_datasets, tmp_path):
    blob = tgz(bsds500)
    server.files["cut.tgz"] = blob[: len(blob) * 2 // 3]   # complete transfer of a cut archive
    root = tmp_path / "ds"
    with pytest.raises(UserError, match="broken or truncated archive"):
        D.download(root, sets=("BSD200",), bsds500_url=server.url + "cut.tgz", progress=False)
    assert not (root / "BSD200").exists()
    # a BSDS300-like archive without the training JPEGs: named, nothing placed
    tests = {f"BSDS300/images/test/{p.name}": p.read_bytes()
             for p in sorted((bsd_datasets / "BSD300" / "images" / "test").glob("*.jpg"))}
    server.files["bsds300.tgz"] = tgz(tests)
    with pytest.raises(UserError, match=r"200 expected files missing, e\.g\. BSDS300/images/train/"):
        D.download(root, sets=("BSD300",), bsds300_url=server.url + "bsds300.tgz", progress=False)
    assert not (root / "BSD300").exists()
    with pytest.raises(UserError, match="download failed"):
        D.download(root, sets=("BSD300",), bsds300_url=server.url + "missing.tgz", progress=False)


def test_downloaded_jpegs_count_as_bsd300(bsd_datasets, tmp_path):
    """Training images as the official JPEGs (what `download` writes) are accepted and
    checked against Berkeley's hashes; the PNG decodes are checked against our manifest."""
    root = _copy_sets(bsd_datasets, tmp_path, ["BSD300"])
    png = root / "BSD300" / "images" / "train" / "2092.png"
    png.unlink()
    official = D.official_bsds300()["BSD300/images/train/2092.jpg"][0]
    with pytest.raises(UserError, match="2092.png: missing .*"):
        D.verify("BSD300", root)
    (root / "BSD300" / "images" / "train" / "2092.jpg").write_bytes(b"\xff\xd8 not it")
    with pytest.raises(UserError, match=f"2092.jpg: sha256 .* differs from the expected {official}"):
        D.verify("BSD300", root)


def test_matlab_halving_is_the_closest_to_published_256_versions(datasets_dir):
    """Evidence for the denoise14 recipe: 256x256 Couple and Fingerprint as distributed
    with other denoising code are nearer to MATLAB's antialiased bicubic halving of the
    512 originals than to plain subsampling or a resize without antialiasing."""
    import cv2
    pub = datasets_dir / "denoise-extra" / "published-256"
    for src, name in (("Set12/12.png", "couple"), ("denoise-extra/fingerprint.png", "fingerprint")):
        x = load_image(datasets_dir / src)
        y = load_image(pub / f"{name}.png").astype(float)
        err = {k: np.abs(v.astype(float) - y).mean() for k, v in {
            "matlab": matlab.imresize(x, 0.5),
            "matlab_noaa": matlab.imresize(x, 0.5, antialiasing=False),
            "subsample": x[::2, ::2],
            "cv2_area": cv2.resize(x, (256, 256), interpolation=cv2.INTER_AREA),
            "cv2_cubic": cv2.resize(x, (256, 256), interpolation=cv2.INTER_CUBIC)}.items()}
        assert min(err, key=err.get) == "matlab", (name, err)
