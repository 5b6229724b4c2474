"""The documents stay true: every path they mention exists, every ticked item is tested, every
command they show runs, and every figure they print is the one saved in results/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.doc_blocks import PLAN_DOCUMENTS, REPO, Block, fenced_blocks, shell_blocks
from tests.helpers import skip_here_fail_on_ci
from tests.test_lessons import LESSONS
from zcl_lab.openssh_server import sshd_missing_reason
from zcl_tools.figures import SECTION, Results, documents, stale_sections

DOCUMENTS = [
    *PLAN_DOCUMENTS,
    "01-zmq-basics/README.md",
    "02-cluster-patterns/README.md",
    "03-cluster-runner-simulation/README.md",
    "zcl/README.md",
    "zcl/WIRE.md",
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
    missing = sorted(
        p
        for p in paths
        if not resolve(document, p).exists()
        # a clone holds only the repository: nothing beside it may be named
        or not Path(os.path.normpath(resolve(document, p))).is_relative_to(REPO)
    )
    assert not missing, f"{document} mentions paths that do not exist: {missing}"


def test_every_ticked_item_has_a_script_and_a_test() -> None:
    ticked = TICKED_ITEM.findall((REPO / "LEARNING_NOTES.md").read_text())
    assert len(ticked) >= 9
    for name, path in ticked:
        assert (REPO / path).is_file(), f"ticked item {name} names a missing script {path}"
        if Path(path).name.startswith("test_"):
            continue  # the item is a test file itself (the brief's coordination tests)
        if path.endswith(".md"):
            assert path in DOCUMENTS, f"ticked item {name}: {path} is not checked by this file"
            continue  # a document: this file runs its commands and checks its figures
        if path.startswith("01-zmq-basics/"):
            assert Path(path) in {p.relative_to(REPO) for p in LESSONS}, f"{path}: not a lesson"
            continue  # every lesson is run alone, with only pyzmq, by tests/test_lessons.py
        test_name = f"test_{Path(path).stem.replace('-', '_')}.py"
        tiers = [REPO / "tests" / test_name, REPO / "tests" / "unit" / test_name]
        assert any(f.is_file() for f in tiers), f"ticked item {name} has no test file {test_name}"


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


def test_every_figure_section_matches_its_json() -> None:
    stale = {
        str(document.relative_to(REPO)): stale_sections(document, Results(REPO / "results"))
        for document in documents(REPO)
    }
    stale = {document: names for document, names in stale.items() if names}
    assert not stale, f"re-render with `python -m zcl_tools.figures render`: {stale}"


@pytest.mark.parametrize(
    ("document", "sections"),
    [
        (
            "RESULTS.md",
            {
                "lessons-01",
                "broker-02",
                "transport-03",
                "fanout-03",
                "docker-bench",
                "docker-status",
                "docker-dashboard",
            },
        ),
        ("LEARNING_NOTES.md", {"insights"}),
        ("integration-plan/protocol-mapping.md", {"contract-figures", "fanout-03", "docker-bench"}),
        ("03-cluster-runner-simulation/README.md", {"transport-03", "fanout-03"}),
        ("integration-plan/migration-strategy.md", {"go-no-go"}),
        ("integration-plan/rollback-plan.md", {"docker-status"}),
    ],
)
def test_the_plan_documents_carry_their_figures(document: str, sections: set[str]) -> None:
    found = {m["name"] for m in SECTION.finditer((REPO / document).read_text())}
    assert sections <= found, f"{document} lacks the figures {sections - found}"


def test_every_command_shown_is_run_by_a_test() -> None:
    untested = [
        str(block)
        for document in PLAN_DOCUMENTS
        for block in fenced_blocks(document)
        if block.is_shell and not block.tags & {"runnable", "docker"}
    ]
    # The README's set-up block is the exception: `make demo` is run below and `make test` is
    # the command that runs this very test.
    assert untested == ["README.md:3"], untested


def bash(script: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a block as a reader would, from the repository, with the venv's python first on
    PATH; what its `mktemp` makes goes into a folder removed afterwards (world-readable, as
    the SSH login user of the simulated cluster must read files there)."""
    scratch = Path(tempfile.mkdtemp(prefix="zcl-doc-"))
    scratch.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        TMPDIR=str(scratch),
    )
    try:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("block", shell_blocks("runnable"), ids=str)
def test_runnable_blocks_succeed(block: Block) -> None:
    if "sshd" in block.tags:
        skip_here_fail_on_ci(sshd_missing_reason(), f"the block at {block}")
    done = bash(block.body, timeout_s=240)
    assert done.returncode == 0, f"{block} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.timeout(300)
def test_make_demo_passes() -> None:
    done = bash("make demo", timeout_s=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout


MERMAID_KINDS = ("flowchart", "sequenceDiagram", "stateDiagram-v2", "graph")


@pytest.mark.parametrize(
    ("document", "least"),
    [
        ("integration-plan/protocol-mapping.md", 4),
        ("integration-plan/rollback-plan.md", 1),
        ("02-cluster-patterns/README.md", 4),
    ],
)
def test_diagrams_are_mermaid_of_a_known_kind(document: str, least: int) -> None:
    diagrams = [b for b in fenced_blocks(document) if b.language == "mermaid"]
    assert len(diagrams) >= least, f"{document} has {len(diagrams)} diagrams"
    for diagram in diagrams:
        first = diagram.body.lstrip().splitlines()[0]
        assert first.startswith(MERMAID_KINDS), f"{diagram}: {first!r}"
        assert "```" not in diagram.body


STEP_FOLDERS = ("01-zmq-basics", "02-cluster-patterns", "03-cluster-runner-simulation", "tools")


def test_the_learning_path_lists_every_script() -> None:
    readme = (REPO / "README.md").read_text()
    scripts = [
        str(path.relative_to(REPO))
        for folder in (
            "01-zmq-basics",
            "02-cluster-patterns",
            "03-cluster-runner-simulation",
            "zcl/src/zcl",
            "lab",
            "tools",
        )
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.name not in {"__init__.py", "__main__.py"}
    ]
    missing = [script for script in scripts if f"`{script}`" not in readme]
    assert not missing, f"README's learning path lacks {missing}"
