"""Output helpers: nothing half-written is ever left behind.

Files and directories are written under a temporary name beside their target and renamed
into place only when complete (rename is atomic on one filesystem).  On error the
temporary is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fivesigma.errors import DataError, OutputError

__all__ = ["atomic_dir", "atomic_file", "check_writable_dir", "ensure_writable_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Fail now if ``path`` could not be created or written later; create nothing.

    Lets a long job (generation, training) stop before it starts when its output
    location is unusable, without leaving an empty directory behind on a later error.
    """
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = (
            "exists and is not a directory"
            if probe == path
            else f"is under '{probe}', which is a file"
        )
        raise OutputError(f"output path '{path}' {what}; choose another with --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"output directory '{probe}' is not writable; choose another with --out")
    return path


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output directory '{path}': {err.strerror}") from None
    if not path.is_dir():
        raise OutputError(f"output path '{path}' exists and is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".fivesigma-probe-"):
            pass
    except OSError as err:
        raise OutputError(
            f"output directory '{path}' is not writable ({err.strerror}); choose another with --out"
        ) from None
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary keeps the target's suffix so writers that look at it (uproot, pyarrow)
    choose the right format.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; a finished output gets the usual permissions (umask applies).
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it to ``path`` on success.

    An existing ``path`` is replaced only once the new content is complete.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise OutputError(f"'{path}' already exists; remove it or choose another --out")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_head(path: Path, n: int = 8) -> bytes:
    """The first ``n`` bytes of an input file (format sniffing); DataError if it is missing,
    not a regular file or unreadable."""
    if not path.exists():
        raise DataError(f"file '{path}' does not exist")
    if not path.is_file():
        raise DataError(f"'{path}' is not a file")
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as err:
        raise DataError(f"cannot read '{path}': {err.strerror or err}") from None
