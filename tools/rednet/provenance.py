"""What a run record says about the code and the machine: the Caffe binary's version, the
project's version and git commit, the CPU model (training speed differs a lot between CPUs)."""
from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from . import __version__, paths
from .errors import UserError


def caffe_version(caffe: Path) -> str:
    try:
        r = subprocess.run([str(caffe), "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise UserError(f"{caffe}: cannot run the caffe binary ({e.strerror}); run 'make setup'") from None
    out = (r.stdout + r.stderr).strip().splitlines()
    if r.returncode != 0 or not out:
        raise UserError(f"{caffe} --version failed: {' '.join(out)[-200:] or 'no output'}; run 'make setup'")
    return out[-1].strip()


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def project_version() -> dict:
    def git(*a):
        try:
            r = subprocess.run(["git", "-C", str(paths.ROOT), *a], capture_output=True, text=True, timeout=30)
            return r.stdout.strip() if r.returncode == 0 else None
        except OSError:
            return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"version": __version__, "git_commit": commit, "git_dirty": bool(status) if status is not None else None}
