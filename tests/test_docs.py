"""The documents stay true: every path they mention exists, and every ticked item is tested."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cluster_sim.performance_comparison import MARK_END, MARK_START, markdown_table

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    "README.md",
    "LEARNING_NOTES.md",
    "01-zmq-basics/README.md",
    "02-cluster-patterns/README.md",
    "03-cluster-runner-simulation/README.md",
]
# A path is a backticked token with a slash or a known file ending, e.g. `01-zmq-basics/x.py`.
PATH_IN_BACKTICKS = re.compile(r"`([\w./-]+(?:/[\w./-]*|\.(?:py|md|toml|yml|sh)))`")
TICKED_ITEM = re.compile(r"^- \[x\] \*\*(?P<name>[^*]+)\*\* \(`(?P<path>[^`]+)`\)", re.MULTILINE)


def mentioned_paths(document: str) -> set[str]:
    text = (REPO / document).read_text()
    return {match for match in PATH_IN_BACKTICKS.findall(text) if not match.startswith("/")}


def resolve(document: str, path: str) -> Path:
    """Paths are relative to the repository, or to the document's own folder."""
    at_root = REPO / path
    return at_root if at_root.exists() else (REPO / document).parent / path


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_mentioned_path_exists(document: str) -> None:
    paths = mentioned_paths(document)
    assert paths, f"{document} mentions no paths: the pattern is broken"
    missing = sorted(p for p in paths if not resolve(document, p).exists())
    assert not missing, f"{document} mentions paths that do not exist: {missing}"


def test_every_ticked_item_has_a_script_and_a_test() -> None:
    ticked = TICKED_ITEM.findall((REPO / "LEARNING_NOTES.md").read_text())
    assert len(ticked) >= 9
    for name, path in ticked:
        assert (REPO / path).is_file(), f"ticked item {name} names a missing script {path}"
        if Path(path).name.startswith("test_"):
            continue  # the item is a test file itself (the brief's coordination tests)
        test_file = REPO / "tests" / f"test_{Path(path).stem}.py"
        assert test_file.is_file(), f"ticked item {name} has no test file {test_file.name}"


def test_readme_starts_with_exactly_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    first_block = text.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_make_test_and_nothing_else() -> None:
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    steps = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert steps[-1].strip() == "make test"
    assert all(s.startswith(("set ", "cd ")) for s in steps[:-1])


def test_readme_step_02_figures_are_the_saved_measurements() -> None:
    figures = json.loads((REPO / "results" / "bench-02.json").read_text())
    readme = (REPO / "README.md").read_text()
    brokers = figures["brokers"]
    expected = [
        f"{brokers['coordinator']['broker_cpu_us_per_request']:.0f} us",
        f"majortomo: {brokers['majortomo']['broker_cpu_us_per_request']:.0f} us",
        f"({figures['cpu_ratio_coordinator_vs_majortomo']:.2f})",
        f"{brokers['coordinator']['per_s']:,.0f} req/s",
        f"{figures['throughput_ratio_coordinator_vs_raw']:.2f} of raw echo",
        f"{figures['scale']['1000']['cpu_share_of_one_core']:.1%} of one core",
        f"{figures['scale']['10000']['registered']:,} registered",
        f"median {figures['detection']['SIGKILL']['median_s']:.2f} s",
    ]
    missing = [text for text in expected if text not in readme]
    assert not missing, f"README figures differ from results/bench-02.json: {missing}"


@pytest.mark.parametrize("document", ["README.md", "03-cluster-runner-simulation/README.md"])
def test_step_03_tables_are_the_saved_measurements(document: str) -> None:
    table = markdown_table(json.loads((REPO / "results" / "bench-03.json").read_text()))
    marked = f"{MARK_START}\n{table}\n{MARK_END}"
    assert marked in (REPO / document).read_text(), (
        f"{document} differs from results/bench-03.json; re-render it with python -m "
        "cluster_sim.performance_comparison --markdown-from results/bench-03.json --render ..."
    )
