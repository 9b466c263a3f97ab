"""Reading a user's YAML file (the style catalog, a training recipe): bounded, and with line numbers.

- Safe: only plain YAML types (PyYAML's SafeLoader), never Python objects.
- Bounded: anchors and aliases (``&a`` / ``*a``) are allowed, but the document they expand to may hold at
  most ``MAX_YAML_VALUES`` values, counting a value once for every alias that repeats it. A "billion
  laughs" file (aliases of aliases) is refused right after parsing, before any value is built or quoted.
  Recursive aliases (a list that contains itself) are refused too.
- Located: every mapping is a :class:`LineDict` and every list a :class:`LineList`, which record the
  1-based line of the value itself, of each key and of each item, so semantic checks can name the line.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from .errors import StyleGRPOError, clip

MAX_YAML_VALUES = (
    100_000  # expanded values a catalog or recipe may hold: both need a few hundred; 9^9 laughs need 387 M
)


class LineDict(dict):
    """A YAML mapping that knows its line (``line``) and the line of each key (``key_lines``)."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return getattr(self, "key_lines", {}).get(key, self.line)


class LineList(list):
    """A YAML list that knows its line (``line``) and the line of each item (``item_lines``)."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        lines = getattr(self, "item_lines", [])
        return lines[index] if 0 <= index < len(lines) else self.line


def line_of(value: Any, key: Any = None) -> int:
    """The line of ``value`` (or of its key/item ``key``) when it came from :func:`load_yaml`, else 0."""
    if key is not None and isinstance(value, (LineDict, LineList)):
        return value.line_of(key)
    return getattr(value, "line", 0)


def to_plain(value: Any) -> Any:
    """``value`` with every LineDict/LineList turned into a plain dict/list (for yaml.safe_dump, argparse)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def at(path: str | os.PathLike[str], line: int) -> str:
    """``path:line`` for a message (``path`` alone when the line is unknown)."""
    return f"{os.fspath(path)}:{line}" if line else os.fspath(path)


class _Loader(yaml.SafeLoader):
    first_alias_line = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not self.first_alias_line and self.check_event(yaml.AliasEvent):
            self.first_alias_line = self.peek_event().start_mark.line + 1
        return super().compose_node(parent, index)

    def _map(self, node: yaml.MappingNode) -> Any:
        data = LineDict()
        data.line = node.start_mark.line + 1
        yield data
        data.update(self.construct_mapping(node))  # flattens merge keys (<<) into node.value first
        data.key_lines = {}
        for key_node, _ in node.value:
            try:
                key = self.construct_object(key_node)
                data.key_lines.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key was refused by construct_mapping already
                pass

    def _seq(self, node: yaml.SequenceNode) -> Any:
        data = LineList()
        data.line = node.start_mark.line + 1
        yield data
        data.extend(self.construct_sequence(node))
        data.item_lines = [item.start_mark.line + 1 for item in node.value]


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader._map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader._seq)


class _Recursive(Exception):
    def __init__(self, line: int):
        self.line = line


def _expanded_size(root: yaml.Node) -> int:
    """Values in the document with every alias expanded (computed on the node graph, so it is cheap)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Recursive(node.start_mark.line + 1)
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(v) for v in node.value)
        else:
            n = 1
        active.discard(key)
        sizes[key] = n
        return n

    return size(root)


def load_yaml(
    text: str,
    path: str | os.PathLike[str],
    error: type[Exception] = StyleGRPOError,
    max_values: int = MAX_YAML_VALUES,
) -> Any:
    """Parse one YAML document from ``text``; any problem raises ``error`` with ``path:line:column``."""
    path = os.fspath(path)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            n = _expanded_size(node)
        except _Recursive as r:
            raise error(
                f"{at(path, r.line)}: invalid YAML: an alias (*name) refers to the value that contains it; "
                "write the value out"
            ) from None
        if n > max_values:
            raise error(
                f"{at(path, loader.first_alias_line)}: the YAML aliases (*name) expand to {n:,} values, more "
                f"than the {max_values:,} allowed; write the values out instead of repeating aliases"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None and (mark is None or cmark.line != mark.line):
            # e.g. an unclosed '[' is only noticed at the end of the file: point at where it opened too
            problem += f" ({context} at line {cmark.line + 1})"
        raise error(f"{path}{where}: invalid YAML: {clip(problem)}") from None
    except RecursionError:
        raise error(f"{path}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
