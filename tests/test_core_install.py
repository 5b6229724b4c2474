"""The product installs alone: a fresh venv with only `pip install <zcl wheel>` gets pyzmq and
msgpack, the wheel holds zcl and nothing of the course, the lab, the tools or the tests, the
daemons' commands work, the public face imports, and a maintainer's `mypy --strict` reads its
types (py.typed).

Slow-ish (it builds the wheel and a venv; pip's cache keeps the downloads to the first run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

CORE_DISTRIBUTIONS = {"zcl", "pyzmq", "msgpack"}
TOOLING = {"pip", "setuptools"}  # what venv itself puts there


def source_copy(folder: Path, where: Path) -> Path:
    """A copy to build from: setuptools builds in the source tree, and a test leaves no file
    behind in the checkout."""
    ignore = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "results")
    return Path(shutil.copytree(folder, where / folder.name, ignore=ignore))


def run(*cmd: str | Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout_s, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = source_copy(REPO / "zcl", tmp_path_factory.mktemp("zcl-source"))
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, source)
    assert built.returncode == 0, built.stderr
    [found] = out.glob("zcl-*.whl")
    return found


@pytest.fixture(scope="module")
def core_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("core-venv")
    venv.create(where, with_pip=True, clear=True)
    installed = run(where / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    assert installed.returncode == 0, installed.stderr
    yield where / "bin"


def test_the_wheel_holds_zcl_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "zcl/zmq_node_executor.py" in names  # the listing is the real one
    assert "zcl/agent/node_agent.py" in names
    assert "zcl/py.typed" in names
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"zcl"}
    shipped_tests = [n for n in names if Path(n).name.startswith("test_")]
    assert shipped_tests == []


def test_the_core_install_brings_pyzmq_and_msgpack_only(core_venv: Path) -> None:
    listed = run(core_venv / "python", "-m", "pip", "list", "--format=freeze")
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert names - TOOLING == CORE_DISTRIBUTIONS


@pytest.mark.parametrize("script", ["zcl-agent", "zcl-collector", "zcl-keys"])
def test_the_daemons_commands_work_in_the_core_install(core_venv: Path, script: str) -> None:
    done = run(core_venv / script, "--help", timeout_s=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script}")


def test_the_controller_side_imports_without_the_extras(core_venv: Path) -> None:
    script = """
import sys
import textwrap
import zcl.zmq_node_executor, zcl.zmq_journal, zcl.zmq_operational_context
from zcl.protocols import (NodeDescriptor)
from zcl.errors import ExecutorError
from zcl.zmq_operational_context import ssh_executor
assert "asyncssh" not in sys.modules and "rich" not in sys.modules
try:
    ssh_executor(NodeDescriptor("n1", "127.0.0.1"))
except ExecutorError as exc:
    print(exc)
"""
    done = run(core_venv / "python", "-c", script, timeout_s=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "n1: this node needs SSH, which needs asyncssh: pip install 'zcl[ssh]'"
    )


@pytest.fixture(scope="module")
def course_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """zcl and the course's own wheel without the course's extras: what a learner has who
    skipped `pip install '.[lab]'`."""
    out = tmp_path_factory.mktemp("course-wheel")
    source = source_copy(REPO, tmp_path_factory.mktemp("course-source"))
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, source)
    assert built.returncode == 0, built.stderr
    [course] = out.glob("zmq_cluster_lab-*.whl")
    where = tmp_path_factory.mktemp("course-venv")
    venv.create(where, with_pip=True, clear=True)
    installed = run(where / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, course)
    assert installed.returncode == 0, installed.stderr
    yield where / "bin"


def test_a_command_that_needs_an_extra_says_which_in_one_line(course_venv: Path) -> None:
    done = run(course_venv / "zcl-monitor", "--help", timeout_s=60)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("pip install 'zmq-cluster-lab[monitor]'")
    assert "Traceback" not in done.stderr


def test_the_public_face_imports_in_the_core_install(core_venv: Path) -> None:
    script = """
import sys
import zcl
from zcl import *
missing = [name for name in zcl.__all__ if getattr(zcl, name, None) is None]
assert not missing, missing
assert "asyncssh" not in sys.modules
try:
    zcl.build_ssh_context
except ImportError as exc:
    print("ssh side:", exc.name, "|", exc)
"""
    done = run(core_venv / "python", "-c", script, timeout_s=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "ssh side: asyncssh | zcl.build_ssh_context needs asyncssh, the ssh extra: "
        "pip install 'zcl[ssh]'"
    )


RUNNER = """
from pathlib import Path

from zcl import ClusterDescriptor, CommandResult, FileJournalWriter, ZclError, build_zmq_context


async def nvidia_smi(path: Path) -> CommandResult | None:
    descriptor = ClusterDescriptor.load(path)
    try:
        async with build_zmq_context(descriptor, None, FileJournalWriter(path)) as context:
            return await context.executor("node1").run("nvidia-smi -L", timeout_s=30)
    except ZclError:
        return None
"""


def test_a_maintainers_strict_mypy_reads_zcls_types(core_venv: Path, tmp_path: Path) -> None:
    """py.typed: mypy analyses zcl instead of skipping it, so a wrong use is caught."""
    (tmp_path / "runner.py").write_text(RUNNER)
    wrong_use = "\n\ndef status(result: CommandResult) -> str:\n    return result.exit_status\n"
    (tmp_path / "wrong.py").write_text(RUNNER + wrong_use)

    def strict(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--no-incremental",
                "--python-executable",
                str(core_venv / "python"),
                "--config-file",
                "/dev/null",
                name,
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    good = strict("runner.py")
    assert good.returncode == 0, good.stdout
    assert "Skipping analyzing" not in good.stdout
    wrong = strict("wrong.py")
    assert wrong.returncode == 1, wrong.stdout
    assert '(got "int", expected "str")' in wrong.stdout, wrong.stdout


def readme_examples() -> list[str]:
    text = (REPO / "zcl" / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readmes_examples_type_check_against_the_wheel(core_venv: Path, tmp_path: Path) -> None:
    """What zcl's README shows a maintainer is what the installed package's types allow."""
    examples = readme_examples()
    assert len(examples) >= 2
    for number, example in enumerate(examples):
        body = textwrap.indent(example, "    ")
        (tmp_path / f"example{number}.py").write_text(
            "from pathlib import Path\n\nfrom zcl import *  # noqa: F403\n\n\n"
            f"async def example(executor: NodeExecutorProtocol) -> None:\n{body}"
        )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
         str(core_venv / "python"), "--config-file", "/dev/null",
         "--disable-error-code", "unused-ignore",
         *[f"example{n}.py" for n in range(len(examples))]],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout
