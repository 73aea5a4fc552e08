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
    for f in ("pyproject.toml", "README.md"):          # setup's `pip install -e .` step
        shutil.copy(ROOT / f, repo / f)
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


def test_bring_your_own_python_keeps_its_packages(tmp_path):
    """`make setup PYTHON=...` with a Python that already imports caffe (the conda route):
    nothing is built and nothing is pip-installed over that environment's packages (its
    pycaffe is compiled against its numpy), and the caffe binary beside it is used.

    The stand-in for a conda environment: a fresh virtualenv (itself a venv, which setup must
    see through) that has this checkout's packages and pycaffe through a .pth file, and
    `caffe` next to its interpreter."""
    env_text = (ROOT / ".caffe" / "env").read_text()
    conf = dict(l.split("=", 1) for l in env_text.splitlines() if "=" in l and not l.startswith("#"))
    caffe_bin, pycaffe = conf["CAFFE_BIN"].strip("'"), conf["CAFFE_PYTHONPATH"].strip("'")
    if not pycaffe:
        pytest.skip("this checkout's pycaffe is not on a path of its own")
    import sysconfig
    byo = tmp_path / "conda-env"
    subprocess.run([sys_python(), "-m", "venv", "--without-pip", str(byo)], check=True)
    purelib = Path(subprocess.run([str(byo / "bin" / "python"), "-c",
                                   "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    ours = sysconfig.get_paths()["purelib"]            # this checkout's .venv packages
    (purelib / "project_packages.pth").write_text(f"{ours}\n{pycaffe}\n")
    (byo / "bin" / "caffe").symlink_to(caffe_bin)

    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(SETUP, repo / "tools" / "setup.sh")
    shutil.copytree(ROOT / "tools" / "caffe_build", repo / "tools" / "caffe_build")
    shutil.copytree(ROOT / "bin", repo / "bin")
    shutil.copytree(ROOT / "tools" / "rednet", repo / "tools" / "rednet")
    shutil.copy(ROOT / "requirements.txt", repo / "requirements.txt")
    for f in ("pyproject.toml", "README.md"):          # setup's `pip install -e .` step
        shutil.copy(ROOT / f, repo / f)
    env = {k: v for k, v in os.environ.items() if k not in ("CAFFE_HOME", "PYTHONPATH")}
    env["PYTHON"] = str(byo / "bin" / "python")
    out = subprocess.run([shutil.which("bash"), str(repo / "tools" / "setup.sh")], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "has every package the project needs: nothing installed" in out.stdout
    assert f"using your Caffe: {byo / 'bin' / 'caffe'}" in out.stdout
    assert not (repo / ".caffe" / "src").exists(), "nothing may be built for a Python that has pycaffe"
    venv_site = list((repo / ".venv" / "lib").glob("python3*/site-packages"))
    assert venv_site and not list(venv_site[0].glob("numpy*")), "numpy must come from the environment"
    imp = subprocess.run([str(repo / "bin" / "python"), "-c",
                          "import caffe, numpy, rednet; print(numpy.__file__); print(caffe.__file__)"],
                         capture_output=True, text=True, env=env)    # (not this suite's PYTHONPATH)
    assert imp.returncode == 0, imp.stderr
    assert imp.stdout.splitlines()[0].startswith(ours) and pycaffe in imp.stdout.splitlines()[1]
    ver = subprocess.run([str(repo / "bin" / "caffe"), "--version"], capture_output=True, text=True)
    assert ver.returncode == 0 and "version" in ver.stdout + ver.stderr
    again = subprocess.run([shutil.which("bash"), str(repo / "tools" / "setup.sh")], capture_output=True,
                           text=True, timeout=300, env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


def sys_python() -> str:
    """The interpreter this checkout's .venv was made from (Debian's, for boost_python)."""
    cfg = (ROOT / ".venv" / "pyvenv.cfg").read_text()
    home = next(l.split("=", 1)[1].strip() for l in cfg.splitlines() if l.startswith("home"))
    return str(Path(home) / "python3")


def test_byo_python_deps_lists_the_missing_and_holds_the_present(tmp_path):
    """The helper behind the conda route: a bare Python misses every requirement (OpenCV
    kept below 5); this checkout's Python misses none, and its numpy is held at its version."""
    import numpy
    helper = ROOT / "tools" / "caffe_build" / "byo_python_deps.py"
    bare = tmp_path / "bare"
    subprocess.run([sys_python(), "-m", "venv", "--without-pip", str(bare)], check=True)
    out = subprocess.run([str(bare / "bin" / "python"), str(helper), "missing", str(ROOT / "requirements.txt")],
                         capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})
    names = [l.split("<")[0] for l in out.stdout.split()]
    reqs = [l.split("==")[0] for l in (ROOT / "requirements.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    assert sorted(names, key=str.lower) == sorted(reqs, key=str.lower)
    assert "opencv-python-headless<5" in out.stdout.split()
    ours = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(helper), "missing", str(ROOT / "requirements.txt")],
                          capture_output=True, text=True, check=True)
    assert ours.stdout.strip() == ""
    cons = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(helper), "constraints"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert f"numpy=={numpy.__version__}" in cons
    bad = tmp_path / "req.txt"
    bad.write_text("numpy==1\nsomething-unknown==2\n")
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(helper), "missing", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "something-unknown" in r.stderr


@pytest.mark.parametrize("build, folder", [("stock", ".caffe"), ("fast", ".caffe-fast")])
def test_the_builds_origin_names_its_patch_set(build, folder, monkeypatch):
    """run.json and the model cards record the build's origin; it names the patch set by the
    same sha256 as the build's stamp (``.built-<sdist sha256>-<patch-set sha256>``)."""
    from rednet import paths
    stamps = list((ROOT / folder / "src").glob(".built-*"))
    if not stamps:
        pytest.skip(f"no {build} build from the sdist here")
    monkeypatch.setenv("CAFFE", build)
    origin = paths.caffe_origin()
    assert origin is not None and origin.startswith("brocolli-caffe-9.0.2+patches")
    assert ("/fast@" in origin) == (build == "fast")
    assert origin.rsplit("@", 1)[1] in {s.name.rsplit("-", 1)[1] for s in stamps}
