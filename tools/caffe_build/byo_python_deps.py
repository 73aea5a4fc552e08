"""The project's Python requirements for a Python that brings its own pycaffe (conda route).

A pycaffe from conda-forge is compiled against that environment's numpy (1.x) and protobuf;
installing the project's pins (numpy 2, protobuf 7) over them would break ``import caffe``,
and the pins may not exist for that Python at all.  So ``make setup PYTHON=...`` keeps every
package the environment already has and installs only the missing ones, with everything
present held at its version (a pip constraints file).  Standard library only: this runs
before the project's packages exist.

    python byo_python_deps.py missing requirements.txt   # requirement specs to install
    python byo_python_deps.py constraints                # name==version of what is present
    python byo_python_deps.py versions                   # one line: the versions in use
    python byo_python_deps.py paths                      # (run with PYTHON) its import paths

``paths`` is how .venv sees exactly what PYTHON sees: a venv made from PYTHON with
--system-site-packages sees the base interpreter's packages, which for a conda environment
are its own, but for a PYTHON that is itself a virtualenv (or has .pth-added folders) are not.
Setup writes these folders into a .pth file of .venv.
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import sys

# import name -> requirement name (as in requirements.txt)
MODULES = {
    "numpy": "numpy", "scipy": "scipy", "h5py": "h5py", "jinja2": "Jinja2",
    "skimage": "scikit-image", "google.protobuf": "protobuf", "six": "six", "tqdm": "tqdm",
    "matplotlib": "matplotlib", "cv2": "opencv-python-headless", "PIL": "pillow",
    "yaml": "PyYAML", "pytest": "pytest", "pytest_timeout": "pytest-timeout",
}
# a missing package is installed unpinned (the pins need Python >= 3.11), within these bounds
BOUNDS = {"opencv-python-headless": "<5"}   # OpenCV 5 dropped readNetFromCaffe


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _requirement_names(req_file: str) -> list[str]:
    names = []
    for line in open(req_file, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0])
    return names


def missing(req_file: str) -> list[str]:
    wanted = {n.lower() for n in _requirement_names(req_file)}
    unknown = wanted - {r.lower() for r in MODULES.values()}
    if unknown:   # keep this table in step with requirements.txt
        raise SystemExit(f"byo_python_deps.py: no import name known for {sorted(unknown)} in {req_file}")
    return [req + BOUNDS.get(req, "") for mod, req in MODULES.items()
            if req.lower() in wanted and not _present(mod)]


def constraints() -> list[str]:
    seen = {}
    for d in md.distributions():
        name = d.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={d.version}"
    return sorted(seen.values(), key=str.lower)


def paths() -> list[str]:
    """PYTHON's import folders beyond its standard library (site-packages, .pth additions)."""
    import os
    ver = "python%d.%d" % sys.version_info[:2]
    std = {os.path.realpath(os.path.join(b, "lib", ver)) for b in (sys.base_prefix, sys.base_exec_prefix)}
    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for p in sys.path:
        if not p or not os.path.isdir(p):
            continue
        rp = os.path.realpath(p)
        if rp in std or (os.path.dirname(rp) in std and os.path.basename(rp) == "lib-dynload") or rp == here:
            continue
        if p not in out:
            out.append(p)
    return out


def versions() -> str:
    out = []
    for req in ("numpy", "protobuf", "scipy", "scikit-image", "h5py"):
        try:
            out.append(f"{req} {md.version(req)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "missing" and len(sys.argv) == 3:
        print("\n".join(missing(sys.argv[2])))
    elif cmd == "constraints":
        print("\n".join(constraints()))
    elif cmd == "paths":
        print("\n".join(paths()))
    elif cmd == "versions":
        print(versions())
    else:
        raise SystemExit("usage: byo_python_deps.py missing REQUIREMENTS | constraints | versions | paths")
