"""The benchmark image sets of the paper: registry, sha256 verification, download.

``bin/python -m rednet datasets {list,verify,download,manifest}``; API in docs/data.md.

Every file the project reads is listed with its sha256 in ``data/manifests/<folder>.sha256``
(``sha256sum`` format, paths relative to the datasets folder, so
``cd $DATASETS && sha256sum -c .../BSD300.sha256`` works too).  The manifests are the
source of truth for which files a set has: a missing file is reported, not skipped.
The 200 BSDS300 training images may be the project's lossless PNG decodes
(``images/train/<id>.png``) or the official JPEGs that ``download`` fetches
(``images/train/<id>.jpg``, checked against the official Berkeley hashes).

Where each set comes from: the datasets folder when it holds the set's folder; else the
small sets (Set5, Set14, Set12, denoise-extra) from the copy shipped in ``data/images``
(the same manifests check either copy); else the BSD sets are fetched into the datasets
folder (BSD300, BSD200 from Berkeley's archives, BSD100 cut from BSD300's test JPEGs), or,
offline or with ``REDNET_OFFLINE=1``, refused with one line naming what to put where.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from . import paths
from .errors import UserError, atomic_path, atomic_write_text
from .imageio_ml import load_image

MANIFESTS = paths.DATA / "manifests"
# official archives (Berkeley); `make datasets BSDS300_URL=... BSDS500_URL=...` overrides them
BSDS300_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz"
BSDS500_URL = ("https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/"
               "BSR_bsds500.tgz")

FOLDERS = ("BSD300", "BSD200", "BSD100", "Set5", "Set14", "Set12", "denoise-extra")
EMBEDDED = paths.EMBEDDED_IMAGES
EMBEDDED_FOLDERS = ("Set5", "Set14", "Set12", "denoise-extra")     # shipped in data/images
FETCHED_FOLDERS = ("BSD300", "BSD200", "BSD100")                    # fetched when missing
# folders whose files may also be accepted by their decoded pixels (BSD100 cut here from
# BSD300's JPEGs is a PNG of other bytes than the benchmark's): data/manifests/<f>_pixels.sha256
PIXEL_FOLDERS = ("BSD100",)
EXTRA_NAMES = ("hill", "fingerprint", "montage", "leaves", "fence")
DENOISE14_DEFAULT_EXTRAS = ("fingerprint", "montage")
NAMES = ("BSD300", "BSD300-train", "BSD300-test", "BSD200", "BSD100", "Set5", "Set14", "Set12",
         "denoise14", "denoise-extra")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# --------------------------------------------------------------------------- manifests
def read_manifest(path: Path) -> dict[str, str]:
    """``{relative path: sha256}`` from a ``sha256sum``-style file."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, rel = line.split(None, 1)
            out[rel.strip().lstrip("*")] = digest
    return out


def read_official(path: Path, prefix_from: str, prefix_to: str) -> dict[str, tuple[str, int]]:
    """Berkeley's list (``<path> sha256:<hex> <size>``) re-rooted: ``{our relpath: (sha, size)}``."""
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        p, digest, size = line.split()[:3]
        assert p.startswith(prefix_from), p
        out[prefix_to + p[len(prefix_from):]] = (digest.split(":", 1)[1], int(size))
    return out


def official_bsds300() -> dict[str, tuple[str, int]]:
    return read_official(MANIFESTS / "official_BSDS300_jpeg_sha256.txt", "BSDS300/", "BSD300/")


def official_bsds500_test() -> dict[str, tuple[str, int]]:
    return read_official(MANIFESTS / "official_BSDS500_test_jpeg_sha256.txt",
                         "BSR/BSDS500/data/images/test/", "BSD200/")


def _manifest(folder: str) -> dict[str, str]:
    p = MANIFESTS / f"{folder}.sha256"
    if not p.is_file():
        raise UserError(f"{paths.rel(p)}: manifest missing (the project checkout is incomplete)")
    return read_manifest(p)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pixel_sha256(img: np.ndarray) -> str:
    """sha256 of a decoded image: its shape, dtype and bytes (C order)."""
    h = hashlib.sha256(f"{img.shape} {img.dtype}\n".encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


_PIXELS: dict[str, dict[str, str]] = {}


def _pixel_manifest(folder: str) -> dict[str, str]:
    if folder not in _PIXELS:
        p = MANIFESTS / f"{folder}_pixels.sha256"
        _PIXELS[folder] = read_manifest(p) if folder in PIXEL_FOLDERS and p.is_file() else {}
    return _PIXELS[folder]


def write_manifests(root: Path) -> list[Path]:
    """Maintainer command: (re)write data/manifests/<folder>.sha256 from a trusted copy."""
    root = _root(root)
    written = []
    for folder in FOLDERS:
        files = sorted(p for p in (root / folder).rglob("*") if p.is_file())
        if not files:
            raise UserError(f"{root / folder}: no files to put in a manifest")
        lines = [f"{sha256_file(p)}  {p.relative_to(root).as_posix()}" for p in files]
        dest = MANIFESTS / f"{folder}.sha256"
        atomic_write_text(dest, "\n".join(lines) + "\n")
        written.append(dest)
        if folder in PIXEL_FOLDERS:
            pix = [f"{pixel_sha256(load_image(p))}  {p.relative_to(root).as_posix()}"
                   for p in files if p.suffix.lower() in _IMAGE_EXT]
            dest = MANIFESTS / f"{folder}_pixels.sha256"
            atomic_write_text(dest, "\n".join(pix) + "\n")
            written.append(dest)
    for src, name in (("BSD300/official_jpeg_sha256.txt", "official_BSDS300_jpeg_sha256.txt"),
                      ("BSD200/official_jpeg_sha256.txt", "official_BSDS500_test_jpeg_sha256.txt"),
                      ("BSD300/iids_train.txt", "BSD300_iids_train.txt"),
                      ("BSD300/iids_test.txt", "BSD300_iids_test.txt"),
                      ("BSD100/mapping_img_to_bsd_id.txt", "BSD100_mapping.txt")):
        dest = MANIFESTS / name
        atomic_write_text(dest, (root / src).read_text())
        written.append(dest)
    return written


# --------------------------------------------------------------------------- registry
class SetMissing(UserError):
    """A set that is not shipped with the project is missing and could not be fetched."""


def _root(root) -> Path:
    """The datasets folder; one that was named (``DATASETS=``, ``--datasets``) must exist,
    the default ``data/datasets`` is made when a set is fetched into it."""
    r = paths.datasets_dir(root)
    if not r.is_dir() and r != paths.DEFAULT_DATASETS.resolve():
        raise UserError(f"DATASETS={r}: folder does not exist (give the benchmark image folder, "
                        f"laid out as docs/data.md says, or leave DATASETS unset: the small sets "
                        f"ship in data/images and the BSD sets are fetched into data/datasets)")
    return r


def source_of(folder: str, root, allow_fetch: bool = True) -> Path:
    """The folder that holds ``folder``: ``root`` when it has it; else data/images for the
    sets shipped with the project; else ``root`` after fetching the set into it
    (:func:`fetch`; ``allow_fetch=False``: without trying)."""
    root = _root(root)
    if (root / folder).is_dir():
        return root
    if folder in EMBEDDED_FOLDERS:
        return EMBEDDED
    if allow_fetch:
        fetch(folder, root)
    return root


def _ids(split: str) -> list[str]:
    return (MANIFESTS / f"BSD300_iids_{split}.txt").read_text().split()


def _expected(name: str, root: Path, extras=None) -> list[tuple[Path, str]]:
    """(file, expected sha256) of every image of ``name``, in the set's order."""
    def from_folder(folder, select=None, key=None):
        man = _manifest(folder)
        base = source_of(folder, root)
        rels = [r for r in man if r.lower().endswith(_IMAGE_EXT) and (select is None or select(r))]
        rels.sort(key=key)
        return [(base / r, man[r]) for r in rels]

    if name in ("BSD300", "BSD300-train", "BSD300-test"):
        man = _manifest("BSD300")
        root = source_of("BSD300", root)
        official = official_bsds300()
        out = []
        for split in ("train", "test"):
            if name != "BSD300" and not name.endswith(split):
                continue
            for iid in _ids(split):
                png, jpg = f"BSD300/images/{split}/{iid}.png", f"BSD300/images/{split}/{iid}.jpg"
                if png in man and (root / png).is_file():
                    out.append((root / png, man[png]))
                elif jpg in official and (root / jpg).is_file():
                    out.append((root / jpg, official[jpg][0]))
                elif png in man:
                    out.append((root / png, man[png]))
                else:
                    out.append((root / jpg, official[jpg][0]))
        return out
    if name == "BSD200":
        return from_folder("BSD200", key=lambda r: int(Path(r).stem))
    if name in ("BSD100", "Set5", "Set14", "Set12"):
        return from_folder(name, select=lambda r: r.count("/") == 1)
    if name == "denoise-extra":
        return from_folder("denoise-extra", select=lambda r: r.count("/") == 1,
                           key=lambda r: EXTRA_NAMES.index(Path(r).stem))
    if name == "denoise14":
        extras = _check_extras(extras)
        extra = {Path(p).stem: (p, h) for p, h in _expected("denoise-extra", root)}
        return _expected("Set12", root) + [extra[e] for e in extras]
    raise UserError(f"dataset {name!r}: expected one of {', '.join(NAMES)}")


def _check_extras(extras) -> tuple[str, str]:
    extras = tuple(DENOISE14_DEFAULT_EXTRAS if extras is None else extras)
    if len(extras) != 2 or len(set(extras)) != 2 or not set(extras) <= set(EXTRA_NAMES):
        raise UserError(f"denoise14 extras {extras!r}: expected two different names of "
                        f"{', '.join(EXTRA_NAMES)}")
    return extras


_VERIFIED: dict[tuple, bool] = {}


def _verify_files(expected: list[tuple[Path, str]]) -> None:
    for path, digest in expected:
        if not path.is_file():
            raise UserError(f"{path}: missing (expected sha256 {digest})")
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, digest)
        if key in _VERIFIED:
            continue
        got = sha256_file(path)
        if got != digest:
            pixels = _pixel_manifest(path.parent.name).get(f"{path.parent.name}/{path.name}")
            if pixels is None or _pixels_of(path) != pixels:
                raise UserError(f"{path}: sha256 {got} differs from the expected {digest} "
                                f"(altered or wrong file{'; its pixels differ too' if pixels else ''})")
        _VERIFIED[key] = True


def _pixels_of(path: Path) -> str | None:
    try:
        return pixel_sha256(load_image(path))
    except UserError:
        return None


def verify(name: str, root=None, *, extras=None) -> int:
    """Check the sha256 of every file of ``name``; returns the number of files checked."""
    root = _root(root)
    exp = _expected(name, root, extras)
    _verify_files(exp)
    return len(exp)


def list_images(name: str, root=None, *, extras=None, verify: bool = False) -> list[Path]:
    """The image files of ``name`` in the set's fixed order (for ``denoise14``: the source
    files; the 512x512 ones are halved by :func:`load_set`)."""
    root = _root(root)
    exp = _expected(name, root, extras)
    if verify:
        _verify_files(exp)
    else:
        for path, digest in exp:
            if not path.is_file():
                raise UserError(f"{path}: missing (expected sha256 {digest})")
    return [p for p, _ in exp]


def load_set(name: str, root=None, *, extras=None, verify: bool = True) -> list[tuple[str, np.ndarray]]:
    """``[(image name, uint8 image)]`` of ``name``, as MATLAB's imread sees each file
    (see rednet.imageio_ml); ``denoise14`` halves its 512x512 images with MATLAB bicubic."""
    files = list_images(name, root, extras=extras, verify=verify)
    out = []
    for p in files:
        img = load_image(p)
        if name == "denoise14" and img.shape[:2] == (512, 512):
            from . import matlab
            img = matlab.imresize(img, 0.5)
        out.append((p.stem, img))
    return out


# --------------------------------------------------------------------------- download
def _download(url: str, dest: Path, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest`` (via a .part file); a short read is an error."""
    from tqdm import tqdm
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        resp = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise UserError(f"{url}: download failed ({e})") from None
    total = resp.headers.get("Content-Length")
    total = int(total) if total else None
    got = 0
    with resp, atomic_path(dest, suffix=".part") as tmp, open(tmp, "wb") as f, \
            tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
        try:
            for block in iter(lambda: resp.read(1 << 20), b""):
                f.write(block)
                got += len(block)
                bar.update(len(block))
        except (OSError, urllib.error.URLError) as e:   # http.client.IncompleteRead is an OSError
            raise UserError(f"{url}: download interrupted after {got} bytes ({e})") from None
        if total is not None and got != total:
            raise UserError(f"{url}: truncated download ({got} of {total} bytes)")
    return dest


def _extract(archive: Path, wanted: dict[str, tuple[str, int]], rename, staging: Path) -> dict[str, Path]:
    """Extract the members named in ``wanted`` (``{member: (sha256, size)}``) to ``staging``,
    checking each; returns ``{member: staged file}``."""
    found = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                name = m.name[2:] if m.name.startswith("./") else m.name
                if name not in wanted or not m.isfile():
                    continue
                data = tar.extractfile(m).read()
                digest, size = wanted[name]
                got = hashlib.sha256(data).hexdigest()
                if got != digest or len(data) != size:
                    raise UserError(f"{archive.name}:{name}: sha256 {got} differs from the official "
                                    f"{digest} (wrong or altered file)")
                out = staging / rename(name)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
                found[name] = out
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise UserError(f"{archive}: broken or truncated archive ({e}); delete it and retry") from None
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise UserError(f"{archive}: {len(missing)} expected files missing, e.g. {missing[0]} "
                        f"(expected sha256 {wanted[missing[0]][0]})")
    return found


def urls() -> tuple[str, str]:
    """The BSDS300 and BSDS500 archive addresses: ``$BSDS300_URL`` / ``$BSDS500_URL`` (a
    mirror), else Berkeley's."""
    return (os.environ.get("BSDS300_URL") or BSDS300_URL, os.environ.get("BSDS500_URL") or BSDS500_URL)


def download(root=None, *, sets=("BSD300", "BSD200", "BSD100"), bsds300_url: str | None = None,
             bsds500_url: str | None = None, cache: Path | None = None, progress: bool = True) -> Path:
    """Download the official BSDS300 and BSDS500 archives into ``root`` (created), unpacking
    only the 300 BSDS300 JPEGs (BSD300/images/{train,test}/<id>.jpg) and the 200 BSDS500
    test JPEGs (BSD200/<id>.jpg), each checked against Berkeley's sha256 first.  Files are
    staged and moved into place only when an archive is complete and every file is right.
    BSD100 is cut from the BSD300 test JPEGs (:func:`derive_bsd100`).
    Set5, Set14, Set12 and denoise-extra ship with the project (data/images).
    """
    root = paths.datasets_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    default300, default500 = urls()
    bsds300_url, bsds500_url = bsds300_url or default300, bsds500_url or default500
    cache = Path(cache) if cache else root / ".download"
    jobs = [
        (bsds300_url, "BSDS300-images.tgz",
         {("BSDS300/" + k[len("BSD300/"):]): v for k, v in official_bsds300().items()},
         lambda n: "BSD300/" + n[len("BSDS300/"):], "BSD300"),
        (bsds500_url, "BSR_bsds500.tgz",
         {("BSR/BSDS500/data/images/test/" + k[len("BSD200/"):]): v
          for k, v in official_bsds500_test().items()},
         lambda n: "BSD200/" + n.rsplit("/", 1)[1], "BSD200"),
    ]
    for url, fname, wanted, rename, folder in jobs:
        if folder not in sets and not (folder == "BSD300" and "BSD100" in sets
                                       and not (root / "BSD300").is_dir()):
            continue
        if folder == "BSD300" and (root / "BSD300").is_dir():
            with contextlib.suppress(UserError):
                verify("BSD300", root)      # complete already (PNG decodes or official JPEGs)
                continue
        targets = [root / rename(m) for m in wanted]
        if all(t.is_file() for t in targets):
            _verify_files([(root / rename(m), d) for m, (d, _) in wanted.items()])
            continue
        archive = _download(url, cache / fname, progress)
        staging = cache / f"staging-{folder}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staged = _extract(archive, wanted, rename, staging)
            for member, src in staged.items():
                dest = root / rename(member)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)
        finally:
            # a bad archive is not kept (a retry downloads it again); a good one is done with
            archive.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
        if folder == "BSD300":
            for split in ("train", "test"):
                dest = root / "BSD300" / f"iids_{split}.txt"
                if not dest.is_file():
                    atomic_write_text(dest, (MANIFESTS / f"BSD300_iids_{split}.txt").read_text())
    if "BSD100" in sets:
        derive_bsd100(root, cache)
    return root


def derive_bsd100(root=None, cache: Path | None = None) -> Path:
    """BSD100 as the SR benchmark has it: each BSD300 test image (decoded as MATLAB reads
    it) cut top-left to 480x320 / 320x480 (data/manifests/BSD100_mapping.txt), written as
    PNG.  Each cut is checked against the benchmark PNGs' decoded pixels
    (``BSD100_pixels.sha256``) before the folder is moved into place, whole."""
    from PIL import Image
    root = paths.datasets_dir(root)
    dest = root / "BSD100"
    if dest.is_dir():
        return dest
    tests = {p.stem: p for p in list_images("BSD300-test", root, verify=True)}
    pixels = _pixel_manifest("BSD100")
    lines = (MANIFESTS / "BSD100_mapping.txt").read_text().splitlines()
    cache = Path(cache) if cache else root / ".download"
    staging = cache / "staging-BSD100"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            fname, iid, size = line.split()[:3]
            w, h = (int(v) for v in size.split("x"))
            img = load_image(tests[iid])[:h, :w]
            want = pixels.get(f"BSD100/{fname}")
            if img.shape[:2] != (h, w) or pixel_sha256(img) != want:
                raise UserError(f"{tests[iid]}: its {w}x{h} cut is not BSD100/{fname} (pixel sha256 "
                                f"{pixel_sha256(img)}, expected {want})")
            Image.fromarray(img).save(staging / fname, format="PNG")
        (staging / "mapping_img_to_bsd_id.txt").write_text((MANIFESTS / "BSD100_mapping.txt").read_text())
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def offline() -> bool:
    """``REDNET_OFFLINE=1``: never fetch (the test suite sets it)."""
    return os.environ.get("REDNET_OFFLINE", "") not in ("", "0")


@contextlib.contextmanager
def _fetch_lock(root: Path):
    """An exclusive lock on the datasets folder while a set is fetched into it: a second
    command that needs the same set waits, then finds it in place."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):      # a file system without flock: unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fetch(folder: str, root=None, progress: bool = True) -> Path:
    """Fetch the missing set ``folder`` (BSD300, BSD200 or BSD100) into the datasets folder;
    raises :class:`SetMissing` (one line: what is missing, where to put it, which command
    fetches it) when that is switched off or fails."""
    root = paths.datasets_dir(root)
    where = root / folder
    named = "" if root == paths.DEFAULT_DATASETS.resolve() else f" DATASETS={root}"
    how = (f"put a copy there (layout: docs/data.md), or fetch it with `make datasets{named}` "
           f"where there is a network")
    if folder not in FETCHED_FOLDERS:
        raise SetMissing(f"{where}: missing")
    if offline():
        raise SetMissing(f"{where}: missing ({folder} does not ship with the project and "
                         f"REDNET_OFFLINE=1 forbids fetching it); {how}")
    try:
        with _fetch_lock(root):
            if not where.is_dir():         # else another command fetched it meanwhile
                src = urls()[1] if folder == "BSD200" else urls()[0]
                print(f"{folder}: not in {root}; fetching it from {src}", file=sys.stderr, flush=True)
                download(root, sets=(folder,), progress=progress)
    except (UserError, OSError) as e:
        with contextlib.suppress(OSError):
            (root / ".download").rmdir()           # only when empty: nothing half-fetched stays
        if isinstance(e, SetMissing):
            raise
        why = (f"fetching it failed ({e})" if isinstance(e, UserError)
               else f"it cannot be fetched there ({e.strerror or e})")
        raise SetMissing(f"{where}: missing, and {why}; {how}") from None
    return where


# --------------------------------------------------------------------------- command line
def _cmd(args) -> int:
    if args.action == "list":
        for name in NAMES:
            files = list_images(name, args.datasets, extras=args.extras)
            print(f"{name:14s} {len(files):4d} images")
    elif args.action == "verify":
        names = args.names or [n for n in NAMES if n not in ("BSD300-train", "BSD300-test")]
        for name in names:
            n = verify(name, args.datasets, extras=args.extras)
            print(f"{name:14s} {n:4d} files ok")
    elif args.action == "download":
        root = download(args.datasets, bsds300_url=args.bsds300_url, bsds500_url=args.bsds500_url,
                        progress=not args.quiet)
        print(f"BSD300, BSD200 and BSD100 verified in {root}")
    elif args.action == "manifest":
        for p in write_manifests(args.datasets):
            print(paths.rel(p))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("datasets", help="list, verify or download the benchmark images",
                              description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["list", "verify", "download", "manifest"],
                   help="list the sets; verify sha256; download BSDS300/500; "
                        "manifest: rewrite data/manifests from a trusted copy (maintainers)")
    p.add_argument("names", nargs="*", help=f"sets to verify (default: all of {', '.join(NAMES)})")
    p.add_argument("--datasets", default=None, help="benchmark image folder (default $DATASETS, "
                                                    "else data/datasets)")
    p.add_argument("--extras", nargs=2, default=None, metavar="NAME",
                   help=f"the two extra denoise14 images (default {' '.join(DENOISE14_DEFAULT_EXTRAS)})")
    p.add_argument("--bsds300-url", default=None, help="default $BSDS300_URL, else Berkeley's")
    p.add_argument("--bsds500-url", default=None, help="default $BSDS500_URL, else Berkeley's")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)
