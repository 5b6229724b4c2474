"""tour: runs the chosen lessons and reports one verdict each."""

from __future__ import annotations

import pytest

from zmq_basics import tour


def test_tour_reports_each_lesson(capsys: pytest.CaptureFixture[str]) -> None:
    assert tour.main(["framing", "bind_connect"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "PASS framing:" in out[0] and "PASS bind_connect:" in out[1]
    assert out[-1] == "01 tour: 2 of 2 lessons passed"


def test_tour_fails_when_a_demo_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tour, "run_lesson", lambda name, verbose: (name != "framing", "x"))
    assert tour.main(["framing", "bind_connect"]) == 1


def test_unknown_lesson_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        tour.main(["nonsense"])
    assert exit_info.value.code == 2
    assert "unknown lesson nonsense" in capsys.readouterr().err
