"""Contact data: email addresses and phone numbers."""

from __future__ import annotations

import re

from extproc.guard import validators as v
from extproc.guard._multi import CASELESS
from extproc.guard.detectors.base import ScanOptions, Span, Validator, digits, make, not_after
from extproc.guard.detectors.context import OTHER_NUMBERS, Keywords

# --- EMAIL -------------------------------------------------------------------


def _email(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    local, _, domain = value.rpartition("@")
    if local[0] == "." or local[-1] == "." or ".." in local or len(domain) > 253:
        return None
    return m.span()


EMAIL = make(
    "EMAIL",
    "EMAIL",
    not_after(r"\w.%+\-") + r"[\w.%+\-]{1,64}@(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,24}"
    r"(?![^\W_]|-|\.[^\W_])",
    _email,
    head=not_after(r"\w.%+\-") + r"[\w.%+\-]{1,64}@",
    head_len=65,
    scan_head=not_after(r"\w.%+\-") + r"[\w.%+\-]",
    width=64 + 1 + 8 * 64 + 24 + 2,
    alphabet=r"\w.%+\-@",
    prefilter=r"@[A-Za-z0-9][A-Za-z0-9.\-]*\.[A-Za-z]{2}",
    before=64,
    priority=10,
)


# --- PHONE -------------------------------------------------------------------
# Shapes, all reported as PHONE: international (+CC ...), North American
# (NANP), French (0X XX XX XX XX), Brazilian (DD NNNN-NNNN), trunk-prefixed
# national numbers (UK, DE and most of Europe: 0AAA[A] SSS SSSS), with an
# extension or not ("x23670", "ext. 12"). A bare run of digits is an order
# id as often as a phone number: it counts only with a trunk prefix and a
# national length (0 and 9 or 10 digits), or after a word for phone.

_PHONE_BEFORE = not_after(r"\w+.\-/")
_PHONE_AFTER = r"(?![\w\-]|[./][0-9])"
_PHONE_ALPHABET = r"0-9 .()\-+/xet#"
_EXT = r"(?P<ext> ?(?:x|ext\.? ?|#)[0-9]{1,6})?"
_EXT_WIDTH = 12


def _balanced(value: str) -> bool:
    return value.count("(") == value.count(")") <= 2


def _number(m: re.Match[str]) -> str:
    """The match without its extension."""
    end = m.start("ext")
    return m.group() if end < 0 else m.string[m.start() : end]


def _phone_intl(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    start, end = m.span()
    value = _number(m)
    if value.endswith(")") and value.count(")") > value.count("(") and m.start("ext") < 0:
        # "(+44 20 7946 0958)": the bracket closes the aside, not an area code.
        value, end = value[:-1], end - 1
    if not _balanced(value):
        return None
    # "+44 (0)20 ..." : the bracketed trunk zero is not dialled from abroad.
    nums = digits(value.replace("(0)", "", 1))
    return (start, end) if v.intl_phone_ok(nums) else None


# A national number preceded by a digit group and one separator is the tail
# of a longer number (a card or IBAN failing its checksum, an id); one
# right after the name of another identifier ("NHS number 943 476 5919"
# failing its check) is that identifier, not a phone number.
_DIGIT_GROUP_BEFORE = re.compile(r"[0-9][ .\-]\Z")
_IBAN_GROUPS_BEFORE = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){1,3} $")
_OTHER_ID_WORDS = Keywords(
    [
        r"nhs\b",
        r"ssn\b",
        r"social security",
        r"itin\b",
        r"bsn\b",
        r"burgerservice",
        r"sofi\b",
        r"sofinummer",
        r"cpf\b",
        r"steuer",
        r"idnr\b",
        r"identifikationsnummer",
        r"nir\b",
        r"insee",
        r"securite sociale",
        r"dni\b",
        r"nie\b",
        r"nif\b",
        r"codice fiscale",
        r"passport",
        r"passeport",
        r"pasaporte",
        r"passaporto",
        r"paspoort",
        r"reisepass",
        r"iban\b",
        r"card\b",
        r"karte\b",
        r"kreditkarte",
        r"carte\b",
        r"tarjeta",
        r"carta\b",
        r"cartao",
        r"kaart\b",
    ],
    gap=24,
)
_NATIONAL_CONTEXT = _OTHER_ID_WORDS.context


def _national_ok(text: str, start: int) -> bool:
    if start and _DIGIT_GROUP_BEFORE.search(text, max(0, start - 2), start):
        return False
    return not _OTHER_ID_WORDS.before(text, start)


def _phone_nanp(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    nums = digits(_number(m))
    if len(nums) == 13:  # 001, the international prefix, and the country code
        nums = nums[3:]
    elif len(nums) == 11:
        nums = nums[1:]
    # N11 codes (211..911) are service numbers, not area codes: "311-555-0123"
    # alone is not taken as a phone number. Brackets, a country code or an
    # extension say it is one however its area code reads.
    marked = m.group()[0] in "(+0" or m.start("ext") >= 0 or len(nums) != len(digits(_number(m)))
    if (nums[1:3] == "11" and not marked) or not _national_ok(text, m.start()):
        return None
    return m.span()


def _phone_national(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    return m.span() if _national_ok(text, m.start()) else None


def _phone_trunk(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = _number(m)
    if not (10 <= len(digits(value)) <= 12 and _balanced(value)):
        return None
    # The tail of an IBAN that failed its checksum is not a phone number.
    if _IBAN_GROUPS_BEFORE.search(text, max(0, m.start() - 20), m.start()):
        return None
    return m.span() if _national_ok(text, m.start()) else None


PHONE_INTL = make(
    "PHONE/intl",
    "PHONE",
    _PHONE_BEFORE + r"\+[1-9][0-9]{0,14}"
    r"(?:(?:[ .\-]?\(0\)[ .\-]?|[ .\-])\(?[0-9]{1,14}\)?|\([0-9]{1,4}\)[ .\-]?[0-9]{1,14}){0,7}" + _EXT + _PHONE_AFTER,
    _phone_intl,
    head=_PHONE_BEFORE + r"\+[1-9]",
    head_len=2,
    width=16 + 7 * 22 + _EXT_WIDTH + 2,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"\+[1-9][0-9 ().\-]{6}",
    priority=13,
)

PHONE_NANP = make(
    "PHONE/nanp",
    "PHONE",
    _PHONE_BEFORE + r"(?:(?:\+?1|001)[ .\-]?)?"
    r"(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .\-][0-9]{4}|[2-9][0-9]{2}(?P<sep>[ .\-])[2-9][0-9]{2}(?P=sep)[0-9]{4})"
    + _EXT
    + _PHONE_AFTER,
    _phone_nanp,
    head=_PHONE_BEFORE + r"[+(0-9]",
    head_len=1,
    width=26 + _EXT_WIDTH,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"[2-9][0-9]{2}[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}|\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .\-][0-9]{4}",
    before=4,
    context=_NATIONAL_CONTEXT,
    priority=14,
)

PHONE_FR = make(
    "PHONE/fr",
    "PHONE",
    _PHONE_BEFORE + r"0[1-9](?P<fs>[ .\-])[0-9]{2}(?P=fs)[0-9]{2}(?P=fs)[0-9]{2}(?P=fs)[0-9]{2}" + _PHONE_AFTER,
    _phone_national,
    head=_PHONE_BEFORE + r"0[1-9]",
    head_len=2,
    width=16,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"0[1-9][ .\-][0-9]{2}[ .\-][0-9]{2}[ .\-][0-9]{2}[ .\-][0-9]{2}",
    context=_NATIONAL_CONTEXT,
    priority=15,
)

# Brazil: a two-digit area code and 8 or 9 digits, "(11) 91234-5678".
PHONE_BR = make(
    "PHONE/br",
    "PHONE",
    _PHONE_BEFORE + r"(?:\([1-9][0-9]\)|[1-9][0-9]) ?9?[0-9]{4}-[0-9]{4}" + _PHONE_AFTER,
    _phone_national,
    head=_PHONE_BEFORE + r"[(1-9]",
    head_len=1,
    width=18,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"[0-9]\)? ?9?[0-9]{4}-[0-9]{4}",
    before=4,
    context=_NATIONAL_CONTEXT,
    priority=15,
)

PHONE_TRUNK = make(
    "PHONE/national",
    "PHONE",
    _PHONE_BEFORE
    + r"(?:\(0[0-9][0-9]{1,4}\)[ \-]?|0[0-9][0-9]{1,4}[ \-/])[0-9]{2,8}(?:[ \-][0-9]{2,8}){0,2}"
    + _EXT
    + _PHONE_AFTER,
    _phone_trunk,
    head=_PHONE_BEFORE + r"[(0]",
    head_len=1,
    width=40 + _EXT_WIDTH,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"(?:^|[^0-9_+.\-/])\(?0[0-9][0-9]{1,4}(?:\)[ \-]?|[ \-/])[0-9]{2}",
    re_prefilter=r"0[0-9][0-9]{1,4}(?:\)[ \-]?|[ \-/])[0-9]{2}",
    before=1,
    context=_NATIONAL_CONTEXT,
    priority=16,
)

# "01134960123", "0739827625": a trunk 0, a non-zero digit and a national
# length. Zero-padded ids ("0000123456") do not start that way.
PHONE_BARE = make(
    "PHONE/bare",
    "PHONE",
    _PHONE_BEFORE + r"0[1-9][0-9]{8,9}" + _EXT + _PHONE_AFTER,
    _phone_trunk,
    head=_PHONE_BEFORE + r"0",
    head_len=1,
    width=11 + _EXT_WIDTH + 2,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"(?:^|[^0-9A-Za-z_+.\-/])0[1-9][0-9]{8}",
    re_prefilter=r"0[1-9][0-9]{8}",
    before=1,
    context=_NATIONAL_CONTEXT,
    priority=16,
)

_PHONE_WORDS = Keywords(
    [
        r"phone",
        r"telephone",
        r"tel\b",
        r"mobile",
        r"cell\b",
        r"call",
        r"ring\b",
        r"text me",
        r"reach",
        r"contact",
        r"fax",
        r"whatsapp",
        r"dial\b",
        r"hotline",
        r"landline",
        r"telefon",
        r"handy",
        r"mobil",
        r"rufnummer",
        r"anruf",
        r"rufen",
        r"erreich",
        r"festnetz",
        r"portable",
        r"appel",
        r"joindre",
        r"numero de telephone",
        r"fixe\b",
        r"telefono",
        r"movil",
        r"celular",
        r"llam",
        r"contacto",
        r"cellulare",
        r"chiam",
        r"contatt",
        r"telefoon",
        r"mobiel",
        r"bel\b",
        r"bellen",
        r"gsm\b",
        r"telefone",
        r"ligue",
        r"ligar",
        r"contato",
        r"fone\b",
    ],
    gap=48,
    blockers=OTHER_NUMBERS,
)


# Eight digits with at most four separators or brackets between two.
_EIGHT_DIGITS = r"[(+]?[0-9](?:[ .\-/()]{0,4}[0-9]){7}"
_EIGHT_DIGITS_WIDTH = 2 + 7 * 5
# "call me on 12.05.2024": a date after a phone word is still a date.
_DATE_LIKE = re.compile(r"[0-9]{1,4}(?P<d>[./\-])[0-9]{1,2}(?P=d)[0-9]{1,4}(?: [0-9]{1,2})?\Z")


# Words that name a phone number (not verbs like "call"): enough to read
# any grouping after them as one.
_PHONE_NOUNS = Keywords(
    [
        r"call",
        r"phone",
        r"telephone",
        r"tel\b",
        r"mobile",
        r"cell",
        r"fax\b",
        r"whatsapp",
        r"telefon",
        r"handy",
        r"rufnummer",
        r"portable",
        r"telefono",
        r"movil",
        r"celular",
        r"cellulare",
        r"telefoon",
        r"mobiel",
        r"gsm\b",
        r"telefone",
        r"fone\b",
        r"tlf",
        r"puhelin",
        r"telefonu",
    ],
    gap=48,
    blockers=OTHER_NUMBERS,
)


def _phone_keyed_with(words: Keywords) -> Validator:
    def validate(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
        value = _number(m)
        nums = digits(value)
        if not 8 <= len(nums) <= 15 or len(set(nums)) <= 2 or not _balanced(value) or _DATE_LIKE.match(value):
            return None
        if not words.before(text, m.start()) or not _national_ok(text, m.start()):
            return None
        return m.span()

    return validate


# A bare run of digits ("8233565229", "3420837783") after a word for phone,
# verbs included ("call me at", "Chiamami al"). The prefilter looks for the
# digits, not the words: "call" and "contact" are everywhere in prose.
PHONE_KEYED = make(
    "PHONE/keyed",
    "PHONE",
    _PHONE_BEFORE + r"\+?[0-9]{9,15}" + _EXT + _PHONE_AFTER,
    _phone_keyed_with(_PHONE_WORDS),
    head=_PHONE_BEFORE + r"[+0-9]",
    head_len=1,
    width=16 + _EXT_WIDTH + 2,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"(?:^|[^0-9A-Za-z_+.\-/])\+?[0-9]{9}",
    re_prefilter=r"[0-9]{9}",
    before=1,
    context=max(_PHONE_WORDS.context, _NATIONAL_CONTEXT),
    priority=17,
)

# Any other national or international grouping after a word naming a phone
# number: "(351) 935 181 909", "8 (865) 797-54-32", "08/ 718 03 34", eight to
# fifteen digits. The prefilter is the whole condition, word, gap and eight
# digits: eight digits alone are in every date.
PHONE_KEYED_GROUPED = make(
    "PHONE/keyed-grouped",
    "PHONE",
    _PHONE_BEFORE + r"(?:\(\+?[0-9]{1,5}\)|\+?[0-9]{1,15})"
    r"(?:[ .\-/]{1,2}(?:\([0-9]{1,5}\)|[0-9]{1,10})|(?<=\))[0-9]{1,10}){0,6}" + _EXT + _PHONE_AFTER,
    _phone_keyed_with(_PHONE_NOUNS),
    head=_PHONE_BEFORE + r"[+(0-9]",
    head_len=1,
    width=18 + 6 * 14 + _EXT_WIDTH + 2,
    alphabet=_PHONE_ALPHABET,
    prefilter=rf"(?:{_PHONE_NOUNS.prefilter})[^0-9\r\n]{{0,{_PHONE_NOUNS.gap}}}" + _EIGHT_DIGITS,
    prefilter_flags=CASELESS,
    # Without start of match: the number's first character is at most
    # _EIGHT_DIGITS_WIDTH before the end of the prefilter's match.
    som=False,
    before=_EIGHT_DIGITS_WIDTH,
    after=1,
    context=max(_PHONE_NOUNS.context, _NATIONAL_CONTEXT),
    priority=17,
)
