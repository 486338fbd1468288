"""routes.yaml's YAML reader: PyYAML's safe loader, refusing what it keeps silently (duplicate keys), fails
on with other exceptions (unreadable scalars, unhashable keys) or is exhausted by (recursive aliases, deep
nesting, "billion laughs"), each as a problem with its line and column. Pure: parses given text, no I/O."""

from __future__ import annotations

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


def read_yaml(text: str, label: str) -> dict[Any, Any]:
    """The top-level mapping of a YAML document (``{}`` for an empty one). Raises ConfigError, labelled
    ``label``, for invalid YAML, what the strict loader refuses, and a top level that is not a mapping."""
    try:
        doc = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(at, f"not valid YAML: {reason}")], label) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError([Problem("", "expected a mapping with tasks, sources and routes")], label)
    return doc
