"""SECURITY.md's table of limits is the code's: every default it states is the daemon's own,
every `--max-` option of the three daemons has a row, and every row names tests that exist."""

from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass
from types import ModuleType

import pytest

from cluster_patterns import coordinator as coordinator_daemon
from tests.doc_blocks import REPO
from zcl import cli, journal_collector
from zcl.agent import node_agent

UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "s": 1}
DEFAULT = re.compile(r"^(?P<number>[\d,.]+) ?(?P<unit>KiB|MiB|GiB|B|s)?$")
NAME = re.compile(r"`(--[a-z-]+|[A-Z][A-Za-z_.]+)`")
# Where each daemon's named constants live.
MODULES: dict[str, tuple[str, ...]] = {
    "agent": ("zcl.agent.node_agent", "zcl.agent.agent_session", "zcl.agent_wire",
              "zcl.agent.file_access"),
    "every daemon": ("zcl.cli",),
    "collector": ("zcl.journal_collector", "zcl.zmq_journal", "zcl.journal"),
    "coordinator": ("cluster_patterns.coordinator", "cluster_patterns.coordinator_core"),
}  # fmt: skip


def collector_parser() -> argparse.ArgumentParser:
    parser = cli.program_parser(None, "zcl-collector")
    journal_collector.add_collector_options(parser)
    return parser


PARSERS = {
    "agent": node_agent.build_parser,
    "collector": collector_parser,
    "coordinator": coordinator_daemon.build_parser,
}


@dataclass(frozen=True)
class Row:
    daemon: str
    name: str
    default: str
    tests: list[str]


def table_rows() -> list[Row]:
    text = (REPO / "SECURITY.md").read_text()
    section = text.split("## Every limit, in one table", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 6 or cells[0] in ("daemon", "---"):
            continue
        named = NAME.fullmatch(cells[1])
        assert named, f"a limit is one `--option` or `CONSTANT`: {cells[1]!r}"
        rows.append(Row(cells[0], named.group(1), cells[2], re.findall(r"`([^`]+)`", cells[5])))
    return rows


ROWS = table_rows()


def value_of(default: str) -> float | None:
    """'16 MiB' -> bytes, '10 s' -> seconds, '10,000' -> 10000; None for words ('nobody')."""
    match = DEFAULT.match(default.split(" (", maxsplit=1)[0])
    if match is None:
        return None
    return float(match["number"].replace(",", "")) * UNITS[match["unit"] or ""]


def option_default(daemon: str, option: str) -> object:
    parser = PARSERS[daemon]()
    for action in parser._actions:
        if option in action.option_strings:
            return action.default
    raise AssertionError(f"{daemon} has no {option}")


def constant(daemon: str, name: str) -> object:
    modules: list[ModuleType] = [importlib.import_module(m) for m in MODULES[daemon]]
    owner, _, field = name.rpartition(".")
    for module in modules:
        if owner and hasattr(module, owner):  # a dataclass's field: its default
            return getattr(getattr(module, owner)(), field)
        if not owner and hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no {name} in {MODULES[daemon]}")


def test_the_table_has_rows_for_all_three_daemons() -> None:
    assert {row.daemon for row in ROWS} == set(MODULES)
    assert len(ROWS) >= 30


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.daemon}:{row.name}")
def test_each_default_is_the_codes(row: Row) -> None:
    stated = value_of(row.default)
    if row.name.startswith("--"):
        actual = option_default(row.daemon, row.name)
        if "-mib" in row.name and stated is not None:
            stated /= 1 << 20  # the option counts MiB
    else:
        actual = constant(row.daemon, row.name)
    if stated is None:  # a word for an empty default: no list, no folder
        assert not actual, (row, actual)
        return
    assert isinstance(actual, int | float) and float(actual) == stated, (row, actual)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.daemon}:{row.name}")
def test_each_row_names_tests_that_exist(row: Row) -> None:
    assert row.tests, row
    for path in row.tests:
        assert re.match(r"tests/(unit/)?test_\w+\.py$", path) and (REPO / path).is_file(), (
            row,
            path,
        )


@pytest.mark.parametrize("daemon", sorted(PARSERS))
def test_every_limit_option_has_its_row(daemon: str) -> None:
    limits = {
        option
        for action in PARSERS[daemon]()._actions
        for option in action.option_strings
        if option.startswith("--max-") or option in ("--remember", "--controller-timeout")
    }
    listed = {row.name for row in ROWS if row.daemon == daemon}
    assert limits <= listed, f"SECURITY.md has no row for {sorted(limits - listed)}"
