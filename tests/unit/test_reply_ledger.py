"""The agent's unread-reply budget as state alone: no agent, no socket, no clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zcl.agent.reply_ledger import (
    ENTRY_BYTES,
    PER_PEER_OPTION,
    TOTAL_OPTION,
    ReplyLedger,
    new_receipt,
)

A, B = b"controller-a", b"controller-b"
KiB = 1024


def test_a_reply_goes_while_the_controller_is_within_its_budget() -> None:
    ledger = ReplyLedger(per_peer=100 * KiB, total=1000 * KiB)
    assert ledger.holding_back(A, 60 * KiB) is None
    ledger.charge(A, new_receipt(), 60 * KiB)
    assert ledger.owed_by(A) == 60 * KiB + ENTRY_BYTES
    assert ledger.holding_back(A, 60 * KiB) == PER_PEER_OPTION  # over 100 KiB with this one
    assert ledger.holding_back(B, 60 * KiB) is None  # another controller's budget is its own


def test_one_reply_larger_than_the_budget_still_goes_to_a_controller_owed_nothing() -> None:
    """Else a result over the budget would wait for ever."""
    ledger = ReplyLedger(per_peer=10 * KiB, total=20 * KiB)
    assert ledger.holding_back(A, 1000 * KiB) is None
    ledger.charge(A, new_receipt(), 1000 * KiB)
    assert ledger.holding_back(A, 1) == PER_PEER_OPTION
    assert ledger.holding_back(B, 1) == TOTAL_OPTION  # the agent's total is spent too


def test_the_receipt_read_back_gives_the_room_back() -> None:
    ledger = ReplyLedger(per_peer=100 * KiB, total=1000 * KiB)
    first, second = new_receipt(), new_receipt()
    ledger.charge(A, first, 70 * KiB)
    ledger.charge(A, second, 10 * KiB)
    assert ledger.release(A, [first]) == 70 * KiB + ENTRY_BYTES
    assert ledger.owed_by(A) == 10 * KiB + ENTRY_BYTES and ledger.total == ledger.owed_by(A)
    assert ledger.holding_back(A, 60 * KiB) is None
    ledger.release(A, [second])
    assert ledger.owed_by(A) == 0 and ledger.total == 0 and ledger.peers() == []


def test_forged_repeated_or_anothers_receipts_release_nothing() -> None:
    """A controller cannot claim to have read what it did not: receipts are random, and only
    the connection they were sent on may return them, once."""
    ledger = ReplyLedger(per_peer=100 * KiB, total=1000 * KiB)
    mine, theirs = new_receipt(), new_receipt()
    ledger.charge(A, mine, 50 * KiB)
    ledger.charge(B, theirs, 50 * KiB)
    assert ledger.release(A, [new_receipt(), b"", b"\0" * 8, theirs]) == 0
    assert ledger.release(A, [mine]) > 0
    assert ledger.release(A, [mine]) == 0  # twice is once
    assert ledger.owed_by(B) == 50 * KiB + ENTRY_BYTES


def test_the_total_holds_back_every_controller() -> None:
    ledger = ReplyLedger(per_peer=100 * KiB, total=150 * KiB)
    ledger.charge(A, new_receipt(), 90 * KiB)
    ledger.charge(B, new_receipt(), 50 * KiB)
    assert ledger.holding_back(b"third", 20 * KiB) == TOTAL_OPTION
    assert ledger.holding_back(b"third", 5 * KiB) is None  # what still fits in the total


def test_small_replies_are_charged_their_entry_so_the_table_is_bounded_too() -> None:
    ledger = ReplyLedger(per_peer=100 * ENTRY_BYTES, total=10**9)
    sent = 0
    while ledger.holding_back(A, 0) is None:
        ledger.charge(A, new_receipt(), 0)
        sent += 1
    assert sent == 100


def test_a_connection_gone_owes_nothing() -> None:
    ledger = ReplyLedger(per_peer=100 * KiB, total=150 * KiB)
    ledger.charge(A, new_receipt(), 140 * KiB)
    assert ledger.holding_back(B, 20 * KiB) == TOTAL_OPTION
    ledger.forget(A)
    assert ledger.total == 0 and ledger.holding_back(B, 20 * KiB) is None


def test_budgets_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReplyLedger(per_peer=0, total=1)


@given(
    st.lists(st.tuples(st.sampled_from([A, B]), st.integers(0, 10**6), st.booleans()), max_size=60)
)
def test_the_total_is_always_the_sum_of_what_each_owes(
    steps: list[tuple[bytes, int, bool]],
) -> None:
    ledger = ReplyLedger(per_peer=10**6, total=3 * 10**6)
    sent: dict[bytes, list[bytes]] = {A: [], B: []}
    for peer, size, read_back in steps:
        if ledger.holding_back(peer, size) is None:
            receipt = new_receipt()
            ledger.charge(peer, receipt, size)
            sent[peer].append(receipt)
        if read_back and sent[peer]:
            ledger.release(peer, [sent[peer].pop(0)])
        assert ledger.total == ledger.owed_by(A) + ledger.owed_by(B)
        # Held to the budget, but for the one reply a controller owed nothing may have.
        assert ledger.owed_by(peer) <= 10**6 or len(sent[peer]) == 1
        assert ledger.total <= 3 * 10**6 or sum(map(len, sent.values())) == 1


def test_the_budget_is_the_keys_over_all_its_connections() -> None:
    """One key opening many connections gets one budget, not one each: else eight of them
    spent the agent's whole total and held every other controller's results back."""
    ledger = ReplyLedger(per_peer=100 * KiB, total=1000 * KiB)
    first, second = new_receipt(), new_receipt()
    ledger.charge(b"conn-1", first, 60 * KiB, account=b"key-x")
    assert ledger.holding_back(b"key-x", 60 * KiB) == PER_PEER_OPTION  # on any connection
    ledger.charge(b"conn-2", second, 10 * KiB, account=b"key-x")
    assert ledger.owed_by(b"key-x") == 70 * KiB + 2 * ENTRY_BYTES
    assert ledger.release(b"conn-2", [first]) == 0  # a receipt comes back where it went
    assert ledger.release(b"conn-1", [first]) == 60 * KiB + ENTRY_BYTES
    ledger.forget(b"conn-2")
    assert ledger.owed_by(b"key-x") == 0 and ledger.total == 0
    assert ledger.account_of(b"conn-1") is None
