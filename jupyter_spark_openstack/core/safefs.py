"""File operations for a hub that runs as root next to directories its users can write.

The rules (each function keeps one of them):

* root never follows a symbolic link it did not make: files are opened with ``O_NOFOLLOW``,
  new files with ``O_EXCL`` (a name planted in advance makes the call fail instead of writing
  through it), ownership is given with ``fchown`` on the open file or ``lchown``, never by a
  recursive chown;
* a directory root creates for a user is created fresh (``mkdir`` fails if the name exists)
  inside a directory only root can write;
* every path read back from saved state must lie under the directory it belongs to
  (:func:`require_under`), or it is refused;
* trees are removed with :func:`shutil.rmtree`, which on Linux walks by file descriptor and
  does not follow links (``shutil.rmtree.avoids_symlink_attacks``).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from .errors import ClusterError

Owner = tuple[int, int] | None   # (uid, gid) to give a new file or directory; None: keep ours


class UnsafePathError(ClusterError):
    """A path from saved state lies outside the directory it must be in, or is a link."""


def _chown_fd(fd: int, owner: Owner) -> None:
    if owner is not None and os.geteuid() == 0:
        os.fchown(fd, owner[0], owner[1])


def make_dir(path: str | os.PathLike, mode: int = 0o700, owner: Owner = None, *,
             exist_ok: bool = False) -> Path:
    """Create one directory (its parent must exist) with ``mode`` and ``owner``. With
    ``exist_ok`` an existing *directory owned by us* that is no link is accepted (its mode is
    set again); anything else at that name is refused."""
    p = Path(path)
    try:
        os.mkdir(p, 0o700)
    except FileExistsError:
        if not exist_ok:
            raise
        st = os.lstat(p)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise UnsafePathError(f"{p} exists and is not a directory of ours: refusing to use it") from None
    fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _chown_fd(fd, owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return p


def make_dirs(path: str | os.PathLike, mode: int = 0o700) -> Path:
    """``mkdir -p`` for directories of the hub itself: every component created is ours with
    ``mode``; an existing component must be a real directory (not a link)."""
    p = Path(path)
    missing = []
    q = p
    while not os.path.lexists(q):
        missing.append(q)
        q = q.parent
    if not stat.S_ISDIR(os.lstat(q).st_mode):
        raise UnsafePathError(f"{q} is not a directory")
    for d in reversed(missing):
        make_dir(d, mode, exist_ok=True)
    if not missing:
        st = os.lstat(p)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(f"{p} is not a directory (a link?): refusing to use it")
    return p


def write_file(path: str | os.PathLike, data: str | bytes, mode: int = 0o600,
               owner: Owner = None, *, replace: bool = False) -> str:
    """Write a new file (``O_CREAT|O_EXCL|O_NOFOLLOW``), owned by ``owner``. With ``replace``
    an existing file of that name is unlinked first (in a directory only we can write, that
    is safe; the new file is still created exclusively)."""
    p = Path(path)
    if replace:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        _chown_fd(fd, owner)
        os.fchmod(fd, mode)
        raw = data.encode() if isinstance(data, str) else data
        view = memoryview(raw)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)
    return str(p)


def write_json_atomic(path: str | os.PathLike, obj, mode: int = 0o600) -> None:
    """Replace ``path`` with ``obj`` as JSON, atomically (temp file + rename), never writing
    through a link: for state files in the hub's own directories."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    write_file(tmp, json.dumps(obj), mode, replace=True)
    os.replace(tmp, p)


def open_log(path: str | os.PathLike) -> int:
    """A log file for a daemon's stdout/stderr, opened for append without following a link;
    returns the descriptor (the caller closes it)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def read_json(path: str | os.PathLike, *, owner_uid: int | None = None):
    """JSON from a regular file that is no link (and, with ``owner_uid``, owned by that uid):
    state the hub wrote. Returns None if missing; raises :class:`UnsafePathError` otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UnsafePathError(f"{path}: {e.strerror} (a link?): not read") from None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path} is not a regular file: not read")
        if owner_uid is not None and st.st_uid != owner_uid:
            raise UnsafePathError(f"{path} is owned by uid {st.st_uid}, not {owner_uid}: not trusted")
        return json.load(f)


def is_under(path: str | os.PathLike, base: str | os.PathLike) -> bool:
    """Whether ``path`` (normalised, without resolving links) lies strictly under ``base``."""
    try:
        p = os.path.normpath(os.path.abspath(os.fspath(path)))
        b = os.path.normpath(os.path.abspath(os.fspath(base)))
    except (TypeError, ValueError):
        return False
    return p.startswith(b.rstrip(os.sep) + os.sep)


def require_under(path, base, what: str = "path") -> Path:
    """``path`` if it lies under ``base``; :class:`UnsafePathError` otherwise."""
    if not isinstance(path, str | os.PathLike) or not is_under(path, base):
        raise UnsafePathError(f"refusing {what} {path!r}: it is not under {base}")
    return Path(path)


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a tree without following links inside it (a link at ``path`` itself is
    unlinked, never followed)."""
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(p)
        return
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux has it
        raise UnsafePathError("this platform's rmtree can follow links: not removing " + str(p))
    shutil.rmtree(p, ignore_errors=True)
