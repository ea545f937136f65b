"""Reading the user's own files (UTF-8 text, YAML) so that every failure names the file, the line and the
column as an editor shows them (1-based), instead of a library's "position 3" or a traceback."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from tlops.errors import TlopsError


def line_col(data: bytes | str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of an offset; the column counts characters, not bytes."""
    nl = b"\n" if isinstance(data, bytes) else "\n"
    start = data.rfind(nl, 0, offset) + 1
    prefix = data[start:offset]
    return data.count(nl, 0, offset) + 1, len(prefix.decode("utf-8", "replace") if isinstance(prefix, bytes) else prefix) + 1


def decode_utf8(data: bytes, where: str, error: type[TlopsError]) -> str:
    """The bytes as text (a leading UTF-8 BOM dropped), or `error` naming the first byte that is not UTF-8."""
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


def parse_yaml(text: str, where: str, error: type[TlopsError], fix: str, located: bool = True) -> Any:
    """yaml.safe_load with the failure as one line: `where line L column C: not valid YAML (problem); fix`
    (`located=False`: no line/column, for a one-line value such as a --set override)."""
    try:
        return yaml.safe_load(text)
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
