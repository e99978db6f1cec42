"""Output helpers: nothing half-written is ever left behind.

Files and directories are written under a temporary name beside their target and renamed
into place only when complete (rename is atomic on one filesystem).  On error the
temporary is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fivesigma.errors import DataError, OutputError

__all__ = [
    "RESUMABLE",
    "OutputLock",
    "atomic_dir",
    "atomic_file",
    "check_writable_dir",
    "ensure_writable_dir",
    "partial_path",
    "remap",
    "staged_output",
    "staging_path",
]


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


#: temporaries are named ``<prefix>tmp-<pid>-<random>``: the pid tells a later run whether
#: the process that wrote one is gone (killed), so the leftover can be removed
_TMP_TAG = "tmp-"


def _tmp_prefix(prefix: str) -> str:
    return f"{prefix}{_TMP_TAG}{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _clean_stale_temporaries(directory: Path, prefix: str) -> None:
    """Remove temporaries under ``prefix`` left in ``directory`` by processes that died."""
    try:
        candidates = list(directory.glob(f"{prefix}{_TMP_TAG}*"))
    except OSError:
        return
    for candidate in candidates:
        pid_text = candidate.name[len(prefix) + len(_TMP_TAG) :].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary keeps the target's suffix so writers that look at it (uproot, pyarrow)
    choose the right format.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    _clean_stale_temporaries(path.parent, f".{path.stem}.")
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=_tmp_prefix(f".{path.stem}."), suffix=path.suffix
    )
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
    _clean_stale_temporaries(path.parent, f".{path.name}.")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(f".{path.name}.")))
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


# --------------------------------------------------------------------------------------
# A run's whole output directory: locked, built aside, swapped in when complete


class OutputLock:
    """An exclusive lock on an output directory, held by one run at a time.

    The lock is a file ``.<name>.lock`` beside the directory holding the owner's pid and
    host.  A lock left by a process that no longer exists on this host is taken over; a
    live owner (or one on another host, which cannot be checked) is a one-line
    :class:`OutputError`.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        out = Path(out)
        self.path = out.parent / f".{out.name}.lock"
        self.out = out
        self._held = False

    def _owner(self) -> dict[str, object] | None:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    @staticmethod
    def _alive(pid: object) -> bool:
        return isinstance(pid, int) and pid > 0 and _pid_alive(pid)

    def acquire(self) -> OutputLock:
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        ensure_writable_dir(self.path.parent)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                stale = (
                    owner is not None
                    and owner.get("host") == me["host"]
                    and not self._alive(owner.get("pid"))
                )
                if stale or (owner is None and not self.path.exists()):
                    self.path.unlink(missing_ok=True)
                    continue
                who = (
                    f"pid {owner.get('pid')} on {owner.get('host')}"
                    if owner
                    else "an unreadable lock"
                )
                raise OutputError(
                    f"another fivesigma run ({who}) is writing '{self.out}'; wait for it to "
                    f"finish or choose another --out (remove '{self.path}' only if no run is "
                    "left)"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held = True
            return self
        raise OutputError(f"cannot take the lock '{self.path}' on '{self.out}'")

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def staging_path(out: str | os.PathLike) -> Path:
    """Where a run into ``out`` builds its output: a hidden sibling directory.

    It persists after an interruption (training checkpoints live in it), so the same
    command resumes; it is removed once its content has been swapped into ``out``.
    """
    out = Path(out)
    return out.parent / f".{out.name}.staging"


def partial_path(out: str | os.PathLike) -> Path:
    """Where ``--keep-partial`` leaves the output of a failed run: ``<out>.partial``."""
    out = Path(out)
    return out.parent / f"{out.name}.partial"


#: what a new attempt keeps from the staging directory of an interrupted one
RESUMABLE = ("checkpoints",)


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, keep_partial: bool = False) -> Iterator[Path]:
    """Lock ``out``, yield a staging directory to write the run into, swap it in at the end.

    On success the previous content of ``out`` is replaced as a whole, so ``out`` always
    holds one complete run: the previous one until the new one is complete, then the new
    one (stale files of the previous run, e.g. bundles of models no longer configured,
    disappear with it).  On failure ``out`` is untouched; the staging directory is kept
    for resuming when it holds training checkpoints, else removed, or with
    ``keep_partial`` moved to ``<out>.partial``.
    """
    out = check_writable_dir(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path '{out}' exists and is not a directory; choose another")
    staging = staging_path(out)
    with OutputLock(out):
        if staging.exists():
            for child in staging.iterdir():  # keep only what lets a run resume
                if child.name not in RESUMABLE:
                    _remove(child)
        ensure_writable_dir(staging)
        try:
            yield staging
        except BaseException:
            if keep_partial and staging.exists():
                partial = partial_path(out)
                _remove(partial)
                os.replace(staging, partial)
            elif staging.exists() and not any((staging / name).exists() for name in RESUMABLE):
                shutil.rmtree(staging, ignore_errors=True)
            raise
        _swap_in(staging, out)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` with two renames (never a moment without a run)."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    _remove(old)
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(old, out)  # put the previous run back
        raise
    shutil.rmtree(old, ignore_errors=True)


def remap(path: Path | None, staging: Path, out: Path) -> Path | None:
    """``path`` inside ``staging`` as it is called once swapped into ``out``."""
    if path is None:
        return None
    try:
        return out / Path(path).relative_to(staging)
    except ValueError:
        return Path(path)
