"""Where put and get may reach: below the agent's file roots, through no link, nothing of its own.

The roots are checked once, at start: none may hold or lie within the agent's keys, the folders
Python imports its code from (a put-only key could otherwise plant a module, or a .pth, that runs
as the agent at its next start), or a kernel view (/proc/PID/mem of the agent holds its secret
key). A path from the wire is then checked by name (at most 4,096 bytes, absolute, no `..`,
below a root, outside the agent's state folder: one pass over its names), and opened one folder
at a time from the root with O_NOFOLLOW: a symbolic link anywhere below the root is refused
rather than followed, so neither a link planted in the tree nor one swapped in while we walk
can lead out of it. (openat2's RESOLVE_BENEATH would allow links that stay inside; refusing
every link is stricter and needs nothing newer than openat.) What is opened is refused again if
it lies on a kernel filesystem, which a bind mount can put below any root. A mode from the wire
loses its set-id, sticky and others' write bits (`safe_mode`).

A put writes a temporary file of its own (random name, O_EXCL, in the target's folder), syncs
it, and renames it over the target; the rename is a separate step, `Staged.commit`, so the
agent can make it and answer in one go on its event loop: of concurrent puts to one path, the
last one answered `done` is the one on disk. A put that fails removes its temporary file; one
cut off by a SIGKILL is removed by the next agent (staging_ledger.py).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from zcl.agent.staging_ledger import StagingLedger
from zcl.errors import ZclError
from zcl.protocols import safe_mode

__all__ = ["safe_mode"]  # the agent's import: a mode from the wire, made safe

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_BELOW = _DIRECTORY | os.O_NOFOLLOW


class PathRefusedError(ZclError):
    """A path the agent will not touch; the reason names the rule, for the error reply."""


class RootRefusedError(ZclError, ValueError):
    """A --file-root the agent will not serve; the reason names what the root would expose."""


# Linux's own bounds on a path and on one name in it: a longer one can name no file, and
# checking it would only cost time (a path of 100,000 components kept the agent busy 20 s).
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
# Kernel views, never files to hand out or write: /proc/PID/mem holds the agent's secret key.
PSEUDO_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))
PSEUDO_FILESYSTEMS = frozenset(
    {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
     "bpf", "configfs", "pstore", "efivarfs", "mqueue", "fusectl", "binfmt_misc", "hugetlbfs"}
)  # fmt: skip


@dataclass(frozen=True)
class FileRoots:
    """The folders put and get reach below, checked once at start (`for_agent`)."""

    roots: tuple[Path, ...]  # resolved when the agent starts; none: the agent serves no files
    private: tuple[Path, ...] = ()  # never read or written: the agent's state folder

    @classmethod
    def for_agent(
        cls, roots: Iterable[Path], keys: Iterable[Path] = (), private: Iterable[Path] = ()
    ) -> FileRoots:
        """Roots as given, each a folder that neither holds nor lies within what the agent
        runs from (its interpreter, every folder Python imports from, its code), its `keys`
        folder or a kernel view (RootRefusedError says which); `private` folders (its state)
        may lie below a root and are never served."""
        kept = [Path(os.path.realpath(folder)) for folder in keys]
        code, working = _code_folders()
        resolved = []
        for root in roots:
            real = Path(os.path.realpath(root))
            if not real.is_dir():
                raise RootRefusedError(f"{root}: not a folder")
            near = [  # (a folder, what it is, whether a root below it is as bad as one above it)
                *((tree, "a kernel view", True) for tree in PSEUDO_TREES),
                *((folder, "the agent's keys", True) for folder in kept),
                *((folder, "where the agent imports its code from", True) for folder in code),
                # Python imports top-level modules from the working folder (under `python -m`):
                # a root below it cannot write there, a root holding it could (msgpack.py).
                *((folder, "the agent's working folder, where Python imports from", False)
                  for folder in working),
            ]  # fmt: skip
            for folder, what, below_too in near:
                if _within(folder, real) or (below_too and _within(real, folder)):
                    raise RootRefusedError(f"{root}: would expose {folder}, {what}")
            resolved.append(real)
        hidden = tuple(Path(os.path.realpath(folder)) for folder in private)
        return cls(roots=tuple(resolved), private=hidden)

    def locate(self, text: str) -> tuple[Path, tuple[str, ...]]:
        """(the root, the names below it) for an absolute path, or PathRefusedError; linear in
        the path's length, which is bounded."""
        if not self.roots:
            raise PathRefusedError("this agent serves no files (started without --file-root)")
        encoded = os.fsencode(text)
        if len(encoded) > MAX_PATH_BYTES:
            raise PathRefusedError(f"a path is at most {MAX_PATH_BYTES} bytes: {len(encoded):,}")
        path = PurePosixPath(text)
        if not path.is_absolute():
            raise PathRefusedError(f"path must be absolute, got {text!r}")
        if ".." in path.parts:
            raise PathRefusedError("a path cannot climb with '..'")
        if any(len(os.fsencode(name)) > MAX_NAME_BYTES for name in path.parts):
            raise PathRefusedError(f"a name in a path is at most {MAX_NAME_BYTES} bytes")
        for folder in self.private:
            if _within(path, folder):
                raise PathRefusedError("the agent's own state folder is never served")
        for root in self.roots:
            if _within(path, root) and len(path.parts) > len(root.parts):
                return root, path.parts[len(root.parts) :]
        shown = ", ".join(str(root) for root in self.roots)
        raise PathRefusedError(f"{text} is outside the agent's file roots ({shown})")


def _within(path: PurePosixPath | Path, folder: PurePosixPath | Path) -> bool:
    """path is folder or below it: a comparison of names, one pass."""
    return path.parts[: len(folder.parts)] == folder.parts


def _code_folders() -> tuple[list[Path], list[Path]]:
    """Where this interpreter would import from at its next start: its prefixes, the entries
    of sys.path, its own package and the user's site folder; and apart, the working folder
    when sys.path holds it (its first entry under `python -m`)."""
    import site  # noqa: PLC0415 (only the agent's start needs it)

    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    folders.update(entry for entry in sys.path if entry)
    folders.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # zcl itself
    if site.ENABLE_USER_SITE:
        folders.add(site.getusersitepackages())
    working = [os.getcwd()] if "" in sys.path or os.getcwd() in sys.path else []
    code = {Path(os.path.realpath(folder)) for folder in folders} - {Path(os.getcwd())}
    return sorted(code), [Path(os.path.realpath(folder)) for folder in working]


@functools.cache
def _kernel_view_devices() -> frozenset[int]:
    """st_dev of every mount of a kernel filesystem, from /proc/self/mountinfo."""
    devices = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if " - " not in line or len(fields) < 3:
                continue
            kind = line.split(" - ", 1)[1].split()[0]
            if kind in PSEUDO_FILESYSTEMS:
                major, minor = fields[2].split(":")
                devices.add(os.makedev(int(major), int(minor)))
    for tree in PSEUDO_TREES:
        with contextlib.suppress(OSError):
            devices.add(os.stat(tree).st_dev)
    return frozenset(devices)


def _open_folder(root: Path, names: tuple[str, ...]) -> int:
    """A descriptor for root/names[0]/.../names[-1], refusing any link on the way."""
    fd = os.open(root, _DIRECTORY)
    try:
        for name in names:
            below = os.open(name, _BELOW, dir_fd=fd)
            os.close(fd)
            fd = below
        _refuse_kernel_view(fd, root.joinpath(*names))
    except OSError as exc:
        os.close(fd)
        raise _explained(exc, root.joinpath(*names)) from None
    except PathRefusedError:
        os.close(fd)
        raise
    return fd


def _refuse_kernel_view(fd: int, where: Path) -> None:
    """A kernel view mounted below a root (a bind mount of /proc, say) is no file to serve."""
    if os.fstat(fd).st_dev in _kernel_view_devices():
        raise PathRefusedError(f"{where} is on a kernel view (/proc, /sys, /dev): never served")


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
        _refuse_kernel_view(fd, root.joinpath(*names))
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
        _refuse_kernel_view(fd, where)
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
