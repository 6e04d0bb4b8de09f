"""Output files and directories: written atomically, never over what is not a regular file.

``AtomicOutput(path)`` checks the target before any work is done, then offers a temporary
path beside it, ``.<name>.<pid>.<token>.tmp``; ``commit()`` renames it onto the target once it
is complete, ``discard()`` deletes it (a ``with`` block does either; any exception, a
KeyboardInterrupt included, discards).  The target rules (docs/vectors.md §6):

* an existing target must be a regular file (a directory output: an empty directory); a FIFO,
  a device, a socket or a directory in place of a file is refused, and never replaced;
* a symbolic link as the final component is refused unless ``force``: then the file it
  points to is the target (and obeys the same rules);
* the parent directory must exist.

The temporary name carries the writer's pid: a writer killed without a chance to clean up
(SIGKILL, a power cut) leaves a name that the next writer of the same target recognizes, and
removes when that process no longer exists.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat

from refmodel.errors import OutputError

__all__ = ["OutputError", "AtomicOutput", "resolve_target", "write_error", "chmod_default"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_TEMP = re.compile(r"^(\d+)\.[0-9a-f]{8}\.tmp$")  # what follows ".<name>." in a temporary name


def _kind(mode) -> str | None:
    """What a non-regular file is, for messages."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))
    return next((name for test, name in kinds if test(mode)), None)


def _lstat(path, shown):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"{shown}: cannot be examined ({exc.strerror})") from None


def resolve_target(path, *, force: bool = False, directory: bool = False) -> str:
    """The absolute path to write for the user's ``path`` (see the module docstring), or
    OutputError naming ``path``."""
    shown = os.fspath(path)
    if not isinstance(shown, str) or not shown:
        raise OutputError(f"output path {shown!r} is not a file name")
    target = os.path.abspath(shown)
    st = _lstat(target, shown)
    if st is not None and stat.S_ISLNK(st.st_mode):
        if not force:
            raise OutputError(f"{shown}: is a symbolic link; refmodel does not write through one unless forced "
                              f"(--force)")
        target = os.path.realpath(target)
        st = _lstat(target, shown)
    if st is not None:
        if directory and stat.S_ISDIR(st.st_mode):
            try:
                if os.listdir(target):
                    raise OutputError(f"{shown}: the output directory exists and is not empty")
            except OSError as exc:
                raise OutputError(f"{shown}: cannot be listed ({exc.strerror})") from None
        elif directory:
            raise OutputError(f"{shown}: exists and is {_kind(st.st_mode) or 'a file'}, not a directory")
        elif not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{shown}: exists and is {_kind(st.st_mode)}; refmodel replaces only regular files")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise OutputError(f"{shown}: its directory {parent} does not exist")
    return target


def write_error(shown, exc: BaseException) -> OutputError:
    """The OutputError for a failed write of the user's path ``shown``."""
    if getattr(exc, "errno", None) in _NO_SPACE or "No space left" in str(exc):
        return OutputError(f"no space left writing {shown}")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return OutputError(f"{shown}: cannot be written ({reason})")


def chmod_default(path, mode):
    """Give ``path`` the permissions ``mode`` less the umask (temporary files are private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(parent: str, name: str) -> None:
    """Remove the temporary files (or directories) of target ``name`` in ``parent`` whose
    writer process is gone."""
    prefix = f".{name}."
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        match = _TEMP.match(entry[len(prefix):]) if entry.startswith(prefix) else None
        if match is None or _alive(int(match.group(1))):
            continue
        path = os.path.join(parent, entry)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:
            pass  # another writer removed it first, or it is not ours to remove


class AtomicOutput:
    """A temporary file (or, with ``directory``, directory) that becomes ``path`` on
    ``commit()``; see the module docstring."""

    def __init__(self, path, *, force: bool = False, directory: bool = False):
        self.shown = os.fspath(path)
        self.target = resolve_target(path, force=force, directory=directory)
        self.directory = directory
        parent, name = os.path.split(self.target)
        remove_stale(parent, name)
        self.tmp = os.path.join(parent, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            if directory:
                os.mkdir(self.tmp, 0o700)
            else:
                os.close(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise write_error(self.shown, exc) from None

    def commit(self) -> None:
        """Move the finished temporary onto the target (which is checked once more)."""
        try:
            st = _lstat(self.target, self.shown)
            if st is not None and not (stat.S_ISDIR(st.st_mode) if self.directory else stat.S_ISREG(st.st_mode)):
                raise OutputError(f"{self.shown}: became {_kind(st.st_mode)} while refmodel wrote it; not replaced")
            chmod_default(self.tmp, 0o777 if self.directory else 0o666)
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.discard()
            raise write_error(self.shown, exc) from None
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Delete the temporary (never raises)."""
        try:
            if self.directory:
                shutil.rmtree(self.tmp)
            else:
                os.unlink(self.tmp)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
            return False
        self.discard()
        if isinstance(exc, OSError):
            raise write_error(self.shown, exc) from None
        return False
