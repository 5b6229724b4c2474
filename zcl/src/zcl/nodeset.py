"""Node sets in the notation HPC operators already type: `node[01-64],gpu-a[1-8]`.

The notation is ClusterShell's (pdsh's -w takes a subset of it), so a set that works with
clush works here:

    node[1-3]           node1 node2 node3
    node[01-12/4]       node01 node05 node09 (a range keeps the padding of its start; /step)
    rack[1-2]-n[1,3]    every combination: rack1-n1 rack1-n3 rack2-n1 rack2-n3
    a,b  a!b  a&b  a^b  union, difference, intersection, symmetric difference, left to right
    @leaf:L1            a group: here the nodes whose descriptor label `leaf` is `L1`;
                        @gpus the nodes that have a `gpus` label at all (groups())

`fold` is the way back, as clush -b and clubak print sets: the fewest names and ranges that
expand to exactly the nodes given. Written here rather than taken from ClusterShell so that
the core keeps its two dependencies and `zcl-run` starts fast; tests/unit/test_nodeset.py
holds it to the rules above, by example and by property.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from zcl.errors import ZclError

MAX_NODES = 1_000_000  # what one expression may expand to: a typo must not fill memory
OPERATORS = {",": "union", "!": "difference", "&": "intersection", "^": "symmetric difference"}
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")  # the last run of digits in a name

Resolver = Callable[[str], Iterable[str]]


class NodeSetError(ZclError):
    """An expression that does not parse, names an unknown group or expands to too much."""


def expand(expression: str, groups: Resolver | None = None) -> list[str]:
    """The nodes an expression names, sorted as `fold` and `sort_nodes` sort them."""
    return sort_nodes(parse(expression, groups))


def parse(expression: str, groups: Resolver | None = None) -> set[str]:
    result: set[str] = set()
    operator = ","
    for term, following in _terms(expression):
        nodes = _term(term, groups)
        if operator == ",":
            result |= nodes
        elif operator == "!":
            result -= nodes
        elif operator == "&":
            result &= nodes
        else:
            result ^= nodes
        if len(result) > MAX_NODES:
            raise NodeSetError(f"{expression[:80]!r} names more than {MAX_NODES:,} nodes")
        operator = following
    return result


def _terms(expression: str) -> list[tuple[str, str]]:
    """Each term with the operator that follows it, split outside brackets."""
    terms: list[tuple[str, str]] = []
    depth, start = 0, 0
    for at, char in enumerate(expression):
        if char == "[":
            depth += 1
            if depth > 1:
                raise NodeSetError(f"nested brackets in {expression[:80]!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise NodeSetError(f"a ']' with no '[' in {expression[:80]!r}")
        elif depth == 0 and char in OPERATORS:
            terms.append((expression[start:at].strip(), char))
            start = at + 1
    if depth:
        raise NodeSetError(f"a '[' with no ']' in {expression[:80]!r}")
    terms.append((expression[start:].strip(), ","))
    for term, operator in terms:
        if not term and operator == ",":
            continue  # a trailing or doubled comma: nothing to add
        if not term:
            raise NodeSetError(f"'{operator}' needs a node set on its left in {expression!r}")
    return [(term, operator) for term, operator in terms if term]


def _term(term: str, groups: Resolver | None) -> set[str]:
    if term.startswith("@"):
        if groups is None:
            raise NodeSetError(f"{term}: no groups here (they come from a cluster descriptor)")
        found = set(groups(term[1:]))
        if not found:
            raise NodeSetError(f"{term}: no such group, or it has no nodes")
        return found
    if any(char.isspace() for char in term) or "@" in term:
        raise NodeSetError(f"{term!r} is not a node name or range")
    names = [""]
    for literal, ranges in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", term):
        names = [name + literal for name in names]
        if ranges:
            numbers = _ranges(ranges, term)
            if len(names) * len(numbers) > MAX_NODES:
                raise NodeSetError(f"{term[:80]!r} names more than {MAX_NODES:,} nodes")
            names = [name + number for name in names for number in numbers]
    return set(names)


def _ranges(text: str, term: str) -> list[str]:
    """`01-12/4,20`: the numbers as text, padded as each range's start is."""
    numbers: list[str] = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?:/(\d+))?)?", part.strip())
        if match is None:
            raise NodeSetError(f"[{text}] in {term!r}: expected numbers and ranges like 01-12")
        first, last, step = match.group(1), match.group(2), match.group(3)
        low, high = int(first), int(last if last is not None else first)
        stride = int(step) if step else 1
        if high < low or stride == 0:
            raise NodeSetError(f"[{text}] in {term!r}: a range must run upwards, by a step of 1+")
        if (high - low) // stride + 1 > MAX_NODES:
            raise NodeSetError(f"[{text}] in {term!r} names more than {MAX_NODES:,} nodes")
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        numbers.extend(str(n).zfill(width) for n in range(low, high + 1, stride))
    return numbers


def sort_key(name: str) -> tuple[str, str, int, str]:
    """Natural order: node2 before node10 (and node09 before node10)."""
    match = _NUMBERED.match(name)
    if match is None:
        return (name, "", -1, name)
    prefix, digits, suffix = match.groups()
    return (prefix, suffix, int(digits), name)


def sort_nodes(nodes: Iterable[str]) -> list[str]:
    return sorted(set(nodes), key=sort_key)


def fold(nodes: Iterable[str]) -> str:
    """A short form that expands to exactly `nodes`, on the last number of each name:
    prefix[ranges]suffix. A zero-padded number keeps its width, and an unpadded one of that
    width joins it (node09,node10 is node[09-10])."""
    numbered: dict[tuple[str, str], list[str]] = defaultdict(list)
    parts: list[str] = []
    for name in set(nodes):
        match = _NUMBERED.match(name)
        if match is None:
            parts.append(name)
        else:
            prefix, digits, suffix = match.groups()
            numbered[(prefix, suffix)].append(digits)
    parts.sort()
    for (prefix, suffix), all_digits in sorted(numbered.items()):
        widths = {len(d) for d in all_digits if len(d) > 1 and d.startswith("0")}
        families: dict[int, list[int]] = defaultdict(list)
        for digits in all_digits:
            width = len(digits) if len(digits) in widths else 0
            families[width].append(int(digits))
        for width, numbers in sorted(families.items()):
            parts.append(_folded(prefix, sorted(numbers), width, suffix))
    return ",".join(parts)


def _folded(prefix: str, numbers: list[int], width: int, suffix: str) -> str:
    if len(numbers) == 1:
        return f"{prefix}{str(numbers[0]).zfill(width)}{suffix}"
    text = ",".join(
        str(a).zfill(width) if a == b else f"{str(a).zfill(width)}-{str(b).zfill(width)}"
        for a, b in _spans(numbers)
    )
    return f"{prefix}[{text}]{suffix}"


def _spans(numbers: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], number)
        else:
            spans.append((number, number))
    return spans


def label_groups(labels: Mapping[str, Mapping[str, str]]) -> Resolver:
    """Groups from a cluster descriptor's labels (node -> its labels): `@key:value` is every
    node whose label `key` is `value`; `@key` every node that has the label."""

    def resolve(group: str) -> list[str]:
        key, _, value = group.partition(":")
        return [
            node
            for node, found in labels.items()
            if key in found and (not value or found[key] == value)
        ]

    return resolve
