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


def test_bring_your_own_caffe_home(tmp_path):
    """`make setup CAFFE_HOME=...` uses that Caffe and builds nothing (in a copy of the repo)."""
    env_text = (ROOT / ".caffe" / "env").read_text()
    caffe_bin = Path(next(l.split("=", 1)[1].strip("'") for l in env_text.splitlines() if l.startswith("CAFFE_BIN=")))
    caffe_home = caffe_bin.parents[2]   # <home>/build/tools/caffe.bin
    if not (caffe_home / "python" / "caffe").is_dir():
        pytest.skip("this checkout's Caffe is not a source tree")
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(SETUP, repo / "tools" / "setup.sh")
    shutil.copytree(ROOT / "bin", repo / "bin")
    shutil.copytree(ROOT / "tools" / "rednet", repo / "tools" / "rednet")
    shutil.copy(ROOT / "requirements.txt", repo / "requirements.txt")
    (repo / ".venv").symlink_to(ROOT / ".venv")
    out = subprocess.run([shutil.which("bash"), str(repo / "tools" / "setup.sh")], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "CAFFE_HOME": str(caffe_home)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "using your Caffe" in out.stdout
    assert not (repo / ".caffe" / "src").exists(), "nothing may be built with CAFFE_HOME"
    ver = subprocess.run([str(repo / "bin" / "caffe"), "--version"], capture_output=True, text=True)
    assert ver.returncode == 0 and "version" in ver.stdout + ver.stderr
    imp = subprocess.run([str(repo / "bin" / "python"), "-c", "import caffe, rednet; print(caffe.__file__)"],
                         capture_output=True, text=True)
    assert imp.returncode == 0, imp.stderr
    assert str(caffe_home) in imp.stdout
