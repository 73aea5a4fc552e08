"""User-facing errors and safe file writing.

Bad input raises :class:`UserError` with a one-line message that names the file or
parameter and what was expected; the command-line entry point prints it as
``error: <message>`` and exits with status 2.  Output files are written to a temporary
name in the same folder and renamed into place, so no half-written file is ever left.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


class UserError(Exception):
    """Bad input or a missing prerequisite; the message is shown to the user as is."""


@contextlib.contextmanager
def atomic_path(dest: os.PathLike | str, suffix: str | None = None):
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` on success.

    On an exception the temporary file is removed and ``dest`` is untouched.
    ``suffix`` defaults to dest's own suffix (some writers pick the format from it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + dest.name + ".tmp.",
                               suffix=dest.suffix if suffix is None else suffix, dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        if os.path.exists(tmp):
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(dest)       # a failed write() names no file: name what was being written
        raise


def atomic_write_text(dest: os.PathLike | str, text: str) -> None:
    """Write ``text`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def atomic_write_all(files: dict) -> None:
    """Write several text files as one: every file is written under a temporary name first
    and renamed onto its destination only when all were written (a full disk or any other
    error leaves every destination as it was)."""
    with contextlib.ExitStack() as stack:
        for dest, text in files.items():
            stack.enter_context(atomic_path(dest)).write_text(text)
        # the renames happen as the stack unwinds without an error, one after another


def atomic_write_bytes(dest: os.PathLike | str, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def check_writable(folder: os.PathLike | str, name: str | None = None) -> None:
    """Raise :class:`UserError` unless files can be made in ``folder`` (when it does not exist
    yet: in its nearest existing parent, where it would be made): a read-only disk or folder is
    named before any long computation.  The probe is an unnamed temporary file: nothing stays."""
    folder = Path(folder)
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    label = name or str(folder)
    if not p.is_dir():
        raise UserError(f"{label}: {p} is not a folder")
    try:
        tempfile.TemporaryFile(dir=p).close()
    except OSError as e:
        raise UserError(f"{label}: cannot write there ({e.strerror})") from None
