"""The project as an installable package: `pip install -e .` (pyproject.toml) gives the
`rednet` console command, which runs the same command line as `bin/python -m rednet`."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = ROOT / ".venv" / "bin" / "python"


def _plain_env() -> dict:
    """The environment of a user's shell: not bin/python's (no PYTHONPATH, no REDNET_CAFFE_BIN)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REDNET_CAFFE_BIN", "REDNET_PROG")}


def _setuptools_here() -> bool:
    r = subprocess.run([str(VENV_PY), "-c", "import setuptools, sys; "
                        "sys.exit(int(setuptools.__version__.split('.')[0]) < 64)"], capture_output=True)
    return r.returncode == 0


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install -e .` into a prefix of its own (the project's .venv is left as it is):
    (the console script, its site-packages)."""
    prefix = tmp_path_factory.mktemp("prefix")
    offline = ["--no-build-isolation", "--no-index"] if _setuptools_here() else []
    # --ignore-installed: without it pip uninstalls the .venv's own editable install first
    # (pip removes an installed copy of the same project even when installing into --prefix)
    r = subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", *offline,
                        "--prefix", str(prefix),
                        "-e", str(ROOT)], capture_output=True, text=True, env=_plain_env(), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    site = next(prefix.glob("lib/python3*/site-packages"))
    return prefix / "bin" / "rednet", site


def _run_script(script: Path, site: Path, *args, **kw):
    """Run the installed console script as a shell would, with its install's .pth files read."""
    code = ("import runpy, site, sys; site.addsitedir(sys.argv[1]); sys.argv = sys.argv[2:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([str(VENV_PY), "-c", code, str(site), str(script), *map(str, args)], cwd=kw.pop("cwd", "/"),
                          env=_plain_env(), capture_output=True, text=True, timeout=300, **kw)


def test_pyproject_declares_the_rednet_command(installed):
    script, site = installed
    assert script.is_file()
    eps = next(site.glob("rednet_caffe-*.dist-info")).joinpath("entry_points.txt").read_text()
    assert "[console_scripts]" in eps and "rednet = rednet.__main__:cli" in eps
    # editable: the package is this checkout's tools/rednet (paths.ROOT is the repository)
    r = subprocess.run([str(VENV_PY), "-c", "import site, sys; site.addsitedir(sys.argv[1]); import rednet; "
                        "print(rednet.__file__)", str(site)], env=_plain_env(), capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == ROOT / "tools" / "rednet" / "__init__.py"


def test_rednet_command_runs_like_bin_python(installed, tmp_path):
    """`rednet --help` lists the commands; a command runs through bin/python (pycaffe's
    environment) and a bad argument is the usual one-line error, exit status 2."""
    script, site = installed
    r = _run_script(script, site, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: rednet ")
    for cmd in ("tables", "restore", "demo", "zoo", "bench"):
        assert cmd in r.stdout
    r = _run_script(script, site, "tables", "--tables", "9", "--out", tmp_path / "r")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tables '9': expected numbers 1-7" in lines[0], r.stderr
    # the command found pycaffe: it ran in bin/python's environment
    r = _run_script(script, site, "restore", "--help")
    assert r.returncode == 0 and "usage: rednet restore" in r.stdout, r.stderr


def test_make_setup_installed_the_rednet_command():
    """After `make setup` in a checkout with its own .venv, .venv/bin/rednet is this checkout's."""
    venv = (ROOT / ".venv").resolve()
    if ROOT.resolve() not in venv.parents:
        pytest.skip(f".venv is {venv}, another checkout's (make setup leaves its rednet command to it)")
    script = ROOT / ".venv" / "bin" / "rednet"
    assert script.is_file(), "make setup should have run pip install -e ."
    r = subprocess.run([str(script), "--help"], env=_plain_env(), capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 0 and r.stdout.startswith("usage: rednet "), r.stderr
