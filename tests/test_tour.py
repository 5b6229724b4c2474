"""tour: runs the chosen lessons and reports one verdict each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zmq_basics import tour


def test_tour_reports_each_lesson(capsys: pytest.CaptureFixture[str]) -> None:
    assert tour.main(["framing", "bind_connect"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "PASS framing:" in out[0] and "PASS bind_connect:" in out[1]
    assert out[-1] == "01 tour: 2 of 2 lessons passed"


def test_tour_fails_when_a_demo_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tour, "run_lesson", lambda name, verbose: (name != "framing", "x", None))
    assert tour.main(["framing", "bind_connect"]) == 1


def test_json_saves_what_each_demo_measured(tmp_path: Path) -> None:
    saved = tmp_path / "bench-01.json"
    assert tour.main(["push_pull", "framing", "--json", str(saved)]) == 0
    figures = json.loads(saved.read_text())
    assert set(figures) == {"push_pull"}  # framing measures nothing: it only checks
    assert 0 < figures["push_pull"]["lost"] < figures["push_pull"]["sent"]
    assert len(figures["push_pull"]["survivors"]) == 2


def test_unknown_lesson_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        tour.main(["nonsense"])
    assert exit_info.value.code == 2
    assert "unknown lesson nonsense" in capsys.readouterr().err
