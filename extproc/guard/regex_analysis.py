"""Static analysis of Python regexes for the guard engines.

The engines need facts about a pattern before running it: how wide a match
can be (a stream must know how far a value reaches), how far its lookarounds
read, which character every match starts with (where to try it), and which
literals start every match (a cheap test before the regex). Python has no
public API for these; the parse tree ``re.compile`` itself builds from
(``re._parser``, Python 3.11+) is the only complete reading of its syntax.
This module is the one place that touches it, behind typed functions, so a
change of the stdlib internals breaks here and nowhere else.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

# Private stdlib module: typed as Any on purpose (typeshed has no stub for
# it), and imported once, here.
_sre: Any = importlib.import_module("re._parser")

_CATEGORIES = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


@dataclass(frozen=True, slots=True)
class Shape:
    """What a pattern can match, in characters."""

    min_width: int
    max_width: int  # MAXREPEAT-sized for unbounded patterns
    ahead: int  # the furthest a lookahead reads past where it stands
    behind: int  # the furthest a lookbehind reads before where it stands
    head: str | None  # a regex for the first character of every match, if known
    flags: int  # the pattern's global flags


def parse(pattern: str) -> Any:
    """The parse tree of ``pattern``; ``ValueError`` when it is invalid."""
    try:
        return _sre.parse(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex: {exc}") from None


def shape(pattern: str) -> Shape:
    tree = parse(pattern)
    low, high = tree.getwidth()
    ahead, behind = _lookaround_widths(tree.data)
    flags = int(tree.state.flags)
    head = _first_char(tree.data)
    if head is not None:
        try:
            re.compile(head, flags & ~re.UNICODE)
        except re.error:
            head = None
    return Shape(int(low), int(high), ahead, behind, head, flags)


def leads_with_boundary(pattern: str) -> bool:
    """Whether the ``\\b`` the pattern starts with applies to all of it (not
    to the first branch of a top-level alternation only)."""
    data = parse(pattern).data
    return bool(data) and str(data[0][0]) == "AT" and str(data[0][1]) == "AT_BOUNDARY"


def anchors(pattern: str, min_len: int = 2) -> tuple[bytes, ...] | None:
    """Lower-case Latin-1 literals one of which starts every match of
    ``pattern`` (a leading literal, or the literal prefixes of a leading
    alternation), or None when there are none at least ``min_len`` long."""
    items = list(parse(pattern).data)
    while items and str(items[0][0]) == "AT":
        items.pop(0)
    if not items:
        return None
    op, av = items[0]
    if str(op) == "SUBPATTERN" and not av[1] and not av[2]:
        items = list(av[-1].data) + items[1:]
        op, av = items[0]
    if str(op) == "LITERAL":
        prefixes = [_literal_prefix(items)]
    elif str(op) == "BRANCH":
        prefixes = [_literal_prefix(branch.data) for branch in av[1]]
    else:
        return None
    if not prefixes or min(map(len, prefixes)) < min_len:
        return None
    return tuple(sorted({p.lower().encode("latin-1") for p in prefixes}))


def _literal_prefix(items: Any) -> str:
    out: list[str] = []
    for op, av in items:
        if str(op) != "LITERAL":
            break
        out.append(chr(av))
    return "".join(out)


def _class_source(items: Any) -> str | None:
    """Rebuild a character class from the parser's IN items."""
    parts: list[str] = []
    negate = ""
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = "^"
        elif name == "LITERAL":
            parts.append(re.escape(chr(av)))
        elif name == "RANGE":
            parts.append(f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}")
        elif name == "CATEGORY":
            cat = _CATEGORIES.get(str(av))
            if cat is None:
                return None
            parts.append(cat)
        else:
            return None
    return f"[{negate}{''.join(parts)}]"


def _first_char(data: Any) -> str | None:
    """A regex for the first character any match of ``data`` begins with."""
    for op, av in data:
        name = str(op)
        if name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue  # zero-width: the next item gives the first character
        if name == "LITERAL":
            return re.escape(chr(av))
        if name == "NOT_LITERAL":
            return f"[^{re.escape(chr(av))}]"
        if name == "IN":
            return _class_source(av)
        if name in _REPEATS:
            low, _high, item = av
            return _first_char(item.data if hasattr(item, "data") else item) if low >= 1 else None
        if name == "SUBPATTERN":
            inner = _first_char(av[-1].data)
            if inner is None:
                return None
            add, delete = av[1], av[2]
            if add & re.IGNORECASE:
                return f"(?i:{inner})"
            if delete & re.IGNORECASE:
                return f"(?-i:{inner})"
            return inner
        if name == "ATOMIC_GROUP":
            return _first_char(av.data)
        if name == "BRANCH":
            heads = [_first_char(branch.data) for branch in av[1]]
            known = [h for h in heads if h is not None]
            return None if len(known) < len(heads) else "(?:" + "|".join(known) + ")"
        return None
    return None


def _lookaround_widths(data: Any) -> tuple[int, int]:
    """Max widths of lookaheads and lookbehinds anywhere in the pattern."""
    ahead = behind = 0
    for op, av in data:
        name = str(op)
        children: list[Any]
        if name in ("ASSERT", "ASSERT_NOT"):
            direction, sub = av
            width = int(sub.getwidth()[1])
            if direction == 1:
                ahead = max(ahead, width)
            else:
                behind = max(behind, width)
            children = [sub.data]
        elif name == "SUBPATTERN":
            children = [av[-1].data]
        elif name == "ATOMIC_GROUP":
            children = [av.data]
        elif name in _REPEATS:
            children = [av[2].data]
        elif name == "BRANCH":
            children = [b.data for b in av[1]]
        elif name == "GROUPREF_EXISTS":
            children = [b.data for b in av[1:] if b is not None]
        else:
            children = []
        for child in children:
            a, b = _lookaround_widths(child)
            ahead, behind = max(ahead, a), max(behind, b)
    return ahead, behind
