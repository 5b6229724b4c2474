"""sync_vs_async: all three client styles complete the same workload; figures are written."""

from __future__ import annotations

import json
from pathlib import Path

from zmq_basics import sync_vs_async


def test_three_styles_answer_everything(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    assert (
        sync_vs_async.main(["demo", "--requests", "300", "--window", "8", "--json", str(out)]) == 0
    )
    figures = json.loads(out.read_text())
    styles = ["blocking REQ", "Poller DEALER", "zmq.asyncio DEALER"]
    assert all(figures[style]["per_s"] > 0 for style in styles)
    assert all(figures[style]["p99_ms"] >= figures[style]["p50_ms"] for style in styles)


def test_runs_count_only_matching_replies() -> None:
    runs = sync_vs_async.demo(requests=50, window=4)
    assert [run.ok for run in runs] == [50, 50, 50]
