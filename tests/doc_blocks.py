"""The fenced blocks of the project's Markdown documents, for the tests that run or check them.

A shell block's info string says how it is tested: ```sh runnable (tests/test_docs.py runs it;
add `sshd` when it needs the real sshd), ```sh docker (tests/test_simulate_cluster.py runs it
against the Docker tier's cluster).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The documents whose every command a test runs and whose every figure comes from results/.
PLAN_DOCUMENTS = [
    "README.md",
    "RESULTS.md",
    "GLOSSARY.md",
    "SECURITY.md",
    "LEARNING_NOTES.md",
    "integration-plan/protocol-mapping.md",
    "integration-plan/migration-strategy.md",
    "integration-plan/rollback-plan.md",
]
SHELLS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    language: str
    tags: frozenset[str]
    body: str

    @property
    def is_shell(self) -> bool:
        return self.language in SHELLS

    def __str__(self) -> str:
        return f"{self.document}:{self.line}"


def fenced_blocks(document: str) -> list[Block]:
    text = (REPO / document).read_text()
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        blocks.append(
            Block(
                document=document,
                line=text.count("\n", 0, match.start()) + 1,
                language=words[0] if words else "",
                tags=frozenset(words[1:]),
                body=match["body"],
            )
        )
    return blocks


def shell_blocks(tag: str) -> list[Block]:
    return [
        block
        for document in PLAN_DOCUMENTS
        for block in fenced_blocks(document)
        if block.is_shell and tag in block.tags
    ]
