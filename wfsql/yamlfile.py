"""YAML loading that remembers where every key came from, so errors can name file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wfsql.errors import Location, YamlError, source_snippet

try:  # the C loader is ~10x faster; fall back where libyaml is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


@dataclass
class YamlDocument:
    """A parsed YAML file plus a key-path → line index for error messages."""

    path: Path
    data: Any
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def line_of(self, key_path: tuple[Any, ...]) -> int | None:
        """Line of the deepest known prefix of key_path (1-based)."""
        for end in range(len(key_path), -1, -1):
            line = self.lines.get(tuple(key_path[:end]))
            if line is not None:
                return line
        return None

    def location(self, key_path: tuple[Any, ...] = ()) -> Location:
        return Location(self.path, self.line_of(key_path))


_KEY_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _key(node: yaml.Node) -> Any:
    """A mapping key as the loaded data has it: `2024:` is the int 2024 and `off:` False, not their text."""
    if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:str":
        try:
            return _KEY_CONSTRUCTOR.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError):
            return node.value
    return node.value


def _index_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = _key(key_node)
            out[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), out)


def load_yaml(path: Path, *, text: str | None = None) -> YamlDocument:
    """Parse one YAML file; a syntax error becomes a YamlError with its line and column."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        opened = exc.context_mark  # where the unclosed construct began, which is often the real mistake
        began = f" (in what begins on line {opened.line + 1})" if opened and mark and opened.line != mark.line else ""
        raise YamlError(
            f"{exc.problem or exc}{began}",
            location=Location(path, mark.line + 1 if mark else None, mark.column + 1 if mark else None),
            hint="fix the YAML syntax (indentation, quoting, ':' after keys, closing brackets)",
            snippet=source_snippet(text, mark.line + 1, mark.column + 1) if mark else None,
        ) from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return YamlDocument(path=path, data=data, lines=lines)
