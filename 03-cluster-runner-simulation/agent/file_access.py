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
last one answered `done` is the one on disk. A put that fails removes its temporary file; one
cut off by a SIGKILL is removed by the next agent (staging_ledger.py).
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

from cluster_sim.agent.staging_ledger import StagingLedger

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


Located = tuple[Path, tuple[str, ...]]  # a root, and the names below it (FileRoots.locate)


@dataclass
class Staged:
    """A put under a temporary name: written (`write_at`, from any thread), synced and
    given its mode (`finish`), then renamed into place (`commit`) or removed (`discard`)."""

    folder: int
    temporary: str
    name: str
    where: Path
    fd: int
    mode: int | None  # None: what the umask leaves of 0666, as cp and SFTP give
    ledger: StagingLedger
    entry: Path | None  # the ledger's note of this temporary file

    def write_at(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def finish(self) -> None:
        if self.mode is not None:
            os.fchmod(self.fd, self.mode)
        os.fsync(self.fd)  # on disk before the rename makes it the file
        os.close(self.fd)
        self.fd = -1

    def commit(self) -> None:
        try:
            os.replace(self.temporary, self.name, src_dir_fd=self.folder, dst_dir_fd=self.folder)
        except OSError as exc:
            self.discard()
            raise OSError(exc.errno, exc.strerror, str(self.where)) from None
        os.close(self.folder)
        self.folder = -1
        self.ledger.forget(self.entry)

    def discard(self) -> None:
        if self.folder < 0:
            return  # committed or discarded already
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.temporary, dir_fd=self.folder)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.folder)
            self.folder = -1
            self.ledger.forget(self.entry)


NO_LEDGER = StagingLedger(None)


def open_staged(
    located: Located, mode: int | None = None, ledger: StagingLedger = NO_LEDGER
) -> Staged:
    """An empty temporary file beside the target: O_EXCL under a random name, never a link;
    noted in `ledger` before it exists, so no crash can leave it unrecorded."""
    root, names = located
    folder = _open_folder(root, names[:-1])
    temporary = f".{names[-1][:200]}.{secrets.token_hex(8)}.partial"
    where = root.joinpath(*names)
    try:
        entry = ledger.note(where.parent / temporary)
    except OSError:
        os.close(folder)
        raise
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o666, dir_fd=folder)  # the umask decides, as for cp
    except OSError as exc:
        os.close(folder)
        ledger.forget(entry)
        raise OSError(exc.errno, exc.strerror, str(where)) from None
    return Staged(folder, temporary, names[-1], where, fd, mode, ledger, entry)


def stage_file(
    located: Located, data: bytes, mode: int | None = None, ledger: StagingLedger = NO_LEDGER
) -> Staged:
    """A whole file in one go: written, synced, ready to commit."""
    staged = open_staged(located, mode, ledger)
    try:
        staged.write_at(0, data)
        staged.finish()
    except BaseException:
        staged.discard()
        raise
    return staged


def make_folder(located: Located, mode: int | None) -> bool:
    """Create the folder (its parent must exist); True if it was made, False if it was there.
    A file or a link in its place is an error, never followed."""
    root, names = located
    parent = _open_folder(root, names[:-1])
    try:
        try:
            os.mkdir(names[-1], 0o777 if mode is None else mode, dir_fd=parent)
        except FileExistsError:
            os.close(_open_below(parent, names[-1], root.joinpath(*names)))  # a folder, no link
            return False
        if mode is not None:  # mkdir's mode passed through the umask; the caller asked for it
            folder = _open_below(parent, names[-1], root.joinpath(*names))
            try:
                os.fchmod(folder, mode)
            finally:
                os.close(folder)
        return True
    finally:
        os.close(parent)


def _open_below(parent: int, name: str, where: Path) -> int:
    try:
        return os.open(name, _BELOW, dir_fd=parent)
    except OSError as exc:
        raise _explained(exc, where) from None


@dataclass(frozen=True)
class Piece:
    """What a chunked get answers: the bytes at an offset, and the file's size and mode."""

    data: bytes
    size: int
    mode: int


@dataclass(frozen=True)
class Listing:
    """What a get of a folder answers: its entries as (name, kind, mode, size)."""

    mode: int
    entries: list[tuple[str, str, int, int]]


def read_piece(
    located: Located, offset: int, length: int, *, limit: int, max_entries: int
) -> Piece | Listing:
    """`length` bytes at `offset` of a regular file (of at most `limit` bytes), or the listing
    of a folder."""
    root, names = located
    where = root.joinpath(*names)
    folder = _open_folder(root, names[:-1])
    try:
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC  # as read_file
        try:
            fd = os.open(names[-1], flags, dir_fd=folder)
        except OSError as exc:
            raise _explained(exc, where) from None
    finally:
        os.close(folder)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return Listing(stat.S_IMODE(info.st_mode), _entries(fd, where, max_entries))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(where))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"file over {limit} bytes", str(where))
        return Piece(os.pread(fd, length, offset), info.st_size, stat.S_IMODE(info.st_mode))
    finally:
        os.close(fd)


def _entries(fd: int, where: Path, most: int) -> list[tuple[str, str, int, int]]:
    entries: list[tuple[str, str, int, int]] = []
    with os.scandir(fd) as found:
        for entry in found:
            if len(entries) == most:
                raise OSError(errno.E2BIG, f"more than {most} entries", str(where))
            info = entry.stat(follow_symlinks=False)
            kind = (
                "file"
                if stat.S_ISREG(info.st_mode)
                else "folder"
                if stat.S_ISDIR(info.st_mode)
                else "link"
                if stat.S_ISLNK(info.st_mode)
                else "other"
            )
            entries.append((entry.name, kind, stat.S_IMODE(info.st_mode), info.st_size))
    return sorted(entries)
