"""A picture of every lesson's pattern, drawn from the few lines its docstring gives.

Each lesson of step 01 says, under "Picture", which sockets talk and what crosses:

    Picture (each arrow from the side that connects to the side that binds)
      client REQ -> server REP: "Hello 0" / "World"

one line a connection: a role and its socket type, an arrow towards the role that binds, and
the frames that cross. A type followed by `*` is made by libzmq, not by the lesson's code
(the ZAP request socket). From those lines this module writes 01-zmq-basics/PATTERNS.md, one
mermaid flowchart a lesson, and checks two things: that the page is what the lessons' lines
draw (a lesson's picture edited, the page not redrawn, is stale), and that every socket type
a picture names is one the lesson's code makes (`zmq.REQ` and so on), so that a picture
cannot go on showing sockets the code no longer uses.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

PAGE = Path("01-zmq-basics") / "PATTERNS.md"
LINK = re.compile(
    r"^\s*(?P<a>[\w.]+) (?P<a_type>[A-Z]+\*?) -> (?P<b>[\w.]+) (?P<b_type>[A-Z]+\*?): (?P<what>.+)$"
)


@dataclass(frozen=True)
class Link:
    connects: str  # role
    connects_type: str
    binds: str
    binds_type: str
    crosses: str  # the frames, in words


class PictureError(ValueError):
    """A lesson with no picture, or a line that is not a link."""


def links(lesson: Path) -> list[Link]:
    doc = ast.get_docstring(ast.parse(lesson.read_text())) or ""
    _, found, rest = doc.partition("\nPicture")
    if not found:
        raise PictureError(f"{lesson.name}: no Picture section in its docstring")
    lines = rest.split("\n\n", 1)[0].splitlines()[1:]  # after the section's title line
    drawn = []
    for line in lines:
        match = LINK.match(line)
        if match is None:
            raise PictureError(f"{lesson.name}: not a link: {line.strip()!r}")
        drawn.append(
            Link(match["a"], match["a_type"], match["b"], match["b_type"], match["what"].strip())
        )
    if not drawn:
        raise PictureError(f"{lesson.name}: an empty Picture section")
    return drawn


def node(role: str, kind: str) -> tuple[str, str]:
    """(a mermaid id, its label) for one role's socket."""
    ident = re.sub(r"\W", "_", f"{role}_{kind.rstrip('*')}")
    made_by = " (libzmq's)" if kind.endswith("*") else ""
    return ident, f"{role}<br/>{kind.rstrip('*')}{made_by}"


def flowchart(drawn: list[Link]) -> str:
    lines = ["```mermaid", "flowchart LR"]
    for link in drawn:
        a_id, a_label = node(link.connects, link.connects_type)
        b_id, b_label = node(link.binds, link.binds_type)
        crosses = link.crosses.replace('"', "'")
        lines.append(f'  {a_id}["{a_label}"] -- "{crosses}" --> {b_id}["{b_label} binds"]')
    lines.append("```")
    return "\n".join(lines)


def page(lessons: list[Path]) -> str:
    parts = [
        "# The patterns, drawn",
        "",
        "One picture a lesson, drawn from the lines under `Picture` in its docstring by",
        "`python -m zcl_tools.figures render` (do not edit this page: edit the lesson). Each arrow",
        "goes from the socket that connects to the socket that binds, and says what crosses it.",
        "",
    ]
    for lesson in lessons:
        title = (ast.get_docstring(ast.parse(lesson.read_text())) or "").splitlines()[0]
        parts += [f"## {lesson.name}", "", title, "", flowchart(links(lesson)), ""]
    return "\n".join(parts)


def lessons(root: Path) -> list[Path]:
    return sorted((root / PAGE.parent).glob("[0-9][0-9]_*.py"))


def unused_types(lesson: Path) -> list[str]:
    """Socket types the picture names that the lesson's code never makes."""
    code = lesson.read_text()
    named = {kind for link in links(lesson) for kind in (link.connects_type, link.binds_type)}
    return sorted(k for k in named if not k.endswith("*") and f"zmq.{k}" not in code)


def stale(root: Path) -> list[str]:
    """What is out of date: the page, and any picture naming a socket its lesson lacks."""
    found = [f"{lesson.name}: the picture names zmq.{kind}, which the code never makes"
             for lesson in lessons(root) for kind in unused_types(lesson)]  # fmt: skip
    path = root / PAGE
    if not path.is_file() or path.read_text() != page(lessons(root)):
        found.append(f"{PAGE}: not what the lessons' pictures draw")
    return found


def render(root: Path) -> bool:
    """Rewrite the page if it differs; whether it did."""
    fresh = page(lessons(root))
    path = root / PAGE
    if path.is_file() and path.read_text() == fresh:
        return False
    path.write_text(fresh)
    return True
