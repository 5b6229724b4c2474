"""Each run option is declared in one place: RunOptions (and RunKeywords, its keyword mirror,
which tests/unit/test_run_options_type.py holds to it). No function in zcl takes the options
one by one, no class holds them as its own fields; everything else passes a RunOptions, or
`**options: Unpack[RunKeywords]` on to one."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from tests.helpers import REPO
from zcl.run_options import RunOptions

OPTIONS = {field.name for field in dataclasses.fields(RunOptions)}
ALLOWED = {"zcl/src/zcl/run_options.py": {"RunOptions", "RunKeywords"}}
ZCL = REPO / "zcl" / "src" / "zcl"


def declarations(path: Path) -> list[tuple[str, set[str]]]:
    """Each function and class, with the run options among its parameters or fields."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
            found.append((node.name, names & OPTIONS))
        elif isinstance(node, ast.ClassDef):
            fields = {
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
            found.append((node.name, fields & OPTIONS))
    return found


def test_no_run_option_is_declared_twice() -> None:
    modules = sorted(ZCL.rglob("*.py"))
    assert len(modules) > 30  # the search is the real one
    repeated = [
        f"{path.relative_to(REPO)}: {name} declares {sorted(options)}"
        for path in modules
        for name, options in declarations(path)
        if len(options) >= 3 and name not in ALLOWED.get(str(path.relative_to(REPO)), set())
    ]
    assert repeated == []


def test_the_one_declaration_is_found() -> None:
    found = dict(declarations(ZCL / "run_options.py"))
    assert found["RunOptions"] == OPTIONS and found["RunKeywords"] == OPTIONS
