"""Step 01's lessons leave the repository intact: each one, copied alone into an empty folder and
run by an interpreter that has only pyzmq and msgpack, demonstrates and checks itself; an edited
copy demonstrates its edit; none imports anything but pyzmq and the standard library."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import msgpack
import pytest
import zmq

from tests.helpers import REPO

LESSON_DIR = REPO / "01-zmq-basics"
LESSONS = sorted(LESSON_DIR.glob("[0-9][0-9]_*.py"))
DEMO_TIMEOUT_S = 120
ALLOWED_IMPORTS = {"zmq", "msgpack"} | set(sys.stdlib_module_names)


@pytest.fixture(scope="session")
def pyzmq_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv holding pyzmq and msgpack and nothing else: not this project, not its tools.

    Built from the packages already installed here (linked, not downloaded), so it needs no
    network; the check below proves our own packages are out of its reach.
    """
    env = tmp_path_factory.mktemp("pyzmq-only")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    installed = Path(zmq.__file__).parent.parent
    for package in (Path(zmq.__file__).parent, Path(msgpack.__file__).parent):
        (site / package.name).symlink_to(package)
    for extra in installed.glob("pyzmq*.libs"):  # the libzmq shared library pyzmq's wheel ships
        (site / extra.name).symlink_to(extra)
    probe = subprocess.run(
        [str(python), "-c", "import zmq, msgpack, cluster_patterns"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "No module named 'cluster_patterns'" in probe.stderr, probe.stderr
    yield python


def run_demo(python: Path, lesson: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), lesson.name, "demo", *args],
        cwd=lesson.parent,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_a_copied_lesson_runs_alone_with_only_pyzmq(
    lesson: Path, pyzmq_only: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copy(lesson, tmp_path))
    done = run_demo(pyzmq_only, copy)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert last.startswith(f"PASS {lesson.stem}:"), last
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [lesson.name]  # it left nothing behind


# A lesson's suggested experiments, as its docstring lists them, one a bullet:
#   * `OLD` -> `NEW`[, `OLD` -> `NEW` ...]: PASS|FAIL, "what the demo then says"
# each OLD found exactly once in the code below the docstring; a bullet too long for a line
# goes on at the next (the edits are joined with a space there).
EXPERIMENT = re.compile(r'\* (?P<edits>`.*`): (?P<verdict>PASS|FAIL), "(?P<says>[^"]+)"$')
EDIT = re.compile(r"`([^`]+)` -> `([^`]*)`")


@dataclass(frozen=True)
class Experiment:
    lesson: Path
    edits: tuple[tuple[str, str], ...]
    verdict: str
    says: str

    def __str__(self) -> str:
        return f"{self.lesson.stem}: " + ", ".join(f"{new}" for _, new in self.edits)

    def apply(self) -> str:
        """The lesson's source with the edits made below its docstring."""
        source = self.lesson.read_text()
        tree = ast.parse(source)
        end = tree.body[0].end_lineno
        assert end is not None
        lines = source.splitlines(keepends=True)
        doc, code = "".join(lines[:end]), "".join(lines[end:])
        for old, new in self.edits:
            assert code.count(old) == 1, f"{self}: `{old}` is in the code {code.count(old)} times"
            code = code.replace(old, new)
        return doc + code


def experiments(lesson: Path) -> list[Experiment]:
    """The bullets under the docstring's "Experiments"; one may wrap onto the lines after it."""
    doc = ast.get_docstring(ast.parse(lesson.read_text())) or ""
    lines = doc.partition("\nExperiments")[2].splitlines()
    found = []
    for at, line in enumerate(lines):
        if not line.lstrip().startswith("* `"):
            continue
        bullet = line.strip()
        for more in lines[at + 1 : at + 4]:
            if EXPERIMENT.match(bullet):
                break
            bullet += " " + more.strip()
        match = EXPERIMENT.match(bullet)
        assert match, f"{lesson.name}: an experiment not in the form: {line.strip()}"
        edits = tuple(EDIT.findall(match["edits"]))
        assert edits, bullet
        found.append(Experiment(lesson, edits, match["verdict"], match["says"]))
    return found


EXPERIMENTS = [e for lesson in LESSONS for e in experiments(lesson)]


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_each_lesson_suggests_experiments_with_their_predicted_outcome(lesson: Path) -> None:
    assert experiments(lesson), f"{lesson.name} lists no experiment under 'Experiments'"


@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=str)
def test_every_suggested_experiment_gives_its_predicted_verdict(
    experiment: Experiment, pyzmq_only: Path, tmp_path: Path
) -> None:
    """The learner's edit, made in a copy: the demo must end as the lesson predicts, with
    its verdict line last on stdout and the predicted words in what it printed."""
    copy = tmp_path / experiment.lesson.name
    copy.write_text(experiment.apply())
    done = run_demo(pyzmq_only, copy)
    output = done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert last.startswith(f"{experiment.verdict} {experiment.lesson.stem}:"), output[-3000:]
    assert done.returncode == (0 if experiment.verdict == "PASS" else 1), output[-3000:]
    assert experiment.says in output, output[-3000:]


def test_an_experiment_whose_text_is_not_in_the_code_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "01_x.py"
    planted.write_text(
        '"""Lesson.\n\nExperiments\n  * `A = 1` -> `A = 2`: PASS, "two"\n"""\nB = 1\n'
    )
    (found,) = experiments(planted)
    assert found.edits == (("A = 1", "A = 2"),) and found.says == "two"
    with pytest.raises(AssertionError, match="in the code 0 times"):
        found.apply()


def load_lesson(path: Path) -> ModuleType:
    """A lesson as a module (its file name starts with a digit, so not by import)."""
    spec = importlib.util.spec_from_file_location(f"lesson_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_paranoid_pirates_back_off_is_the_schedule_its_docstring_gives() -> None:
    """It once said 1 s, then 2 s, while the code started at 0.25 s."""
    lesson = load_lesson(LESSON_DIR / "12_paranoid_pirate.py")
    waits = [lesson.BACKOFF_S]
    for _ in range(4):
        waits.append(lesson.next_backoff(waits[-1]))
    said = ", ".join(f"{w:g} s" for w in waits) + ", ..."
    assert f"({said})" in " ".join((lesson.__doc__ or "").split()), said
    assert waits[-1] == waits[-2] == lesson.BACKOFF_MAX_S


@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_mdp_minimal_copied_alone_runs_both_versions_with_only_pyzmq(
    pyzmq_only: Path, tmp_path: Path
) -> None:
    """Step 02's first read, the spec-written Majordomo peers, is as portable as a lesson."""
    source = REPO / "02-cluster-patterns" / "mdp_minimal.py"
    assert imported_modules(source) <= ALLOWED_IMPORTS
    copy = Path(shutil.copy(source, tmp_path))
    done = run_demo(pyzmq_only, copy)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith("PASS mdp_minimal: 2 of 2 versions")
    assert sorted(p.name for p in tmp_path.iterdir()) == [copy.name]


def test_binary_stars_rules_with_no_socket_and_no_clock() -> None:
    """Lesson 19's state machine, every rule: settling, the fail-over only on a client's
    request to a server whose peer is silent, a restarted primary going passive, and the two
    split-brain states refused."""
    star = load_lesson(LESSON_DIR / "19_binary_star.py")
    primary, backup, active, passive = star.PRIMARY, star.BACKUP, star.ACTIVE, star.PASSIVE
    ask = star.CLIENT_REQUEST
    assert star.next_state(primary, backup, False) == (active, False)
    assert star.next_state(backup, active, False) == (passive, False)
    assert star.next_state(primary, active, False) == (passive, False)  # a restarted primary
    assert star.next_state(passive, ask, False) == (passive, False)  # the peer still beats
    assert star.next_state(passive, ask, True) == (active, True)  # the fail-over
    assert star.next_state(backup, ask, True) == (backup, False)  # never before it settled
    assert star.next_state(primary, ask, True) == (active, True)  # alone from the start
    assert star.next_state(active, ask, False) == (active, True)
    assert star.next_state(passive, primary, False) == (active, False)
    for both in (active, passive):
        with pytest.raises(star.SplitBrainError):
            star.next_state(both, both, False)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            found.add(str(node.module).split(".")[0])
    return found


@pytest.mark.parametrize("lesson", [*LESSONS, LESSON_DIR / "tour.py"], ids=lambda p: p.stem)
def test_lessons_import_only_pyzmq_msgpack_and_the_standard_library(lesson: Path) -> None:
    assert imported_modules(lesson) <= ALLOWED_IMPORTS, imported_modules(lesson) - ALLOWED_IMPORTS


def test_the_import_check_catches_one_of_ours(tmp_path: Path) -> None:
    planted = tmp_path / "01_x.py"
    planted.write_text("import zmq\nfrom cluster_patterns import cli\n")
    assert imported_modules(planted) - ALLOWED_IMPORTS == {"cluster_patterns"}


def test_lessons_are_numbered_in_reading_order_with_no_gaps() -> None:
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(1, len(LESSONS) + 1))
    assert not [p for p in LESSON_DIR.glob("*.py") if p not in LESSONS and p.name != "tour.py"]


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_each_lesson_names_its_zguide_section_and_its_terms(lesson: Path) -> None:
    doc = ast.get_docstring(ast.parse(lesson.read_text())) or ""
    assert doc.startswith(f"Lesson {lesson.name[:2]}, "), doc[:80]
    # a section, or "none" with the reason (lesson 16: the zguide predates ZeroMQ's security)
    assert re.search(r"^zguide: (chapter \d|none; \w)", doc, re.M), "no zguide section named"
    assert re.search(r"^Terms: \S", doc, re.M), "no terms listed"
    assert "Try it" in doc and f"python {lesson.name} demo" in doc


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_help_and_usage_errors_are_short(lesson: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(lesson), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert run("--help").returncode == 0
    wrong = run("demo", "--no-such-option")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert wrong.stderr.splitlines()[-1].startswith(f"{lesson.name}: error:")


@pytest.mark.parametrize(
    ("lesson", "role"),
    [
        ("01_hello.py", "server"),
        ("02_socket_monitors.py", "server"),
        ("05_pub_sub.py", "publisher"),
        ("11_lazy_pirate.py", "server"),
        ("13_sync_vs_async.py", "server"),
    ],
)
def test_a_port_in_use_is_one_line(lesson: str, role: str) -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as holder:
        holder.linger = 0
        holder.bind("tcp://127.0.0.1:*")
        taken = holder.getsockopt_string(zmq.LAST_ENDPOINT)
        done = subprocess.run(
            [sys.executable, str(LESSON_DIR / lesson), role, taken],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Address already in use" in done.stderr


def tour(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(folder / "tour.py"), *args],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_the_tour_runs_lessons_in_reading_order_and_saves_their_figures(tmp_path: Path) -> None:
    saved = tmp_path / "bench-01.json"
    done = tour(LESSON_DIR, "06_framing", "05_pub_sub", "01_hello", "--json", str(saved))
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = [line.split("] ", 1)[1] for line in done.stdout.splitlines() if "] " in line]
    in_order = ["PASS 01_hello", "PASS 05_pub_sub", "PASS 06_framing"]
    assert [v.split(":")[0] for v in verdicts] == in_order
    assert done.stdout.splitlines()[-2] == "01 tour: 3 of 3 lessons passed"
    figures = json.loads(saved.read_text())
    assert set(figures) == {"05_pub_sub"}  # the others check, they measure nothing
    assert figures["05_pub_sub"]["xpub_wait_lost"] == 0


@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_the_tour_fails_when_a_lesson_fails(tmp_path: Path) -> None:
    shutil.copy(LESSON_DIR / "tour.py", tmp_path)
    source = (LESSON_DIR / "01_hello.py").read_text()
    broken = source.replace("ok = len(replies)", "ok = False and len(replies)")
    (tmp_path / "01_hello.py").write_text(broken)
    shutil.copy(LESSON_DIR / "06_framing.py", tmp_path)
    done = tour(tmp_path)
    assert done.returncode == 1
    assert "FAIL 01_hello:" in done.stdout and "PASS 06_framing:" in done.stdout
    assert "01 tour: 1 of 2 lessons passed" in done.stdout


def test_the_tour_refuses_a_lesson_that_does_not_exist() -> None:
    done = tour(LESSON_DIR, "no_such_lesson")
    assert done.returncode == 2 and "no lesson matches no_such_lesson" in done.stderr
