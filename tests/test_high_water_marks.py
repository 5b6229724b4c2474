"""high_water_marks: measured behaviour at the HWM for each socket type."""

from __future__ import annotations

import pytest

from zmq_basics import high_water_marks as hwm


def test_inproc_queue_is_exactly_both_hwms() -> None:
    result = hwm.demo("inproc")
    assert result.push == (2 * hwm.HWM, "EAGAIN")
    assert result.dealer == (2 * hwm.HWM, "EAGAIN")
    assert result.router_mandatory[0] == 2 * hwm.HWM and result.router_mandatory[2] == "EAGAIN"


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_blocking_and_dropping_types(transport: str) -> None:
    result = hwm.demo(transport)
    assert result.push[1] == result.dealer[1] == "EAGAIN"
    accepted, delivered, stop = result.pub
    assert stop == "never refused" and accepted == hwm.FLOOD and delivered < accepted
    accepted, delivered, stop = result.router
    assert stop == "never refused" and delivered < accepted
    assert result.router_unknown == "Host unreachable"
