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

A receipt belongs to the connection it was sent on (only that one may return it); the budget
belongs to the controller's key, all its connections together, so that one key opening many
connections does not get a budget for each and spend the agent's total alone.

State only: no socket, no clock; the agent's loop calls it (h11's way), and tests drive it
with no agent at all.
"""

from __future__ import annotations

import secrets
from collections import Counter
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
    account: bytes  # the controller's key (the connection itself without keys)
    receipts: dict[bytes, int] = field(default_factory=dict)  # receipt -> bytes charged


def new_receipt() -> bytes:
    """Unguessable: a receipt proves its reply was read, so one must not be made up."""
    return secrets.token_bytes(RECEIPT_BYTES)


class ReplyLedger:
    """Bytes sent per connection (its routing id) whose receipts have not come back, summed
    per account (the controller's key) and in all."""

    def __init__(self, per_peer: int, total: int) -> None:
        if per_peer <= 0 or total <= 0:
            raise ValueError("budgets must be positive")
        self.per_peer, self.budget = per_peer, total
        self.total = 0
        self._owed: dict[bytes, _Owed] = {}  # per connection
        self._accounts: Counter[bytes] = Counter()  # per account: the bytes owed

    def account_of(self, peer: bytes) -> bytes | None:
        owed = self._owed.get(peer)
        return None if owed is None else owed.account

    def owed_by(self, account: bytes) -> int:
        return self._accounts.get(account, 0)

    def holding_back(self, account: bytes, size: int) -> str | None:
        """The option whose budget a reply of `size` bytes to this account would exceed now,
        or None if it may go. An account owed nothing may always have one reply, however
        large, and so may anyone when the agent is owed nothing at all: else a reply over a
        budget would never go."""
        owed, cost = self.owed_by(account), size + ENTRY_BYTES
        if owed and owed + cost > self.per_peer:
            return PER_PEER_OPTION
        if self.total and self.total + cost > self.budget:
            return TOTAL_OPTION
        return None

    def charge(self, peer: bytes, receipt: bytes, size: int, account: bytes | None = None) -> None:
        """A reply of `size` bytes, carrying `receipt`, is being sent on connection `peer`,
        whose controller's key is `account` (the connection itself if None)."""
        cost = size + ENTRY_BYTES
        owed = self._owed.setdefault(peer, _Owed(peer if account is None else account))
        owed.receipts[receipt] = cost
        self._accounts[owed.account] += cost
        self.total += cost

    def unsent(self, peer: bytes, receipt: bytes) -> None:
        """The reply charged under `receipt` never left (libzmq refused it): nothing is owed."""
        self.release(peer, (receipt,))

    def release(self, peer: bytes, receipts: Iterable[bytes]) -> int:
        """Receipts the connection sent back; unknown ones (forged, repeated, another
        connection's) count nothing. The bytes released."""
        owed = self._owed.get(peer)
        if owed is None:
            return 0
        freed = sum(owed.receipts.pop(receipt, 0) for receipt in receipts)
        self._settle(owed, freed)
        if not owed.receipts:
            del self._owed[peer]
        return freed

    def forget(self, peer: bytes) -> None:
        """The connection is gone, and with it libzmq's queue of its replies."""
        owed = self._owed.pop(peer, None)
        if owed is not None:
            self._settle(owed, sum(owed.receipts.values()))

    def _settle(self, owed: _Owed, freed: int) -> None:
        self.total -= freed
        self._accounts[owed.account] -= freed
        if not self._accounts[owed.account]:
            del self._accounts[owed.account]

    def peers(self) -> list[bytes]:
        return list(self._owed)
