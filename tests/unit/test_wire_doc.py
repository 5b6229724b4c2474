"""zcl/WIRE.md is checked against the code it describes: the agent's operations (the agent's
own allow-list), its reply kinds, the RUN options that travel, every error code with its
meaning, both protocols' versions, and the journal's frames. A change to one that leaves the
page behind fails here, naming what differs."""

from __future__ import annotations

import ast
import re

from tests.helpers import REPO
from zcl import agent_wire, journal_wire
from zcl.agent.node_agent import OPERATIONS
from zcl.run_options import RunOptions

PAGE = (REPO / "zcl" / "WIRE.md").read_text()


def first_column(after: str) -> list[str]:
    """The first cells (backticks taken off) of the first table after the text `after`."""
    lines = PAGE.split(after, 1)[1].split("\n")
    start = next(n for n, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:  # below the header and its rule
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip().split("`")[1])
    return rows


def test_the_operations_are_the_agents_allow_list() -> None:
    assert sorted(first_column("### Operations")) == sorted(op.decode() for op in OPERATIONS)


def test_the_run_fields_are_the_options_that_travel() -> None:
    documented = first_column("These travel;")
    assert documented == list(agent_wire.RUN_OPTION_FIELDS)
    options = {f for f in RunOptions.__dataclass_fields__}
    assert options - set(documented) == {"truncate", "check"}  # the controller's own, named so


def test_the_reply_kinds_are_the_codes() -> None:
    kinds = [agent_wire.OUT, agent_wire.DONE, agent_wire.ERROR, agent_wire.PONG]
    assert first_column("### Replies") == [k.decode() for k in kinds]


def test_the_reply_bodies_are_the_reply_types() -> None:
    assert first_column("A run's DONE body:") == list(agent_wire.RunDone.__dataclass_fields__)
    assert first_column("A PONG body:") == list(agent_wire.PongReply.__dataclass_fields__)
    sentence = PAGE.split("An ERROR body holds ", 1)[1].split(". ", 1)[0]
    assert re.findall(r"`([a-z_]+)`", sentence) == list(agent_wire.ErrorReply.__dataclass_fields__)


def test_every_error_code_is_listed_with_its_meaning() -> None:
    section = PAGE.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| (.+) \|$", section, re.M))
    assert rows == {code.value: meaning for code, meaning in agent_wire.ERROR_MEANINGS.items()}
    assert set(agent_wire.ERROR_MEANINGS) == set(agent_wire.ErrorCode)


def test_the_versions_and_the_journal_frames() -> None:
    assert f"`VERSION` is `{agent_wire.VERSION.decode()}`" in PAGE
    assert f"`VERSION` is `{journal_wire.VERSION.decode()}`" in PAGE
    journal = PAGE.split("## The journal protocol", 1)[1]
    assert f"`VERSION`, `{journal_wire.ACK.decode()}`, record id" in journal
    assert f"`VERSION`, `{journal_wire.REFUSED.decode()}`, record id, reason" in journal


def test_an_unknown_kind_is_answered_as_our_own_fault() -> None:
    assert agent_wire.ErrorCode.of("bad-field") is agent_wire.ErrorCode.BAD_FIELD
    assert agent_wire.ErrorCode.of("no-such-code") is agent_wire.ErrorCode.INTERNAL_ERROR


# Raised while parsing, before there is a request to answer: counted as drops, never answered.
DROP_LABELS = {"bad-body", "bad-frames", "bad-version", "bad-request-id", "bad-reply"}


def test_every_refusal_the_agent_raises_is_an_error_code() -> None:
    """A kind that is not a code would reach the controller as internal-error (ErrorCode.of):
    each is named from the enum, or is one of the parse failures that are never answered."""

    kinds = []
    for module in ("zcl/src/zcl/agent_wire.py", "zcl/src/zcl/agent/node_agent.py"):
        for node in ast.walk(ast.parse((REPO / module).read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "WireError":
                kinds.append(ast.unparse(node.args[0]))
    assert len(kinds) > 15
    strays = [
        k for k in kinds if not k.startswith("ErrorCode.") and k.strip("'\"") not in DROP_LABELS
    ]
    assert strays == []
