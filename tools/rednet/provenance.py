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


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name from /proc/cpuinfo, with its family, model and widest vector unit
    added, since one name can cover several generations (two machines here both read
    "AMD EPYC": a Zen 3 with AVX2 and a Zen 5 with AVX-512)."""
    with contextlib.suppress(OSError):
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break                              # the first processor's block is enough
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
        name = fields.get("model name")
        if name is None:
            return None
        flags = set(fields.get("flags", "").split())
        isa = next((label for flag, label in (("avx512f", "AVX512"), ("avx2", "AVX2"), ("avx", "AVX"))
                    if flag in flags), None)
        extra = [f"family {fields['cpu family']}" if "cpu family" in fields else None,
                 f"model {fields['model']}" if "model" in fields else None, isa]
        extra = [e for e in extra if e]
        return f"{name} ({', '.join(extra)})" if extra else name
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
