"""zcl_tools.figures: marked sections are rendered from their JSON, and a stale one is caught."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster_patterns.cli import CliError
from tests.doc_blocks import REPO
from tests.helpers import python_module
from zcl_tools.figures import Results, render_text, stale_sections


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    shutil.copytree(REPO / "results", folder)
    return folder


def figures(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return python_module("zcl_tools.figures", *args, timeout_s=60, cwd=cwd)


def test_render_fills_only_the_marked_section(results: Path) -> None:
    text = "before\n<!-- figures: broker-02 -->\nstale\n<!-- /figures: broker-02 -->\nafter\n"
    fresh = render_text(text, Results(results))
    assert fresh.startswith("before\n<!-- figures: broker-02 -->\n| what | figure | goal |")
    assert fresh.endswith("<!-- /figures: broker-02 -->\nafter\n")
    assert "stale" not in fresh
    assert render_text(fresh, Results(results)) == fresh  # rendering twice changes nothing


def test_a_changed_measurement_makes_the_section_stale(results: Path, tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text("<!-- figures: docker-bench -->\n<!-- /figures: docker-bench -->\n")
    document.write_text(render_text(document.read_text(), Results(results)))
    assert stale_sections(document, Results(results)) == []
    bench = json.loads((results / "bench-docker.json").read_text())
    bench["latency"]["zmq"]["p50_ms"] += 1.0
    (results / "bench-docker.json").write_text(json.dumps(bench))
    assert stale_sections(document, Results(results)) == ["docker-bench"]


def test_check_exits_1_naming_the_stale_section_and_render_mends_it(
    results: Path, tmp_path: Path
) -> None:
    document = tmp_path / "doc.md"
    document.write_text("# doc\n<!-- figures: go-no-go -->\nold\n<!-- /figures: go-no-go -->\n")
    checked = figures("check", str(document), "--results", str(results), cwd=tmp_path)
    assert checked.returncode == 1
    assert f"differs from its JSON: {document}: go-no-go" in checked.stdout
    assert figures("render", str(document), "--results", str(results), cwd=tmp_path).returncode == 0
    assert figures("check", str(document), "--results", str(results), cwd=tmp_path).returncode == 0


def test_an_unknown_section_or_a_missing_file_is_a_clear_error(
    results: Path, tmp_path: Path
) -> None:
    with pytest.raises(CliError, match="unknown figures section 'nope'"):
        render_text("<!-- figures: nope -->\n<!-- /figures: nope -->", Results(results))
    (results / "bench-01.json").unlink()
    document = tmp_path / "doc.md"
    document.write_text("<!-- figures: lessons-01 -->\n<!-- /figures: lessons-01 -->\n")
    done = figures("check", str(document), "--results", str(results), cwd=tmp_path)
    assert done.returncode == 1
    assert "cannot read" in done.stderr and "bench-01.json" in done.stderr
    assert done.stderr.count("\n") == 1
