"""Shared test fixtures.

Benchmark images come from ``$DATASETS`` (CI passes ``DATASETS=../shared/datasets``).
Without it, the ``datasets_dir`` fixture is the images that ship with the project
(data/images: Set5, Set14, Set12, denoise-extra) and a test that needs a BSD set is skipped
with the reason (the :class:`rednet.datasets.SetMissing` it raised, or the ``bsd_datasets``
fixture), unless ``REDNET_REQUIRE_DATASETS=1`` (set by CI): then it is a failure.
The tests never fetch from the network: ``REDNET_OFFLINE=1`` unless a test says otherwise.
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
os.environ.setdefault("REDNET_OFFLINE", "1")
# Under `make test DATASETS=...` make hands its command-line variables to every make a test
# starts (MAKEFLAGS), where they would override the environment a test gives it (a clone
# "without DATASETS" would still get the caller's relative path). Each make a test runs is a
# top-level make configured by its environment alone; the values themselves stay in os.environ.
for _var in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL"):
    os.environ.pop(_var, None)
EMBEDDED = ROOT / "data" / "images"


def _required() -> bool:
    return os.environ.get("REDNET_REQUIRE_DATASETS") == "1"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --runslow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _skip_missing_bsd(outcome) -> None:
    """A test (or its fixture) that stops on a BSD set that is not there (no DATASETS, no
    fetching) is skipped with that one line as the reason; with REDNET_REQUIRE_DATASETS=1 it
    fails."""
    from rednet.datasets import SetMissing
    exc = outcome.excinfo[1] if outcome.excinfo else None
    if isinstance(exc, SetMissing) and not _required() and not _given_datasets():
        outcome.force_exception(pytest.skip.Exception(f"needs a BSD set: {exc}", _use_item_location=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _skip_missing_bsd((yield))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _skip_missing_bsd((yield))


@pytest.fixture(autouse=True)
def _no_pool_left_waiting():
    """A test must not leave a process pool's manager thread alive: the interpreter joins it at
    exit, so one that waits for ever keeps the suite from ending after its summary (as a
    worker killed mid-send once did; tests/test_patches.py)."""
    yield
    assert not pool_threads_waiting(10), \
        "a process pool's manager thread outlived the test (the interpreter would wait for it at exit)"


def pool_threads_waiting(timeout: float) -> list:
    """The process pools' manager threads still alive after ``timeout`` seconds each."""
    left = [t for t in threading.enumerate() if type(t).__name__ == "_ExecutorManagerThread"]
    for t in left:
        t.join(timeout)
    return [t for t in left if t.is_alive()]


def _given_datasets() -> Path | None:
    p = os.environ.get("DATASETS")
    if p:
        path = Path(p)
        if not path.is_absolute():
            path = (ROOT / path) if (ROOT / path).exists() else path.resolve()
        if path.is_dir() and (path / "BSD300").is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The benchmark image folder ($DATASETS, resolved against the repo root); without it
    the images that ship with the project (data/images, no BSD sets)."""
    path = _given_datasets()
    if path is not None:
        return path
    if _required():
        pytest.fail(f"DATASETS={os.environ.get('DATASETS')!r} is not a benchmark image folder "
                    f"(REDNET_REQUIRE_DATASETS=1)")
    return EMBEDDED


@pytest.fixture(scope="session")
def bsd_datasets(datasets_dir) -> Path:
    """A datasets folder with the BSD sets (BSD300, BSD200, BSD100): $DATASETS; skipped
    with the reason where there is none (a failure under REDNET_REQUIRE_DATASETS=1)."""
    if datasets_dir == EMBEDDED:
        pytest.skip("needs the BSD sets (BSD300, BSD200, BSD100), which do not ship with the "
                    "project: set DATASETS=/path/to/datasets")
    return datasets_dir


@pytest.fixture(scope="session")
def reference_dir(datasets_dir) -> Path:
    """The shared MATLAB reference vectors: $REFERENCE, else <datasets>/../reference."""
    p = Path(os.environ.get("REFERENCE") or (datasets_dir.parent / "reference"))
    if (p / "matlab_imresize" / "cases.json").is_file():
        return p
    if os.environ.get("REDNET_REQUIRE_DATASETS") == "1":
        pytest.fail(f"reference vectors not found at {p}")
    pytest.skip("reference vectors not available: set REFERENCE=/path/to/reference")


@pytest.fixture(scope="session")
def released_ch1() -> Path:
    """The authors' released deploy net REDNet_ch1.prototxt: $REFERENCE/released/, else
    <$DATASETS>/../reference/released/.  Skipped with the reason where absent, a failure
    when REDNET_REQUIRE_DATASETS=1 (CI)."""
    ref = os.environ.get("REFERENCE")
    if not ref and os.environ.get("DATASETS"):
        ds = Path(os.environ["DATASETS"])
        ref = str((ds if ds.is_absolute() else ROOT / ds).parent / "reference")
    p = Path(ref or ".") / "released" / "REDNet_ch1.prototxt"
    if ref and p.is_file():
        return p
    why = (f"the released net not found at {p}: set REFERENCE=/path/to/reference" if ref
           else "the released net REDNet_ch1.prototxt: set REFERENCE=/path/to/reference (or DATASETS)")
    if os.environ.get("REDNET_REQUIRE_DATASETS") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def caffe():
    """pycaffe, in CPU mode, quiet."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe as _caffe
    _caffe.set_mode_cpu()
    return _caffe


# ------------------------------------------------------------------------ a fresh copy of the project
def fresh_copy(dest: Path) -> Path:
    """What a clone of this checkout holds (tracked and new files git does not ignore), with
    the set-up (.venv, the Caffe builds) linked in: nothing of runs/, results/, data/db or a
    datasets folder."""
    import shutil
    import subprocess
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for n in filter(None, names):
        src = ROOT / n
        if src.is_file():
            (dest / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / n)
    for d in (".venv", ".caffe", ".caffe-fast"):
        if (ROOT / d).exists():
            (dest / d).symlink_to(ROOT / d)
    return dest


# ------------------------------------------------------------------------ a tiny HDF5 database
SHARD_ROWS = (21, 13, 30, 9)      # uneven on purpose: batches of 16 cross shard boundaries
PATCH = 16


def write_db(folder: Path, rows=SHARD_ROWS, seed=0, name="train", patch=PATCH, noise=0.1) -> Path:
    """A tiny denoising database: shards of clean 'label' and noisy 'data' patches
    (``patch`` x ``patch``, Gaussian noise of std ``noise``)."""
    import h5py
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, n in enumerate(rows):
        yy, xx = np.mgrid[0:patch, 0:patch] / patch
        phase = rng.uniform(0, 6.28, size=(n, 1, 1, 1))
        label = (0.5 + 0.4 * np.sin(3 * xx[None, None] + 2 * yy[None, None] + phase)).astype(np.float32)
        data = (label + rng.normal(0, noise, label.shape)).astype(np.float32)
        p = folder / f"{name}_{k:03d}.h5"
        with h5py.File(p, "w") as f:
            f["data"] = data
            f["label"] = label
        lines.append(str(p))
    lst = folder / f"{name}.txt"
    lst.write_text("\n".join(lines) + "\n")
    return lst


# ------------------------------------------------------------------------ archives over HTTP
class ArchiveServer:
    """A real HTTP server on 127.0.0.1 serving ``files`` (name -> bytes); ``hits`` lists the
    names asked for.  A name in ``truncate`` announces the full Content-Length but sends only
    half."""

    def __init__(self):
        import http.server
        import threading
        self.files, self.truncate, self.hits = {}, set(), []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                outer.hits.append(name)
                if name not in outer.files:
                    self.send_error(404)
                    return
                body = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in outer.truncate else body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def tgz(members: dict[str, bytes]) -> bytes:
    """A .tgz of ``members`` (archive path -> bytes), made in memory."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
