"""The brief's files that name zcl's parts define nothing of their own: a docstring that walks a
learner through the parts, imports from zcl, and `__all__`. So there is one copy of the code,
zcl's, and what the entries show is what runs."""

from __future__ import annotations

import ast
import importlib

import pytest

from tests.helpers import REPO

STEP_03 = "03-cluster-runner-simulation"
ENTRIES = {
    "cluster_sim.zmq_node_executor": f"{STEP_03}/zmq_node_executor.py",
    "cluster_sim.zmq_operational_context": f"{STEP_03}/zmq_operational_context.py",
    "cluster_sim.zmq_journal": f"{STEP_03}/zmq_journal.py",
    "cluster_patterns.heartbeat": "02-cluster-patterns/heartbeat.py",
}


def defines(statement: ast.stmt) -> bool:
    """Anything but the docstring, `from __future__`, an import from zcl and `__all__`."""
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return False
    if isinstance(statement, ast.ImportFrom):
        return statement.module != "__future__" and not (statement.module or "").startswith("zcl")
    if isinstance(statement, ast.Assign):
        return [getattr(t, "id", None) for t in statement.targets] != ["__all__"]
    return True


@pytest.mark.parametrize("module", sorted(ENTRIES))
def test_an_entry_defines_nothing_of_its_own(module: str) -> None:
    tree = ast.parse((REPO / ENTRIES[module]).read_text())
    own = [ast.unparse(s).splitlines()[0] for s in tree.body if defines(s)]
    assert own == []
    doc = ast.get_docstring(tree) or ""
    assert "zcl/src/zcl/" in doc, "the docstring says where the code is"


@pytest.mark.parametrize("module", sorted(ENTRIES))
def test_an_entry_exports_what_it_imports_from_zcl(module: str) -> None:
    entry = importlib.import_module(module)
    imported = {
        alias.asname or alias.name
        for s in ast.parse((REPO / ENTRIES[module]).read_text()).body
        if isinstance(s, ast.ImportFrom) and (s.module or "").startswith("zcl")
        for alias in s.names
    }
    assert sorted(entry.__all__) == sorted(imported)
    for name in entry.__all__:
        value = getattr(entry, name)
        home = getattr(value, "__module__", None)
        assert home is None or home.startswith("zcl."), (name, home)
