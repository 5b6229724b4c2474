"""What the agent has sent each controller and not yet seen it read: the bound on replies a
controller that asks and never reads can make the agent hold.

libzmq's send queue counts messages, not bytes, and a reply handed to it is the agent's memory
until the controller reads it: 32 whole-file gets of 16 MiB from a controller that reads
nothing held 512 MiB. A window the controller credits (as streams had) does not bound it,
since the controller says what it consumed and may say anything.

So every sizeable reply (output, results) carries a receipt: 8 random bytes, which a controller
can only know by having read the reply off its socket. The controller sends the receipts back
(`read` in any request, or alone); until then the reply's bytes stay charged to it. A reply
that would take a controller over its budget, or the agent over its total, waits (its operation
keeps its --max-concurrent slot, so waiting replies are bounded too) and a stream pauses.

State only: no socket, no clock; the agent's loop calls it (h11's way), and tests drive it
with no agent at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

RECEIPT_BYTES = 8
# What one charged reply costs besides its frames: its entry here. Counted, so that a budget
# spent on many small replies bounds this table as well as libzmq's queue.
ENTRY_BYTES = 256
PER_PEER_OPTION = "--max-unread-mib"
TOTAL_OPTION = "--max-unread-total-mib"


@dataclass
class _Owed:
    receipts: dict[bytes, int] = field(default_factory=dict)  # receipt -> bytes charged
    total: int = 0


def new_receipt() -> bytes:
    """Unguessable: a receipt proves its reply was read, so one must not be made up."""
    return secrets.token_bytes(RECEIPT_BYTES)


class ReplyLedger:
    """Bytes sent per controller (its routing id) whose receipts have not come back."""

    def __init__(self, per_peer: int, total: int) -> None:
        if per_peer <= 0 or total <= 0:
            raise ValueError("budgets must be positive")
        self.per_peer, self.budget = per_peer, total
        self.total = 0
        self._owed: dict[bytes, _Owed] = {}

    def owed(self, peer: bytes) -> int:
        owed = self._owed.get(peer)
        return 0 if owed is None else owed.total

    def holding_back(self, peer: bytes, size: int) -> str | None:
        """The option whose budget a reply of `size` bytes would exceed now, or None if it may
        go. A controller owed nothing may always have one reply, however large, and so may
        the agent when it is owed nothing at all: else a reply over a budget would never go."""
        owed, cost = self.owed(peer), size + ENTRY_BYTES
        if owed and owed + cost > self.per_peer:
            return PER_PEER_OPTION
        if self.total and self.total + cost > self.budget:
            return TOTAL_OPTION
        return None

    def over(self, peer: bytes) -> str | None:
        """The option whose budget this controller has reached (a stream pauses), or None."""
        if self.owed(peer) >= self.per_peer:
            return PER_PEER_OPTION
        if self.total >= self.budget:
            return TOTAL_OPTION
        return None

    def charge(self, peer: bytes, receipt: bytes, size: int) -> None:
        """A reply of `size` bytes, carrying `receipt`, is being sent to `peer`."""
        cost = size + ENTRY_BYTES
        owed = self._owed.setdefault(peer, _Owed())
        owed.receipts[receipt] = cost
        owed.total += cost
        self.total += cost

    def unsent(self, peer: bytes, receipt: bytes) -> None:
        """The reply charged under `receipt` never left (libzmq refused it): nothing is owed."""
        self.release(peer, (receipt,))

    def release(self, peer: bytes, receipts: Iterable[bytes]) -> int:
        """Receipts the controller sent back; unknown ones (forged, repeated) count nothing.
        The bytes released."""
        owed = self._owed.get(peer)
        if owed is None:
            return 0
        freed = 0
        for receipt in receipts:
            freed += owed.receipts.pop(receipt, 0)
        owed.total -= freed
        self.total -= freed
        if not owed.receipts:
            del self._owed[peer]
        return freed

    def forget(self, peer: bytes) -> None:
        """The controller's connection is gone, and with it libzmq's queue of its replies."""
        owed = self._owed.pop(peer, None)
        if owed is not None:
            self.total -= owed.total

    def peers(self) -> list[bytes]:
        return list(self._owed)
