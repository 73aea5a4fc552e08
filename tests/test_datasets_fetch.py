"""The images that ship with the project (data/images) and the BSD sets fetched when missing.

The fetch tests run the real code path of a command that needs a missing set (urllib,
tarfile, hashing, staging, the folder lock) in a subprocess, against a local HTTP server on
127.0.0.1 (conftest.ArchiveServer) serving an archive laid out like Berkeley's, built from
the official JPEGs.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ArchiveServer, tgz

from rednet import datasets as D
from rednet import paths
from rednet.errors import UserError
from rednet.imageio_ml import load_image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("Set5", "Set14", "Set12", "denoise-extra")


def _rednet(*args, env_extra=None, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("DATASETS", "BSDS300_URL", "BSDS500_URL")}
    env.update(env_extra or {})
    return subprocess.run([str(ROOT / "bin" / "python"), "-m", "rednet", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


# --------------------------------------------------------------------------- shipped images
def test_the_small_sets_ship_with_the_project_and_match_their_manifests():
    """data/images holds every file the manifests of Set5, Set14, Set12 and denoise-extra
    list, byte for byte, and nothing else but its README."""
    listed = set()
    for folder in SHIPPED:
        for rel, digest in D.read_manifest(D.MANIFESTS / f"{folder}.sha256").items():
            assert D.sha256_file(D.EMBEDDED / rel) == digest, rel
            listed.add(rel)
    present = {p.relative_to(D.EMBEDDED).as_posix() for p in D.EMBEDDED.rglob("*") if p.is_file()}
    assert present - listed == {"README.md"}
    assert sum((D.EMBEDDED / r).stat().st_size for r in listed) < 8 * 2**20


def test_a_datasets_folder_without_the_small_sets_reads_the_shipped_ones(tmp_path):
    empty = tmp_path / "ds"
    empty.mkdir()
    for name, n in (("Set5", 5), ("Set14", 14), ("Set12", 12), ("denoise14", 14), ("denoise-extra", 5)):
        files = D.list_images(name, empty, verify=True)
        assert len(files) == n and all(p.is_relative_to(D.EMBEDDED) for p in files), name


def test_the_default_datasets_folder_need_not_exist(tmp_path, monkeypatch):
    monkeypatch.delenv("DATASETS", raising=False)
    monkeypatch.setattr(paths, "DEFAULT_DATASETS", tmp_path / "not-yet")
    assert len(D.load_set("Set5")) == 5
    with pytest.raises(D.SetMissing, match=r"not-yet/BSD200: missing .*`make datasets`"):
        D.list_images("BSD200")              # REDNET_OFFLINE=1 in the tests
    assert not (tmp_path / "not-yet").exists()


def test_a_copy_in_the_datasets_folder_is_read_instead_and_checked_alike(tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(D.EMBEDDED / "Set5", root / "Set5")
    files = D.list_images("Set5", root)
    assert all(p.is_relative_to(root) for p in files)
    f = root / "Set5" / "bird.png"
    data = bytearray(f.read_bytes())
    data[-20] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"Set5/bird\.png: sha256 .* differs"):
        D.verify("Set5", root)          # a damaged copy is refused, never swapped for the shipped one


def test_a_damaged_shipped_image_is_named(tmp_path, monkeypatch):
    shipped = tmp_path / "images"
    shutil.copytree(D.EMBEDDED, shipped)
    monkeypatch.setattr(D, "EMBEDDED", shipped)
    (shipped / "Set12" / "07.png").write_bytes(b"not the image")
    empty = tmp_path / "ds"
    empty.mkdir()
    with pytest.raises(UserError, match=r"images/Set12/07\.png: sha256 .* differs"):
        D.load_set("denoise14", empty)


def test_a_named_datasets_folder_must_exist(tmp_path):
    with pytest.raises(UserError, match="folder does not exist"):
        D.list_images("Set5", tmp_path / "typo")


# --------------------------------------------------------------------------- missing BSD sets, offline
def test_a_missing_bsd_set_offline_is_one_line_naming_where_and_how(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    for name, folder in (("BSD200", "BSD200"), ("BSD300", "BSD300"), ("BSD100", "BSD100")):
        r = _rednet("datasets", "verify", name, "--datasets", str(root), env_extra={"REDNET_OFFLINE": "1"})
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert f"{root / folder}: missing" in lines[0]
        assert f"make datasets DATASETS={root}" in lines[0] and "docs/data.md" in lines[0]
    assert sorted(p.name for p in root.iterdir()) == []        # nothing made there


def test_a_failed_fetch_is_one_line_and_leaves_nothing(tmp_path):
    """With fetching on, an address that does not answer: the reason, what to do, nothing left."""
    root = tmp_path / "ds"
    root.mkdir()
    r = _rednet("datasets", "verify", "BSD200", "--datasets", str(root),
                env_extra={"REDNET_OFFLINE": "0", "BSDS500_URL": "http://127.0.0.1:9/none.tgz"})
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and "fetching it failed" in err[-1] and "127.0.0.1:9" in err[-1]
    assert "make datasets" in err[-1]
    assert list(root.iterdir()) == []


# --------------------------------------------------------------------------- fetched from a server
@pytest.fixture()
def server():
    s = ArchiveServer()
    yield s
    s.close()


def _bsds500(bsd: Path) -> dict[str, bytes]:
    members = {f"BSR/BSDS500/data/images/test/{p.name}": p.read_bytes() for p in sorted((bsd / "BSD200").glob("*.jpg"))}
    members["BSR/BSDS500/data/images/train/not-needed.jpg"] = b"x"
    return members


def test_a_command_that_needs_a_missing_bsd_set_fetches_and_verifies_it(bsd_datasets, server, tmp_path):
    server.files["bsr.tgz"] = tgz(_bsds500(bsd_datasets))
    root = tmp_path / "ds"
    root.mkdir()
    r = _rednet("datasets", "verify", "BSD200", "Set5", "--datasets", str(root),
                env_extra={"REDNET_OFFLINE": "0", "BSDS500_URL": server.url + "bsr.tgz"})
    assert r.returncode == 0, r.stderr
    assert "BSD200: not in" in r.stderr and re.search(r"BSD200 +200 files ok", r.stdout)
    assert sorted(p.name for p in (root / "BSD200").iterdir()) == sorted(
        p.name for p in (bsd_datasets / "BSD200").glob("*.jpg"))
    assert not (root / "Set5").exists()              # the shipped Set5 is read, not copied
    assert not (root / ".download").exists() or not any((root / ".download").iterdir())
    assert server.hits == ["bsr.tgz"]
    # there now: the next command does not fetch again
    r = _rednet("datasets", "verify", "BSD200", "--datasets", str(root),
                env_extra={"REDNET_OFFLINE": "0", "BSDS500_URL": server.url + "gone.tgz"})
    assert r.returncode == 0 and server.hits == ["bsr.tgz"]


def test_a_corrupt_download_is_refused_and_nothing_placed(bsd_datasets, server, tmp_path):
    members = _bsds500(bsd_datasets)
    bad = "BSR/BSDS500/data/images/test/100007.jpg"
    members[bad] = members[bad][:-100] + b"\0" * 100
    server.files["bad.tgz"] = tgz(members)
    blob = tgz(_bsds500(bsd_datasets))
    server.files["cut.tgz"] = blob[: len(blob) // 2]
    official = D.official_bsds500_test()["BSD200/100007.jpg"][0]
    for name, expect in (("bad.tgz", f"100007.jpg: sha256 .* differs from the official {official}"),
                         ("cut.tgz", "broken or truncated archive")):
        root = tmp_path / name
        root.mkdir()
        r = _rednet("datasets", "verify", "BSD200", "--datasets", str(root),
                    env_extra={"REDNET_OFFLINE": "0", "BSDS500_URL": server.url + name})
        assert r.returncode == 2
        last = r.stderr.strip().splitlines()[-1]
        assert re.search(expect, last) and "fetching it failed" in last, last
        assert list(root.iterdir()) == []            # no BSD200, no archive, no staging left


def test_two_commands_needing_the_same_missing_set_fetch_it_once(bsd_datasets, server, tmp_path):
    server.files["bsr.tgz"] = tgz(_bsds500(bsd_datasets))
    root = tmp_path / "ds"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DATASETS"}
    env.update(REDNET_OFFLINE="0", BSDS500_URL=server.url + "bsr.tgz")
    cmd = [str(ROOT / "bin" / "python"), "-m", "rednet", "datasets", "verify", "BSD200", "--datasets", str(root)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert server.hits == ["bsr.tgz"]
    assert D.verify("BSD200", root) == 200


def test_bsd100_is_cut_from_bsd300_and_checked_by_its_pixels(bsd_datasets, tmp_path):
    """BSD100 missing, BSD300 there: cut from the test JPEGs, each cut checked against the
    benchmark PNGs' pixels, written whole; the benchmark's own PNGs verify unchanged."""
    root = tmp_path / "ds"
    root.mkdir()
    (root / "BSD300").symlink_to(bsd_datasets / "BSD300")
    r = _rednet("datasets", "verify", "BSD100", "--datasets", str(root), env_extra={"REDNET_OFFLINE": "0"})
    assert r.returncode == 0, r.stderr
    made = sorted((root / "BSD100").glob("*.png"))
    assert len(made) == 100
    for p in made[:10]:
        np.testing.assert_array_equal(load_image(p), load_image(bsd_datasets / "BSD100" / p.name))
    assert (root / "BSD100" / "mapping_img_to_bsd_id.txt").read_text() == \
        (bsd_datasets / "BSD100" / "mapping_img_to_bsd_id.txt").read_text()
    # a cut whose pixels differ is refused, naming it
    from PIL import Image
    img = load_image(made[3])
    img[0, 0] ^= 1
    Image.fromarray(img).save(made[3])
    with pytest.raises(UserError, match=rf"{made[3].name}: sha256 .* its pixels differ too"):
        D.verify("BSD100", root)


# --------------------------------------------------------------------------- the tables without the BSD sets
def test_tables_offline_leave_the_bsd_cells_empty_with_the_reason(tmp_path):
    empty = tmp_path / "ds"
    empty.mkdir()
    out = tmp_path / "out"
    r = _rednet("tables", "--tables", "2", "--limit", "1", "--zoo-only", "--datasets", str(empty), "--out", str(out),
                env_extra={"REDNET_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    said = [l for l in r.stderr.splitlines() if "its cells are left empty" in l]
    assert len(said) == 1 and "BSD200: missing" in said[0]          # said once, not per cell
    md = (out / "tables.md").read_text()
    assert "BSD200 is not in the datasets folder and could not be fetched" in md


def test_zoo_results_refuses_before_computing_when_a_set_is_missing(tmp_path):
    """What the project ships is never rewritten from a partial evaluation: a missing BSD set
    stops `zoo-results` in one line before anything is computed or written."""

    def files():  # the tables and, under per_image*/, the per-image rows of every cell
        return {p: p.read_bytes() for p in (ROOT / "docs" / "results").rglob("*") if p.is_file()}

    shipped = files()
    cards = {p: p.read_bytes() for p in (ROOT / "models").glob("*/readme.md")}
    empty = tmp_path / "ds"
    empty.mkdir()
    r = _rednet("zoo-results", "--datasets", str(empty), env_extra={"REDNET_OFFLINE": "1"})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "zoo-results: the shipped results need every test set" in lines[0], r.stderr
    assert "BSD100: missing" in lines[0] or "BSD200: missing" in lines[0]
    assert files() == shipped and {p: p.read_bytes() for p in cards} == cards
