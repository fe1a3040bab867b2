"""YAML loading that remembers where things are, so every problem can name its file and line.

Mappings load as `PosDict` (line of the mapping, line of each key, line of each value) and
sequences as `PosList` (line of each item). Filter configurations are JSON inside a YAML string;
`json_line` finds a JSON field's line inside such a string."""

from __future__ import annotations

import yaml


class PosDict(dict):
    line = 0

    def __init__(self):
        super().__init__()
        self.key_lines: dict = {}
        self.value_lines: dict = {}
        # For string values written as block scalars (`value: |`), the line their text starts on.
        self.text_lines: dict = {}

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class PosList(list):
    line = 0

    def __init__(self):
        super().__init__()
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class _Loader(yaml.SafeLoader):
    pass


def _map(loader: _Loader, node: yaml.MappingNode):
    d = PosDict()
    d.line = node.start_mark.line + 1
    yield d
    loader.flatten_mapping(node)
    for k_node, v_node in node.value:
        key = loader.construct_object(k_node, deep=True)
        d[key] = loader.construct_object(v_node, deep=True)
        d.key_lines[key] = k_node.start_mark.line + 1
        d.value_lines[key] = v_node.start_mark.line + 1
        if isinstance(v_node, yaml.ScalarNode):
            # Block scalars start their text on the next line; quoted/plain ones on the same line.
            d.text_lines[key] = v_node.start_mark.line + (2 if v_node.style in ("|", ">") else 1)


def _seq(loader: _Loader, node: yaml.SequenceNode):
    lst = PosList()
    lst.line = node.start_mark.line + 1
    yield lst
    for item in node.value:
        lst.append(loader.construct_object(item, deep=True))
        lst.item_lines.append(item.start_mark.line + 1)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


def load(text: str):
    """Parse YAML (JSON is YAML too) keeping positions. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


def json_line(text: str, path: list, first_line: int) -> int:
    """The line of the JSON field `path` (keys; list indexes are skipped) inside `text`, whose
    first line is `first_line` of the file. Searches each key after the previous one: exact for the
    configurations people write (one field per key), and never worse than the string's own line."""
    pos = 0
    for key in path:
        if not isinstance(key, str):
            continue
        found = text.find(f'"{key}"', pos)
        if found < 0:
            break
        pos = found
    return first_line + text.count("\n", 0, pos)
