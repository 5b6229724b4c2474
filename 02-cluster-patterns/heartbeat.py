"""Heartbeats: learn each peer's rhythm, call it dead when its silence breaks that rhythm.

The rules live in the product, `zcl.heartbeat` (zcl/src/zcl/heartbeat.py), because the node
agent and the ZeroMQ executor of step 03 judge each other by the same ones; step 02's
coordinator and worker import them from there too. Read that file for the code; this one is
where the brief puts the heartbeat, and it names what to look at:

- `Liveness(now)` holds one peer's learned rhythm. `heard(now)` is called for every message (any
  message proves the peer alive); `heard(now, is_heartbeat=True)` for a heartbeat, whose gap
  teaches the rhythm. `is_dead(now)` says whether the silence has outlasted `liveness` intervals
  plus a margin that grows with the jitter seen. Until three gaps are seen, a peer gets a
  patient allowance (`UNLEARNED_ALLOWANCE_S`), so a slow third-party worker is not condemned
  by a fast rule.
- `Backoff` spaces out reconnects: doubling, capped, randomised, so that workers that lost the
  same coordinator do not come back in the same millisecond.
- `OUR_INTERVAL_S` is what our workers and coordinator beat at.

Both are state objects in the majortomo style: no socket, the time handed in, so
tests/unit/test_heartbeat.py checks them with numbers and no clock, and heartbeat_demo.py puts them
to work between real processes.
"""

from __future__ import annotations

from zcl.heartbeat import OUR_INTERVAL_S, UNLEARNED_ALLOWANCE_S, Backoff, Liveness

__all__ = ["OUR_INTERVAL_S", "UNLEARNED_ALLOWANCE_S", "Backoff", "Liveness"]
