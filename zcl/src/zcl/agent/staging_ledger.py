"""Where a put's temporary file is, written down, so that a SIGKILLed agent's successor
removes what it left.

A put writes its temporary file beside the target (`.NAME.<16 hex>.partial`, file_access.py),
which is the only place an atomic rename into place can come from, and anywhere below a file
root. An agent that is stopped removes its own; one killed cannot. So each temporary file gets
an entry here, one small file in the agent's state folder naming it, made before the first
byte is written and removed once the file is renamed into place or discarded. The next agent
with the same identity (its keys and endpoint) sweeps the entries it finds before it serves.

The sweep removes only what looks like one of our temporary files (the name's pattern, a
regular file, not a link), so an entry cannot be turned into a way to delete something else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from pathlib import Path

log = logging.getLogger("zcl.agent.staging_ledger")  # its module path, also under python -m
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{16}\.partial\Z", re.DOTALL)


class StagingLedger:
    """Entries in `folder` (made 0700 on first use); None as folder keeps no entries."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def note(self, temporary: Path) -> Path | None:
        """Write down a temporary file about to be made; returns the entry to `forget`."""
        if self.folder is None:
            return None
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry = self.folder / secrets.token_hex(8)
        fd = os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(os.fsdecode(temporary))
        return entry

    def forget(self, entry: Path | None) -> None:
        if entry is not None:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()

    def sweep(self) -> int:
        """Remove the temporary files an earlier agent noted and never finished; their count."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        removed = 0
        for entry in self.folder.iterdir():
            try:
                temporary = Path(entry.read_text())
            except (OSError, UnicodeDecodeError):
                temporary = None
            if temporary is not None and _ours(temporary):
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
                    removed += 1
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        return removed

    def tidy(self) -> None:
        """At a clean stop: an empty ledger leaves no folder behind."""
        if self.folder is not None:
            with contextlib.suppress(OSError):
                self.folder.rmdir()
                self.folder.parent.rmdir()


def _ours(temporary: Path) -> bool:
    if not temporary.is_absolute() or not TEMPORARY.match(temporary.name):
        return False
    try:
        return stat.S_ISREG(temporary.lstat().st_mode)  # a regular file, not a link
    except OSError:
        return False
