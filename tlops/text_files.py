"""Reading the user's own files (UTF-8 text, YAML) so that every failure names the file, the line and the
column as an editor shows them (1-based), instead of a library's "position 3" or a traceback.

Every YAML document a user writes (the run config, dataset.yaml, a --set value, a .dvc file beside the data) is
read by `parse_yaml`, which is bounded: a document whose aliases (`*name`) would expand it to more than
`MAX_YAML_NODES` values (a "billion laughs" document), or whose alias refers to its own anchor, is refused
before anything is expanded, in time and memory proportional to the file's size.
"""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from tlops.errors import TlopsError

# The most values (scalars, lists, mappings) a user's YAML document may have once every alias is expanded. A run
# config or a dataset.yaml has hundreds; nested aliases can multiply a small file to billions.
MAX_YAML_NODES = 100_000


def normal_label(label: str) -> str:
    """A class label as tlops keeps it: Unicode NFC, so 'café' typed with a precomposed é and with e + a combining
    accent is one class (the two look the same in every editor). Every reader of user labels calls this: the
    dataset's CSVs and dataset.yaml `labels:` (tlops.data.dataset) and a few-shot support set (tlops.support_set);
    predictions name the classes so normalised. Case is kept: 'Cat' and 'cat' differ (validation refuses a
    dataset holding both)."""
    return unicodedata.normalize("NFC", label)


def line_col(data: bytes | str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of an offset; the column counts characters, not bytes."""
    nl = b"\n" if isinstance(data, bytes) else "\n"
    start = data.rfind(nl, 0, offset) + 1
    prefix = data[start:offset]
    return data.count(nl, 0, offset) + 1, len(prefix.decode("utf-8", "replace") if isinstance(prefix, bytes) else prefix) + 1


def _other_unicode(data: bytes) -> tuple[str, str] | None:
    """(encoding, why) when the bytes are UTF-16 or UTF-32 text rather than UTF-8: a byte-order mark, or NUL bytes
    at every other position (ASCII characters in UTF-16); else None."""
    for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):  # UTF-32 LE's mark starts like UTF-16 LE's
        if data.startswith(bom):
            return name, f"it starts with a {name.upper()} byte-order mark"
    head = data[:4096]
    even, odd = head[0::2], head[1::2]
    for nuls, others in ((even, odd), (odd, even)):
        if len(nuls) >= 4 and nuls.count(0) >= 0.4 * len(nuls) and others.count(0) <= 0.1 * len(others):
            return "utf-16", "every other byte is NUL, as in UTF-16 text"
    return None


def decode_utf8(data: bytes, where: str, error: type[TlopsError]) -> str:
    """The bytes as text (a leading UTF-8 BOM dropped), or `error` naming the first byte that is not UTF-8 (or
    saying the file is UTF-16/UTF-32, when a byte-order mark or NUL bytes between characters show it)."""
    other = _other_unicode(data)
    if other is not None:
        name, why = other
        raise error(f"{where}: the file is {name.upper()}, not UTF-8 ({why}); save it as UTF-8, e.g. "
                    f"iconv -f {name} -t utf-8 {where} > fixed && mv fixed {where}")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = skip + e.start
        line, col = line_col(data, at)
        raise error(f"{where} line {line} column {col}: byte 0x{data[at]:02x} is not UTF-8 (the file looks like another "
                    "encoding, e.g. Latin-1 or Windows-1252); save it as UTF-8, e.g. iconv -f latin1 -t utf-8 "
                    f"{where} > fixed && mv fixed {where}") from None


def read_utf8(path: Path, error: type[TlopsError]) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise error(f"{path} cannot be read ({e.strerror}); check that it is a readable file") from None
    return decode_utf8(data, str(path), error)


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader noting each alias it resolves: (where the alias is, the node it names)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.aliases: list[tuple[yaml.Mark, yaml.Node]] = []

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark if self.check_event(yaml.AliasEvent) else None
        node = super().compose_node(parent, index)
        if mark is not None:
            self.aliases.append((mark, node))
        return node


def parse_yaml(text: str, where: str, error: type[TlopsError], fix: str, located: bool = True) -> Any:
    """yaml.safe_load, bounded (see the module's docstring), with the failure as one line: `where line L column C:
    not valid YAML (problem); fix` (`located=False`: no line/column, for a one-line value such as a --set override)."""
    loader = None
    try:
        loader = _Loader(text)  # what yaml.safe_load does, with the composed document checked before it is built
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_alias_bombs(loader.aliases, where, error, located)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = f" line {mark.line + 1} column {mark.column + 1}" if mark and located else ""
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise error(f"{where}{loc}: not valid YAML ({problem}); {fix}") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (e.g. a control character)
        loc = " line {} column {}".format(*line_col(text, e.position)) if located else ""
        raise error(f"{where}{loc}: not valid YAML (character {chr(e.character) if isinstance(e.character, int) else e.character!r} is not allowed); "
                    f"remove it; {fix}") from None
    except yaml.YAMLError as e:
        raise error(f"{where}: not valid YAML ({' '.join(str(e).split())}); {fix}") from None
    except RecursionError:
        raise error(f"{where}: not valid YAML (nested too deeply); {fix}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _expanded(target: yaml.Node, size: dict[int, int]) -> int | None:
    """Values in `target` with every alias inside it expanded (clamped at 10**15), or None when an alias inside
    it names a node it is inside. `size` memoises finished nodes across calls: a composed document shares one
    node per anchor, so each distinct node is sized once. Iterative: deep nesting cannot overflow the stack."""
    open_: set[int] = set()  # entered, not finished: exactly the ancestors of the node being expanded
    stack: list[tuple[yaml.Node, bool]] = [(target, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_.discard(key)
            size[key] = min(10**15, 1 + sum(size[id(c)] for c in _children(node)))
            continue
        if key in size:
            continue
        open_.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_:
                return None
            if id(child) not in size:
                stack.append((child, False))
    return size[id(target)]


def _refuse_alias_bombs(aliases: list[tuple[yaml.Mark, yaml.Node]], where: str, error: type[TlopsError], located: bool) -> None:
    """Refuse a document whose aliases add more than MAX_YAML_NODES values to what is written (each alias adds
    its node's expanded size; a long document without aliases is as big in memory as its file, and passes), or
    whose alias names a node it is inside. Costs nothing without aliases, and the distinct nodes under aliased
    anchors with them: a billion-laughs file is measured in microseconds, before anything is expanded."""
    size: dict[int, int] = {}
    added = 0
    for mark, target in aliases:
        n = _expanded(target, size)
        loc = f" line {mark.line + 1}" if located else ""
        if n is None:
            raise error(f"{where}{loc}: refused: a YAML alias (*name) refers to the anchor (&name) it is inside, a structure "
                        "without end; write the values out instead of the alias")
        added += n
        if added > MAX_YAML_NODES:
            raise error(f"{where}{loc}: refused: YAML aliases (*name) would expand this document by more than "
                        f"{MAX_YAML_NODES:,} values (nested anchors and aliases, a 'billion laughs' document); write the values "
                        "out, with few or no aliases")


def key_line(text: str, key: str, index: int | None = None) -> int | None:
    """1-based line of a top-level key's value (or of its `index`-th list item) in a YAML mapping, if found."""
    try:
        root = yaml.compose(text)
    except (yaml.YAMLError, RecursionError):
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    for k, v in root.value:
        if getattr(k, "value", None) == key:
            if index is not None and isinstance(v, yaml.SequenceNode) and index < len(v.value):
                v = v.value[index]
            return v.start_mark.line + 1
    return None
