"""Entity tag schemes (IOB2, IOBES): parsing a tag, checking a sequence, repairing one, turning tags into spans.

IOB2: `B-TYPE` begins an entity, `I-TYPE` continues it, `O` is outside. IOBES adds `E-TYPE` (ends an entity of two
or more tokens) and `S-TYPE` (a one-token entity); in IOBES an entity is never left open. A sequence is valid when
every `I-`/`E-` continues an entity of the same type and (IOBES) every `B-`/`I-` is continued.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

SCHEMES = ("IOB2", "IOBES")
OUTSIDE = "O"
PREFIXES = {"IOB2": ("B", "I"), "IOBES": ("B", "I", "E", "S")}


class Span(NamedTuple):
    start: int  # first token (inclusive)
    end: int  # last token + 1
    type: str


def split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''). Raises ValueError for anything else (the caller words the message)."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not kind or kind != kind.strip():
        raise ValueError(tag)
    return prefix, kind


def is_tag(tag: str, scheme: str | None = None) -> bool:
    try:
        prefix, _ = split_tag(tag)
    except ValueError:
        return False
    return prefix == OUTSIDE or scheme is None or prefix in PREFIXES[scheme]


def detect_scheme(tags: Iterable[str]) -> str:
    """IOBES when any tag is `E-`/`S-`, else IOB2."""
    return "IOBES" if any(t[:2] in ("E-", "S-") for t in tags) else "IOB2"


def check_scheme(scheme: str) -> str:
    s = str(scheme).upper()
    if s not in SCHEMES:
        raise ValueError(f"tag scheme {scheme!r} is not one of {list(SCHEMES)}")
    return s


def sequence_problems(tags: list[str], scheme: str) -> list[tuple[int, str]]:
    """(token index, what is wrong and how to fix it) for each break of the scheme's rules in one sentence.
    Tags are assumed well-formed (`is_tag`)."""
    out = []
    prev_type = ""
    open_entity = False  # the previous tag leaves an entity that may be continued (B/I)
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix in ("I", "E") and not (open_entity and prev_type == kind):
            after = "the sentence start" if i == 0 else f"{tags[i - 1]!r}"
            begin = "B-" + kind
            iob1 = " (or, if the whole file uses I- to start entities, it is IOB1: convert it to IOB2)" if scheme == "IOB2" else ""
            out.append((i, f"tag {tag!r} continues an entity, but it follows {after}; start the entity with {begin!r}{iob1}"))
        if scheme == "IOBES" and open_entity and prefix not in ("I", "E"):
            out.append((i - 1, (f"tag {tags[i - 1]!r} opens an entity that the next tag ({tag!r}) does not continue; "
                                f"in IOBES an entity ends with 'E-{prev_type}' (or is one token: 'S-{prev_type}')")))
        prev_type = kind
        open_entity = prefix in ("B", "I")
    if scheme == "IOBES" and open_entity:
        out.append((len(tags) - 1, (f"tag {tags[-1]!r} leaves an entity open at the end of the sentence; end it with "
                                    f"'E-{prev_type}' (or 'S-{prev_type}' for a one-token entity)")))
    return out


def spans(tags: list[str]) -> list[Span]:
    """Entities in a tag sequence of either scheme, repairing as conlleval does: an `I-`/`E-` that does not continue
    an entity of its type starts one; an entity that is not closed ends before the next non-continuing tag."""
    out: list[Span] = []
    start, kind = -1, ""
    for i, tag in enumerate(list(tags) + [OUTSIDE]):
        prefix, t = split_tag(tag)
        continues = prefix in ("I", "E") and start >= 0 and t == kind
        if not continues and start >= 0:
            out.append(Span(start, i, kind))
            start = -1
        if prefix in ("B", "S") or (prefix in ("I", "E") and not continues):
            start, kind = i, t
        if prefix in ("E", "S") and start >= 0:
            out.append(Span(start, i + 1, kind))
            start = -1
    return out


def to_tags(entity_spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Spans (non-overlapping) -> a valid tag sequence of `length` tokens in `scheme`."""
    tags = [OUTSIDE] * length
    for s in entity_spans:
        n = s.end - s.start
        if scheme == "IOBES" and n == 1:
            tags[s.start] = f"S-{s.type}"
            continue
        tags[s.start] = f"B-{s.type}"
        for j in range(s.start + 1, s.end):
            tags[j] = f"I-{s.type}"
        if scheme == "IOBES":
            tags[s.end - 1] = f"E-{s.type}"
    return tags


def repair(tags: list[str], scheme: str) -> list[str]:
    """The valid sequence of `scheme` with the same entities `spans` reads (e.g. IOB2 'O I-PER' -> 'O B-PER')."""
    return to_tags(spans(tags), len(tags), scheme)


def tag_set(types: Iterable[str], scheme: str) -> list[str]:
    """Every tag of `scheme` for the entity types: 'O' first, then per type in sorted order."""
    return [OUTSIDE] + [f"{p}-{t}" for t in sorted(set(types)) for p in PREFIXES[scheme]]


def allowed(prev: str | None, tag: str, scheme: str) -> bool:
    """Whether `tag` may follow `prev` (None: the sentence start) in a valid sequence."""
    p, t = split_tag(tag)
    pp, pt = split_tag(prev) if prev is not None else (OUTSIDE, "")
    open_entity = pp in ("B", "I")
    if scheme == "IOBES" and open_entity:
        return p in ("I", "E") and t == pt
    if p in ("I", "E"):
        return open_entity and t == pt
    return True


def may_end(tag: str, scheme: str) -> bool:
    """Whether a sentence may end with `tag` (IOBES: no entity left open)."""
    return scheme != "IOBES" or split_tag(tag)[0] not in ("B", "I")
