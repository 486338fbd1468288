"""routes.yaml's YAML reader: PyYAML's safe loader, refusing what it keeps silently (duplicate keys), fails
on with other exceptions (unreadable scalars, unhashable keys) or is exhausted by (recursive aliases, deep
nesting, "billion laughs"), each as a problem with its line and column; and where each path of the document
is, so every problem of routes.yaml can name its line. Pure: parses given text, no I/O."""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

from gateway.errors import ConfigError, Problem

# Bounds on a document once its aliases are expanded: a routes.yaml is nowhere near them, and past them every
# walk of the document (interpolation, compiling, matching) would recurse too deep or take too long.
MAX_DEPTH = 50
MAX_VALUES = 100_000
_MAX_INT_BITS = 4096  # ~1,200 digits; longer ints cannot even be printed in an error message (Python's limit)


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses, as YAML errors with a line and column, what PyYAML lets through or fails
    on with another exception: duplicate keys (it keeps the last), unhashable keys, scalars its constructors
    cannot read (``!!int x``, ``2001-13-01``), huge integers, recursive aliases, and documents nested or
    aliased past MAX_DEPTH / MAX_VALUES (``&a [*a]`` or a "billion laughs" would exhaust the loader)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open: set[str] = set()  # anchors of the collections being composed
        self._values: dict[int, int] = {}  # id(collection node) -> values it holds, aliases expanded
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise _refused(f"alias *{event.anchor} is inside the node it names", event.start_mark)
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None) or ""
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            children = (
                node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            )
            self._values[id(node)] = size = 1 + sum(self._values.get(id(child), 1) for child in children)
            if size > MAX_VALUES:
                raise _refused(
                    f"holds more than {MAX_VALUES} values once its aliases are expanded", node.start_mark
                )
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (
            ValueError,
            TypeError,
            AttributeError,
            LookupError,
            OverflowError,
        ):  # `!!int ''`, `2001-13-01`
            kind = str(node.tag).rpartition(":")[2]  # the value is not shown: it may be a secret
            message = f"this value cannot be read as {kind} (quote it to make it a string)"
            raise _refused(message, node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: SafeLoader merges it below
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise _refused("a key must be a plain value, not a list or a mapping", key_node.start_mark)
            if key in seen:
                raise _refused(f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value: int = super().construct_yaml_int(node)
        if value.bit_length() > _MAX_INT_BITS:
            raise _refused(
                "an integer of more than 1,000 digits (quote it to make it a string)", node.start_mark
            )
        return value


def _refused(message: str, mark: Any) -> yaml.MarkedYAMLError:
    return yaml.constructor.ConstructorError(None, None, message, mark)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


Positions = dict[str, tuple[int, int]]  # a path the loader reports (routes[6].task) → its line and column


def _positions(loader: _StrictLoader, root: yaml.Node) -> Positions:
    """Where each path of the composed document starts, 1-based: a mapping entry at its key (what an editor
    should show for ``routes[6].task``), a list item at the item. Paths are spelled as the loader spells
    them (``sources.github.secret``, ``routes[0].when.body.ref``); a merged (``<<:``) entry is where it is
    written."""
    where: Positions = {}
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):  # flattened by construction: merges are in, `<<` is gone
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                at = f"{path}.{key}" if path else str(key)
                where[at] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                stack.append((value_node, at))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                at = f"{path}[{i}]"
                where[at] = (item.start_mark.line + 1, item.start_mark.column + 1)
                stack.append((item, at))
    return where


def position_of(path: str, positions: Positions) -> tuple[int, int] | None:
    """The line and column of ``path``, else of its nearest parent that is in the file (a missing key is
    shown at the mapping that lacks it); None when neither is known."""
    while path:
        if path in positions:
            return positions[path]
        parent = _PARENT.match(path)
        path = parent.group(1) if parent else ""
    return None


_PARENT = re.compile(r"^(.*?)(?:\[\d+\]|\.[^.\[\]]*)$")


def read_yaml(text: str, label: str) -> tuple[dict[Any, Any], Positions]:
    """The top-level mapping of a YAML document (``{}`` for an empty one) and where each of its paths starts.
    Raises ConfigError, labelled ``label``, for invalid YAML, what the strict loader refuses (each with its
    line and column), and a top level that is not a mapping."""
    try:
        loader = _StrictLoader(text)  # what yaml.load does, keeping the nodes to find the positions in
        try:
            root = loader.get_single_node()
            doc = loader.construct_document(root) if root is not None else None
            positions = _positions(loader, root) if isinstance(doc, dict) and root is not None else {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = (mark.line + 1, mark.column + 1) if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem("", f"not valid YAML: {reason}", at)], label) from None
    if doc is None:
        return {}, {}
    if not isinstance(doc, dict):
        raise ConfigError([Problem("", "expected a mapping with tasks, sources and routes")], label)
    return doc, positions
