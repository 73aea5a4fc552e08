"""Where things are: the repository root, the datasets folder, the caffe binary.

Nothing here assumes a machine-specific location: datasets come from the ``DATASETS``
environment variable (or a ``--datasets`` option) and default to ``data/datasets``; the small
test sets ship in ``data/images``.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
GEN = ROOT / "gen"
SOLVERS = ROOT / "solvers"
TEMPLATES = ROOT / "prototxt_templates"
RUNS = ROOT / "runs"
RESULTS = ROOT / "results"
DB = DATA / "db"
CACHE = DATA / "cache"


DEFAULT_DATASETS = DATA / "datasets"
EMBEDDED_IMAGES = DATA / "images"      # Set5, Set14, Set12, denoise-extra, shipped with the project


def datasets_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The benchmark image folder: ``explicit``, else ``$DATASETS``, else ``data/datasets``.

    Relative paths are taken relative to the current directory (as a user types them).
    The sets shipped with the project (data/images) are read from there unless this folder
    holds its own copy; the BSD sets are fetched into it when missing (rednet.datasets).
    """
    p = explicit or os.environ.get("DATASETS") or DEFAULT_DATASETS
    return Path(p).expanduser().resolve()


def caffe_bin() -> Path:
    """The project's caffe entry point (bin/caffe), which sets the library paths."""
    return Path(os.environ.get("REDNET_CAFFE_BIN", ROOT / "bin" / "caffe"))


def caffe_build() -> str:
    """Which Caffe build bin/caffe runs: ``fast`` (the batch-parallel .caffe-fast/) or ``stock``.

    As bin/caffe-env.sh decides: ``$CAFFE`` when given, else fast where it is built.
    """
    c = os.environ.get("CAFFE")
    if c in ("stock", "fast"):
        return c
    return "fast" if (ROOT / ".caffe-fast" / "env").is_file() else "stock"


def caffe_origin() -> str | None:
    """Where the build of :func:`caffe_build` came from, as ``make setup`` wrote it into its env
    file: the sdist, and the patch set with its sha256 (first 16 hex digits), e.g.
    ``brocolli-caffe-9.0.2+patches/fast@1a2b...``; ``CAFFE_HOME``, ``PYTHON`` or ``preinstalled``
    for one's own Caffe; None where the env file is absent or names none."""
    env = ROOT / (".caffe-fast" if caffe_build() == "fast" else ".caffe") / "env"
    try:
        text = env.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("CAFFE_ORIGIN="):
            return line.split("=", 1)[1].strip().strip("'\"") or None
    return None


def from_root(p: os.PathLike | str) -> Path:
    """``p`` as a path: a relative one is taken relative to the repository root (as the run
    files and Caffe, run from the root, write them)."""
    p = Path(p)
    return p if p.is_absolute() else ROOT / p


def rel(p: os.PathLike | str) -> str:
    """``p`` relative to the repository root when it lies inside it (for generated files)."""
    p = Path(p).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)
