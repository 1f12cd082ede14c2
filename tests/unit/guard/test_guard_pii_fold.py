"""Hypothesis properties of folding: a value disguised with fullwidth or
other-script characters, invisible characters and odd separators is found
and redacted exactly, in one text, in a stream and split across parts."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from extproc.guard.fold import fold
from extproc.guard.pii import PiiConfig, PiiScanner, StreamSanitizer
from tests.profiles import examples
from tests.unit.guard.samples import PII_VALUES

SETTINGS = settings(
    max_examples=int(os.environ.get("GUARD_HYPOTHESIS_EXAMPLES", examples(150))),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # Examples are long (PEM blocks, JWTs): shrinking one takes minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)

SCANNER = PiiScanner(PiiConfig())

INVISIBLE = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u00ad",
    "\u2060",
    "\ufeff",
    "\ufe0f",
    "\u180e",
    "\u034f",
    "\U000e0020",
    "\u0301",
]
ZEROS = [0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0xFF10, 0x1D7CE, 0x1D7D8]  # digit zero of other scripts
SEPARATORS = {
    " ": ["\u00a0", "\u2009", "\u202f", "\u3000", "\u2002"],
    "-": ["\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", "\ufe63", "\uff0d"],
    ".": ["\u3002", "\uff0e", "\uff61"],
    "@": ["\uff20", "\ufe6b"],
}
VALUES = PII_VALUES


@st.composite
def disguised(draw):
    entity, value = draw(st.sampled_from(VALUES))
    out = []
    for i, ch in enumerate(value):
        how = draw(st.integers(0, 5))
        if ch.isdigit() and how == 1:
            out.append(chr(draw(st.sampled_from(ZEROS)) + int(ch)))
        elif ch in SEPARATORS and how == 2:
            out.append(draw(st.sampled_from(SEPARATORS[ch])))
        elif "!" <= ch <= "~" and how == 3:
            out.append(chr(ord(ch) + 0xFEE0))  # fullwidth
        else:
            out.append(ch)
        # Invisible characters inside the value only: the ones around it are
        # not part of it.
        if i < len(value) - 1 and draw(st.integers(0, 3)) == 0:
            out.append("".join(draw(st.lists(st.sampled_from(INVISIBLE), min_size=1, max_size=3))))
    return entity, "".join(out)


PROSE = st.text(alphabet="abcdefghijklmnop qrstuvwxyz", max_size=40)


def around(prefix: str, value: str, suffix: str) -> str:
    # The comma keeps random prose from reading "v 1.2.3.4" (a version).
    return f"{prefix}, {value} {suffix}"


@SETTINGS
@given(disguised(), PROSE, PROSE)
def test_a_disguised_value_is_found_and_redacted_whole(item, prefix, suffix):
    entity, value = item
    assume(fold(value).text != "")
    result = SCANNER.sanitize(around(prefix, value, suffix))
    assert result.text == around(prefix, f"[{entity}_1]", suffix)
    assert result.counts == {entity: 1}


@SETTINGS
@given(disguised(), PROSE, PROSE, st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_a_stream_redacts_a_disguised_value_however_it_is_cut(item, prefix, suffix, cuts):
    entity, value = item
    text = around(prefix, value, suffix)
    stream, out, pos = StreamSanitizer(SCANNER), [], 0
    for size in cuts:
        out.append(stream.feed(text[pos : pos + size]))
        pos += size
    out.append(stream.feed(text[pos:]))
    out.append(stream.flush())
    assert "".join(out) == SCANNER.sanitize(text).text == around(prefix, f"[{entity}_1]", suffix)


@SETTINGS
@given(disguised(), PROSE, PROSE, st.data())
def test_a_disguised_value_split_across_parts_is_never_sent_whole(item, prefix, suffix, data):
    entity, value = item
    cut = data.draw(st.integers(1, len(value) - 1))
    first, second = f"{prefix}, {value[:cut]}", f"{value[cut:]} {suffix}"
    result = SCANNER.sanitize_parts([first, second])
    # Nothing detectable is left, even with the parts glued back together.
    assert SCANNER.find("".join(result.texts)) == []
    assert result.counts == {entity: 1}
    if not SCANNER.find(first) and not SCANNER.find(second):
        # Only the join shows the value: every piece of it is replaced.
        placeholder = f"[{entity}_1]"
        assert result.texts == [f"{prefix}, {placeholder}", f"{placeholder} {suffix}"]


def test_fold_maps_every_folded_character_back_to_its_source():
    text = "a\u200b\uff14\u00adb\ufb01c\u0664"
    folded = fold(text)
    assert folded.text == "a4bfic4"
    assert [text[slice(*folded.span(i, i + 1))] for i in range(len(folded.text))] == [
        "a",
        "\uff14",
        "b",
        "\ufb01",
        "\ufb01",
        "c",
        "\u0664",
    ]
    assert folded.span(0, len(folded.text)) == (0, len(text))
