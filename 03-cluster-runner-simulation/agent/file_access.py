"""Where put and get may reach: below the agent's file roots, through no link, never its own keys.

A path from the wire is checked by name first (absolute, no `..`, below a root, outside the
folders the agent keeps to itself), then opened one folder at a time from the root with
O_NOFOLLOW: a symbolic link anywhere below the root is refused rather than followed, so neither
a link planted in the tree nor one swapped in while we walk can lead out of it. (openat2's
RESOLVE_BENEATH would allow links that stay inside; refusing every link is stricter and needs
nothing newer than openat.) Because each root is resolved once at start and nothing below it is
followed, the name checked is the file opened.

A put writes a temporary file of its own (random name, O_EXCL, in the target's folder), syncs
it, and renames it over the target; the rename is a separate step, `Staged.commit`, so the
agent can make it and answer in one go on its event loop: of concurrent puts to one path, the
last one answered `done` is the one on disk. A put that fails removes its temporary file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_BELOW = _DIRECTORY | os.O_NOFOLLOW


class PathRefusedError(Exception):
    """A path the agent will not touch; the reason names the rule, for the error reply."""


@dataclass(frozen=True)
class FileRoots:
    roots: tuple[Path, ...]  # resolved when the agent starts
    private: tuple[Path, ...] = ()  # never read or written: the agent's key folder
    read_only: tuple[Path, ...] = ()  # never written: the interpreter and its packages

    @classmethod
    def for_agent(cls, roots: Iterable[Path], key_folder: Path | None) -> FileRoots:
        """Roots as given (each must be a folder), the key folder kept private, and the
        interpreter's folders (where a planted .pth would run as the agent) read-only."""
        resolved = []
        for root in roots:
            real = Path(os.path.realpath(root))
            if not real.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "a file root must be a folder", str(root))
            resolved.append(real)
        interpreter = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        return cls(
            roots=tuple(resolved),
            private=() if key_folder is None else (Path(os.path.realpath(key_folder)),),
            read_only=tuple(sorted(Path(os.path.realpath(p)) for p in interpreter)),
        )

    def locate(self, text: str, *, writing: bool) -> tuple[Path, tuple[str, ...]]:
        """(the root, the names below it) for an absolute path, or PathRefusedError."""
        path = PurePosixPath(text)
        if not path.is_absolute():
            raise PathRefusedError(f"path must be absolute, got {text!r}")
        if ".." in path.parts:
            raise PathRefusedError("a path cannot climb with '..'")
        for folder in self.private:
            if _within(path, folder):
                raise PathRefusedError("the agent's own key folder is never served")
        if writing:
            for folder in self.read_only:
                if _within(path, folder):
                    raise PathRefusedError("the agent's interpreter is never written to")
        for root in self.roots:
            if _within(path, root) and path != PurePosixPath(root):
                return root, path.relative_to(root).parts
        shown = ", ".join(str(root) for root in self.roots)
        raise PathRefusedError(f"{text} is outside the agent's file roots ({shown})")


def _within(path: PurePosixPath, folder: Path) -> bool:
    return path == PurePosixPath(folder) or PurePosixPath(folder) in path.parents


def _open_folder(root: Path, names: tuple[str, ...]) -> int:
    """A descriptor for root/names[0]/.../names[-1], refusing any link on the way."""
    fd = os.open(root, _DIRECTORY)
    try:
        for name in names:
            below = os.open(name, _BELOW, dir_fd=fd)
            os.close(fd)
            fd = below
    except OSError as exc:
        os.close(fd)
        raise _explained(exc, root.joinpath(*names)) from None
    return fd


def _explained(exc: OSError, where: Path) -> OSError | PathRefusedError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and where.is_symlink():
        return PathRefusedError(f"{where} is a symbolic link (file operations never follow links)")
    if exc.errno == errno.ELOOP:
        return PathRefusedError(f"a symbolic link on the way to {where} (never followed)")
    return OSError(exc.errno, exc.strerror, str(where))


def read_file(located: tuple[Path, tuple[str, ...]], limit: int) -> bytes:
    root, names = located
    folder = _open_folder(root, names[:-1])
    try:
        # O_NONBLOCK: opening a FIFO with no writer would block this thread for ever (and every
        # later transfer behind it); a device or a socket is no file to send either.
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(names[-1], flags, dir_fd=folder)
        except OSError as exc:
            raise _explained(exc, root.joinpath(*names)) from None
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(root.joinpath(*names)))
        data = source.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"file over {limit} bytes", str(root.joinpath(*names)))
    return data


@dataclass
class Staged:
    """A put written and synced under a temporary name; `commit` renames it into place."""

    folder: int
    temporary: str
    name: str
    where: Path

    def commit(self) -> None:
        try:
            os.replace(self.temporary, self.name, src_dir_fd=self.folder, dst_dir_fd=self.folder)
        except OSError as exc:
            self.discard()
            raise OSError(exc.errno, exc.strerror, str(self.where)) from None
        os.close(self.folder)

    def discard(self) -> None:
        try:
            os.unlink(self.temporary, dir_fd=self.folder)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.folder)


def stage_file(located: tuple[Path, tuple[str, ...]], data: bytes) -> Staged:
    root, names = located
    folder = _open_folder(root, names[:-1])
    temporary = f".{names[-1][:200]}.{secrets.token_hex(8)}.partial"
    staged = Staged(folder, temporary, names[-1], root.joinpath(*names))
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o666, dir_fd=folder)  # the umask decides, as for cp
    except OSError as exc:
        os.close(folder)
        raise OSError(exc.errno, exc.strerror, str(staged.where)) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())  # on disk before the rename makes it the file
    except BaseException:
        staged.discard()
        raise
    return staged
