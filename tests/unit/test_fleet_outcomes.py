"""What zcl-run makes of each node's answer (zcl/fleet_outcomes.py), with no socket."""

from __future__ import annotations

import json

import pytest

from zcl.fleet_outcomes import (
    NO_RESULT,
    TIMED_OUT,
    Outcome,
    as_json,
    folded,
    gathered,
    prefixed,
    worst,
)

pytestmark = pytest.mark.timeout(10)


def test_the_status_a_node_stands_for() -> None:
    assert Outcome("n1", 0).status == 0
    assert Outcome("n1", 3).status == 3
    assert Outcome("n1", -9).status == 137  # killed by a signal, as a shell reports it
    assert Outcome("n1", None, error="refused").status == NO_RESULT
    assert Outcome("n1", None, timed_out=True).status == TIMED_OUT
    assert worst([Outcome("a", 0), Outcome("b", 2), Outcome("c", 1)]) == 2
    assert worst([Outcome("a", 2), Outcome("b", None, error="x")]) == NO_RESULT
    assert worst([]) == 0


def test_each_line_gets_its_node_and_a_last_line_its_newline() -> None:
    assert prefixed(b"one\ntwo", "n1") == "n1: one\nn1: two\n"
    assert prefixed(b"", "n1") == ""
    assert prefixed(b"\xff\n", "n1") == "n1: \ufffd\n"


def test_identical_outputs_fold_under_one_node_set() -> None:
    outcomes = [Outcome(f"node{n}", 0, b"same\n") for n in (1, 2, 3)] + [
        Outcome("node4", 1, b"other\n"),
        Outcome("node5", 0),  # no output: no block
    ]
    assert folded(outcomes) == [("node[1-3]", "same\n", 3), ("node4", "other\n", 1)]
    assert gathered(outcomes).splitlines() == [
        "---------------", "node[1-3] (3)", "---------------", "same",
        "---------------", "node4 (1)", "---------------", "other",
    ]  # fmt: skip


def test_the_json_report() -> None:
    report = json.loads(as_json([Outcome("n2", 0, b"ok\n"), Outcome("n1", None, error="x")], "c"))
    assert list(report["nodes"]) == ["n1", "n2"]
    assert report["exit_status"] == NO_RESULT and report["failed"] == "n1"
    assert report["nodes"]["n2"]["stdout"] == "ok\n"
