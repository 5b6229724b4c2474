"""What `zcl-run` makes of each node's answer, with no socket and no clock: the exit status an
operator's script sees (the worst of the nodes, as `pdsh -S` gives), output prefixed by node
(pdsh's and clush's default) or gathered with identical outputs folded under one node set
(clush -b, clubak), and the JSON a script reads."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zcl.nodeset import fold, sort_key, sort_nodes

TIMED_OUT = 124  # what timeout(1) exits with
NO_RESULT = 255  # what ssh(1) exits with when it could not run the command


@dataclass(frozen=True)
class Outcome:
    """One node's answer: a result, or the reason there is none (`error`)."""

    node: str
    exit_status: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str | None = None
    timed_out: bool = False
    duration_s: float = 0.0

    @property
    def status(self) -> int:
        """The exit status this node stands for: its command's, 124 if it ran over its
        timeout, 255 if it could not be run or no result came."""
        if self.timed_out:
            return TIMED_OUT
        if self.exit_status is None:
            return NO_RESULT
        return self.exit_status if 0 <= self.exit_status < 256 else 128 + abs(self.exit_status)

    @property
    def failed(self) -> bool:
        return self.status != 0

    def note(self) -> str | None:
        """The line said on stderr for a node that did not succeed."""
        if self.timed_out:
            return f"{self.node}: timed out"
        if self.error is not None:
            return f"{self.node}: {self.error}"
        if self.exit_status:
            return f"{self.node}: exited with exit code {self.exit_status}"
        return None


def worst(outcomes: Iterable[Outcome]) -> int:
    return max((outcome.status for outcome in outcomes), default=0)


def prefixed(output: bytes, node: str) -> str:
    """Each line of `output` after `node: `, as pdsh prints it (a last line without its
    newline still gets one, so that nodes' lines never run together)."""
    text = output.decode(errors="replace")
    return "".join(f"{node}: {line}\n" for line in text.splitlines())


def folded(outcomes: Iterable[Outcome]) -> list[tuple[str, str, int]]:
    """Nodes with the same output, together: (node set, output, how many nodes), in the order
    of their node sets; the output is stdout then stderr, as a terminal would show it."""
    by_output: dict[str, list[str]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.stdout or outcome.stderr:
            text = (outcome.stdout + outcome.stderr).decode(errors="replace")
            by_output[text].append(outcome.node)
    in_order = sorted(by_output.items(), key=lambda item: sort_key(sort_nodes(item[1])[0]))
    return [(fold(nodes), text, len(nodes)) for text, nodes in in_order]


def gathered(outcomes: Iterable[Outcome]) -> str:
    """clush -b's report: each distinct output under a header naming its nodes."""
    blocks = []
    for nodes, text, count in folded(outcomes):
        header = f"{nodes} ({count})"
        rule = "-" * min(max(len(header), 15), 80)
        body = text if text.endswith("\n") else text + "\n"
        blocks.append(f"{rule}\n{header}\n{rule}\n{body}")
    return "".join(blocks)


def as_json(outcomes: Sequence[Outcome], command: str) -> str:
    nodes: dict[str, Any] = {}
    for outcome in sorted(outcomes, key=lambda o: sort_key(o.node)):
        nodes[outcome.node] = {
            "exit_status": outcome.exit_status,
            "status": outcome.status,
            "stdout": outcome.stdout.decode(errors="replace"),
            "stderr": outcome.stderr.decode(errors="replace"),
            "error": outcome.error,
            "timed_out": outcome.timed_out,
            "duration_s": round(outcome.duration_s, 6),
        }
    failed = [o.node for o in outcomes if o.failed]
    report = {
        "command": command,
        "exit_status": worst(outcomes),
        "nodes": nodes,
        "failed": fold(failed),
    }
    return json.dumps(report, indent=2)


def progress_line(done: int, total: int, failed: int) -> str:
    return f"zcl-run: {done}/{total} done" + (f", {failed} failed" if failed else "")
