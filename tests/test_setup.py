"""`make setup` refuses what it must refuse, with messages a user can act on.

These run the real tools/setup.sh up to the failing step (the steps before it are
already satisfied on a set-up machine, so they only check and move on)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "tools" / "setup.sh"


def _run(env_extra, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("CAFFE_HOME",)}
    env.update(env_extra)
    return subprocess.run([shutil.which("bash"), str(SETUP)], capture_output=True, text=True, env=env, timeout=300, **kw)


def test_second_setup_run_does_nothing_and_says_so():
    out = _run({})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nothing to do" in out.stdout


def test_corrupted_caffe_sdist_is_refused_with_both_hashes(tmp_path):
    build = tmp_path / "caffe"
    build.mkdir()
    bad = build / "brocolli-caffe-9.0.2.tar.gz"
    bad.write_bytes(b"this is not the brocolli-caffe source distribution\n")
    actual = hashlib.sha256(bad.read_bytes()).hexdigest()
    out = _run({"CAFFE_BUILD_DIR": str(build), "FORCE_BUILD": "1"})
    assert out.returncode != 0
    expected = (ROOT / "data" / "brocolli-caffe.sha256").read_text().split()[0]
    assert "sha256 mismatch" in out.stderr
    assert expected in out.stderr and actual in out.stderr
    assert not bad.exists(), "a refused download must not be kept"
    assert not (build / "src").exists(), "nothing may be unpacked from a refused download"


def test_missing_packages_without_apt_names_them(tmp_path):
    # a PATH with the usual tools but no apt-get
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dpkg-query", "grep", "id", "cat", "cut", "sha256sum", "dirname", "nproc", "printf", "date"):
        p = shutil.which(tool)
        if p:
            (bindir / tool).symlink_to(p)
    out = _run({"PATH": str(bindir), "EXTRA_APT_PACKAGES": "rednet-no-such-package"})
    assert out.returncode != 0
    assert "no apt-get" in out.stderr
    assert "rednet-no-such-package" in out.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop privileges")
def test_missing_packages_without_root_names_them():
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(SETUP)],
        capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": "/tmp", "EXTRA_APT_PACKAGES": "rednet-no-such-package"})
    assert out.returncode != 0
    assert "not root" in out.stderr
    assert "apt-get install -y" in out.stderr and "rednet-no-such-package" in out.stderr
