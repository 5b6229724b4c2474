"""zcl_tools.figures: marked sections are rendered from their JSON, and a stale one is caught."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_blocks import REPO
from tests.helpers import python_module
from zcl.errors import CliError
from zcl_tools import figures as figures_tool
from zcl_tools import lesson_pictures, pictures
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


IMAGE = re.compile(r"!\[[^\]]*\]\((?P<path>[^)]+\.svg)\)")


def test_every_picture_is_drawn_shown_and_current() -> None:
    shown = {
        (document.parent / m["path"]).resolve()
        for document in figures_tool.documents(REPO)
        for m in IMAGE.finditer(document.read_text())
    }
    for name in pictures.PICTURES:
        path = (REPO / "results" / pictures.FOLDER / f"{name}.svg").resolve()
        assert path.is_file(), f"{path} was never drawn"
        assert path in shown, f"no document shows {path.name}"
    assert all(path.is_file() for path in shown), "a document shows a picture that does not exist"
    assert figures_tool.stale_pictures(figures_tool.Results(REPO / "results")) == {}


def test_the_detection_picture_names_the_node_each_fault_was_put_on(tmp_path: Path) -> None:
    """Its labels come from the figures, and the figures agree with the bench's own timeline
    (they once named the node whose transports were measured instead)."""
    docker = json.loads((REPO / "results" / "bench-docker.json").read_text())
    svg = (REPO / "results" / pictures.FOLDER / "detection.svg").read_text()
    for kind, times in docker["detection"].items():
        faulted = {e["node"] for e in docker["timeline"] if e["event"] == f"fault.start.{kind}"}
        assert faulted == {times["node"]}, (kind, faulted, times)
        assert f">{kind} {times['node']}</text>" in svg


def test_the_pipeline_figures_are_medians_of_repeats_with_their_spread() -> None:
    """One timing per worker count once showed 1.1x with 2 workers (a sleep that overslept):
    the lesson now keeps the median of its repeats, and the spread is shown with it."""
    pipe = json.loads((REPO / "results" / "bench-01.json").read_text())["04_pipeline"]
    assert pipe["repeats"] >= 3 and set(pipe["spread"]) == set(pipe["seconds"])
    for count, (fastest, slowest) in pipe["spread"].items():
        assert fastest <= pipe["seconds"][count] <= slowest
    svg = (REPO / "results" / pictures.FOLDER / "pipeline.svg").read_text()
    assert f"median of {pipe['repeats']}" in svg


def test_drawing_is_deterministic_and_a_stale_picture_fails_the_check(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results)
    assert pictures.draw("pipeline", figures_tool.Results(results)) == pictures.draw(
        "pipeline", figures_tool.Results(results)
    )
    bench = json.loads((results / "bench-01.json").read_text())
    bench["04_pipeline"]["seconds"]["4"] *= 2  # a new measurement, the picture not redrawn
    (results / "bench-01.json").write_text(json.dumps(bench))
    stale = figures_tool.stale_pictures(figures_tool.Results(results))
    assert list(stale) == [results / pictures.FOLDER / "pipeline.svg"]
    done = subprocess.run(
        [sys.executable, "-m", "zcl_tools.figures", "check", "--results", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "pipeline.svg: the picture" in done.stdout


def test_the_timeline_picture_draws_a_benchs_faults_and_verdicts(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results)
    bench = json.loads((results / "bench-docker.json").read_text())
    bench["timeline"] = [
        {"t": 0.0, "node": "worker3", "event": "fault.start.fail"},
        {"t": 0.8, "node": "worker3", "event": "worker.dead"},
        {"t": 2.0, "node": "worker3", "event": "fault.end.fail"},
        {"t": 2.5, "node": "worker3", "event": "worker.joined"},
        {"t": 3.0, "node": "worker2", "event": "fault.start.partition"},  # still in force
    ]
    (results / "bench-docker.json").write_text(json.dumps(bench))
    fig = pictures.timeline(figures_tool.Results(results))
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["worker2", "worker3"]
    assert len(ax.patches) == 2  # the fail span and the partition still in force
    texts = {t.get_text() for t in ax.texts}
    assert {"fail"} <= texts


def test_every_lesson_has_its_picture_and_the_pattern_page_is_current() -> None:
    assert lesson_pictures.stale(REPO) == []
    text = (REPO / lesson_pictures.PAGE).read_text()
    for lesson in lesson_pictures.lessons(REPO):
        assert f"## {lesson.name}" in text


def test_a_lesson_picture_changed_or_naming_a_socket_the_code_lacks_is_stale(
    tmp_path: Path,
) -> None:
    folder = tmp_path / lesson_pictures.PAGE.parent
    shutil.copytree(REPO / lesson_pictures.PAGE.parent, folder)
    assert lesson_pictures.stale(tmp_path) == []
    hello = folder / "01_hello.py"
    hello.write_text(
        hello.read_text().replace("client REQ -> server REP:", "client REQ -> server PAIR:")
    )
    stale = lesson_pictures.stale(tmp_path)
    assert "01_hello.py: the picture names zmq.PAIR, which the code never makes" in stale
    assert f"{lesson_pictures.PAGE}: not what the lessons' pictures draw" in stale
    assert lesson_pictures.render(tmp_path)  # redrawn: only the false socket is left
    assert lesson_pictures.stale(tmp_path) == [
        "01_hello.py: the picture names zmq.PAIR, which the code never makes"
    ]
