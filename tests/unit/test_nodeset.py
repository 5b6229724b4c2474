"""Node sets (zcl/nodeset.py): ClusterShell's notation, by example and by property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zcl.errors import ZclError
from zcl.nodeset import MAX_NODES, NodeSetError, expand, fold, label_groups, sort_nodes

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("expression", "nodes"),
    [
        ("node[1-3]", ["node1", "node2", "node3"]),
        ("node[01-03]", ["node01", "node02", "node03"]),
        ("node[08-10]", ["node08", "node09", "node10"]),
        ("node[01-12/4]", ["node01", "node05", "node09"]),
        ("n[1,3-4,9]", ["n1", "n3", "n4", "n9"]),
        ("rack[1-2]-n[1,3]", ["rack1-n1", "rack1-n3", "rack2-n1", "rack2-n3"]),
        ("node[1-4]!node[2-3]", ["node1", "node4"]),
        ("node[1-4]&node[3-9]", ["node3", "node4"]),
        ("node[1-3]^node[3-4]", ["node1", "node2", "node4"]),
        ("node[1-3],gpu-a[1-2]", ["gpu-a1", "gpu-a2", "node1", "node2", "node3"]),
        ("login,node[9-10],", ["login", "node9", "node10"]),  # a trailing comma adds nothing
        ("node[1-3],node2", ["node1", "node2", "node3"]),
    ],
)
def test_expressions_expand_as_clush_expands_them(expression: str, nodes: list[str]) -> None:
    assert expand(expression) == nodes


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("node[1-3", "with no ']'"),
        ("node1-3]", "no '['"),
        ("node[a-c]", "expected numbers"),
        ("node[5-2]", "upwards"),
        ("node[1-9/0]", "upwards"),
        ("node[[1-2]]", "nested"),
        ("!node1", "on its left"),
        ("node 1", "not a node name"),
        (f"n[1-{MAX_NODES + 1}]", "more than"),
        ("a[1-1000]b[1-1000]c[1-1000]", "more than"),
        ("@gpus", "no groups here"),
    ],
)
def test_a_bad_expression_is_one_clear_error(expression: str, words: str) -> None:
    with pytest.raises(NodeSetError, match=words.replace("[", r"\[")) as raised:
        expand(expression)
    assert isinstance(raised.value, ZclError)


def test_groups_come_from_the_descriptors_labels() -> None:
    labels = {"gpu01": {"leaf": "L1", "gpus": "8"}, "gpu02": {"leaf": "L2"}, "cpu1": {}}
    groups = label_groups(labels)
    assert expand("@leaf:L1", groups) == ["gpu01"]
    assert expand("@leaf", groups) == ["gpu01", "gpu02"]
    assert expand("@leaf!@gpus,cpu1", groups) == ["cpu1", "gpu02"]
    with pytest.raises(NodeSetError, match="no such group"):
        expand("@rack:7", groups)


@pytest.mark.parametrize(
    ("nodes", "folded"),
    [
        (["node1", "node2", "node3", "node7"], "node[1-3,7]"),
        (["node09", "node10", "node11"], "node[09-11]"),
        (["node9", "node10"], "node[9-10]"),
        (["gpu-a1", "login", "node1"], "login,gpu-a1,node1"),
        (["rack1-n1", "rack1-n2"], "rack1-n[1-2]"),
    ],
)
def test_fold_writes_the_short_form(nodes: list[str], folded: str) -> None:
    assert fold(nodes) == folded


NAME = st.builds(
    lambda prefix, number, pad, suffix: f"{prefix}{str(number).zfill(pad)}{suffix}",
    st.sampled_from(["node", "gpu-a", "r1-n", "x"]),
    st.integers(0, 300),
    st.integers(0, 4),
    st.sampled_from(["", "-ib", "b"]),
) | st.sampled_from(["login", "head", "mgmt-a"])


@settings(max_examples=300, deadline=None)
@given(st.sets(NAME, max_size=40))
def test_what_fold_writes_expands_to_exactly_the_nodes(nodes: set[str]) -> None:
    assert set(expand(fold(nodes))) == nodes if nodes else fold(nodes) == ""


@settings(max_examples=200, deadline=None)
@given(st.sets(NAME, min_size=1, max_size=20), st.sets(st.integers(0, 300), min_size=1))
def test_the_operators_are_the_set_operations(left: set[str], numbers: set[int]) -> None:
    """Operators bind left to right, as clush's do: `a,b!c` is (a,b)!c; so the right side
    here is one term, node[...]."""
    right = {f"node{n}" for n in numbers}
    a, b = fold(left), fold(right)
    assert set(expand(f"{b},{a}")) == left | right
    assert set(expand(f"{a}!{b}")) == left - right
    assert set(expand(f"{a}&{b}")) == left & right
    assert set(expand(f"{a}^{b}")) == left ^ right


def test_the_order_is_natural() -> None:
    given = ["node10", "node9", "login", "node1"]
    assert sort_nodes(given) == ["login", "node1", "node9", "node10"]
