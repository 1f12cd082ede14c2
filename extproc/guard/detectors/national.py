"""National identifiers: each with its own checksum or issuance rules."""

from __future__ import annotations

import re
from collections.abc import Callable

from extproc.guard import validators as v
from extproc.guard._multi import CASELESS
from extproc.guard.detectors.base import Detector, ScanOptions, Span, Validator, make, not_after
from extproc.guard.detectors.context import OTHER_NUMBERS, Keywords

# --- US_SSN ------------------------------------------------------------------
# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.

_SSN_AREA = r"(?<![0-9.\-])(?!000|666|9)[0-9]{3}"

US_SSN = make(
    "US_SSN",
    "US_SSN",
    _SSN_AREA + r"(?P<ss>[\- .])(?!00)[0-9]{2}(?P=ss)(?!0000)[0-9]{4}(?![0-9]|[.\-][0-9])",
    head=r"(?<![0-9.\-])[0-8]",
    head_len=1,
    width=14,
    alphabet=r"0-9 .\-",
    prefilter=r"(?:^|[^0-9.\-])[0-8][0-9]{2}[\- .][0-9]{2}[\- .][0-9]{4}",
    re_prefilter=r"[0-8][0-9]{2}[\- .][0-9]{2}[\- .][0-9]{4}",
    priority=9,
)

US_SSN_PLAIN = make(
    "US_SSN/plain",
    "US_SSN",
    _SSN_AREA + r"(?!00)[0-9]{2}(?!0000)[0-9]{4}(?![0-9]|[.\-][0-9])",
    head=r"(?<![0-9.\-])[0-8]",
    head_len=1,
    width=12,
    alphabet=r"0-9 .\-",
    prefilter=r"(?:^|[^0-9.\-])[0-8][0-9]{8}",
    re_prefilter=r"[0-8][0-9]{8}",
    priority=9,
)


# A value ends where no letter, digit or digit-continuing separator follows.
_END = r"(?![0-9A-Za-z]|[.\-/][0-9A-Za-z])"
_START = not_after(r"0-9A-Za-z.\-/")
_SEPARATORS = re.compile(r"[ .\-/]")


def _compact(value: str) -> str:
    return _SEPARATORS.sub("", value).upper()


def _checked(check: Callable[[str], bool], keywords: Keywords | None = None) -> Validator:
    """A validator: ``check`` on the compact value, and the keyword before it."""

    def validate(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
        if not check(_compact(m.group())):
            return None
        if keywords is not None and not keywords.before(text, m.start()):
            return None
        return m.span()

    return validate


def _keyed(
    key: str,
    entity: str,
    keywords: Keywords,
    value: str,
    check: Callable[[str], bool],
    *,
    head: str,
    width: int,
    alphabet: str,
    priority: int,
) -> Detector:
    """A detector for a value that counts only after one of ``keywords``."""
    return make(
        key,
        entity,
        _START + value + _END,
        _checked(check, keywords),
        head=_START + head,
        head_len=1,
        width=width + 2,
        alphabet=alphabet,
        prefilter=keywords.prefilter,
        prefilter_flags=CASELESS,
        after=keywords.after,
        context=keywords.context,
        priority=priority,
    )


# --- US_ITIN -------------------------------------------------------------------
# Like an SSN starting with 9 (never an SSN area), group 50-65, 70-88,
# 90-92 or 94-99. Written with dashes it needs no keyword.

US_ITIN = make(
    "US_ITIN",
    "US_ITIN",
    r"(?<![0-9.\-])9[0-9]{2}(?P<is>[\- ])(?:5[0-9]|6[0-5]|7[0-9]|8[0-8]|9[0-24-9])(?P=is)[0-9]{4}"
    r"(?![0-9]|[.\-][0-9])",
    head=r"(?<![0-9.\-])9",
    head_len=1,
    width=14,
    alphabet=r"0-9 .\-",
    prefilter=r"(?:^|[^0-9.\-])9[0-9]{2}[\- ][5-9][0-9][\- ][0-9]{4}",
    re_prefilter=r"9[0-9]{2}[\- ][5-9][0-9][\- ][0-9]{4}",
    priority=9,
)

US_ITIN_KEYED = _keyed(
    "US_ITIN/keyed",
    "US_ITIN",
    Keywords([r"itin", r"individual taxpayer", r"taxpayer identification", r"tax id"], blockers=OTHER_NUMBERS),
    r"9[0-9]{8}",
    v.us_itin_ok,
    head="9",
    width=9,
    alphabet=r"0-9",
    priority=9,
)


# --- UK_NINO / UK_NHS ------------------------------------------------------------
# NINO: two letters, three pairs of digits, a suffix A-D ("QQ 12 34 56 C").

UK_NINO = make(
    "UK_NINO",
    "UK_NINO",
    not_after("A-Za-z0-9") + r"[A-Z]{2}(?P<ns> ?)[0-9]{2}(?:(?P=ns)[0-9]{2}){2}(?P=ns)[A-D](?![A-Za-z0-9])",
    _checked(v.uk_nino_ok),
    head=not_after("A-Za-z0-9") + r"[A-Z]{2}",
    head_len=2,
    width=14,
    alphabet=r"A-Za-z0-9 ",
    prefilter=r"[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]",
    priority=12,
)

UK_NINO_GROUPED = make(
    "UK_NINO/grouped",
    "UK_NINO",
    not_after("A-Za-z0-9") + r"[A-Z]{2} [0-9]{6} [A-D](?![A-Za-z0-9])",
    _checked(v.uk_nino_ok),
    head=not_after("A-Za-z0-9") + r"[A-Z]{2}",
    head_len=2,
    width=13,
    alphabet=r"A-Za-z0-9 ",
    prefilter=r"[A-Z]{2} [0-9]{6} [A-D]",
    priority=12,
)

# NHS numbers: ten digits (3-3-4), modulus 11. The checksum alone passes one
# random number in eleven: "NHS" must come first.
UK_NHS = _keyed(
    "UK_NHS",
    "UK_NHS",
    Keywords([r"nhs", r"national health"], blockers=OTHER_NUMBERS),
    r"[0-9]{3}(?P<hs>[ \-]?)[0-9]{3}(?P=hs)[0-9]{4}",
    v.uk_nhs_ok,
    head="[0-9]",
    width=12,
    alphabet=r"0-9 \-",
    priority=12,
)


# --- DE_TAX_ID -------------------------------------------------------------------
# Steuer-ID: eleven digits (often "12 345 678 901"), ISO 7064 check digit.

DE_TAX_ID = _keyed(
    "DE_TAX_ID",
    "DE_TAX_ID",
    Keywords(
        [r"steuer", r"idnr", r"identifikationsnummer", r"tin\b", r"tax id", r"tax identification"],
        blockers=OTHER_NUMBERS,
    ),
    r"[1-9][0-9](?P<ts>[ /]?)[0-9]{3}(?P=ts)[0-9]{3}(?P=ts)[0-9]{3}",
    v.de_tax_id_ok,
    head="[1-9]",
    width=14,
    alphabet=r"0-9 /",
    priority=12,
)


# --- FR_NIR ------------------------------------------------------------------------
# Numéro de sécurité sociale: 13 characters and a key of 97 minus their value
# modulo 97, compact or as "1 85 05 78 006 084 36".

FR_NIR = make(
    "FR_NIR",
    "FR_NIR",
    r"(?<![0-9A-Za-z.\-])[12](?P<fs> ?)[0-9]{2}(?P=fs)[0-9]{2}(?P=fs)(?:[0-9]{2}|2[AB])(?P=fs)[0-9]{3}(?P=fs)[0-9]{3}"
    r"(?P=fs)[0-9]{2}(?![0-9A-Za-z]|[.\-][0-9])",
    _checked(v.fr_nir_ok),
    head=r"(?<![0-9A-Za-z.\-])[12]",
    head_len=1,
    width=23,
    alphabet=r"0-9AB ",
    prefilter=r"[12] ?[0-9]{2} ?[0-9]{2} ?[0-9][0-9AB] ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}",
    priority=12,
)


# --- ES_NIF (DNI) / ES_NIE ---------------------------------------------------------

ES_NIF = make(
    "ES_NIF",
    "ES_NIF",
    r"(?<![0-9A-Za-z.\-])[0-9]{8}-?[A-Z](?![0-9A-Za-z])",
    _checked(v.es_dni_ok),
    head=r"(?<![0-9A-Za-z.\-])[0-9]",
    head_len=1,
    width=12,
    alphabet=r"0-9A-Za-z\-",
    prefilter=r"[0-9]{8}-?[A-Z]",
    priority=12,
)

ES_NIE = make(
    "ES_NIE",
    "ES_NIE",
    not_after("0-9A-Za-z") + r"[XYZ]-?[0-9]{7}-?[A-Z](?![0-9A-Za-z])",
    _checked(v.es_nie_ok),
    head=not_after("0-9A-Za-z") + r"[XYZ]",
    head_len=1,
    width=13,
    alphabet=r"0-9A-Za-z\-",
    prefilter=r"[XYZ]-?[0-9]{7}-?[A-Z]",
    priority=12,
)


# --- IT_FISCAL_CODE ------------------------------------------------------------------
# Codice fiscale: surname, name, birth date and place, check letter. Digits
# may be replaced by letters (omocodia) when two people would collide.

_CF_DIGIT = r"[0-9LMNPQRSTUV]"

IT_FISCAL_CODE = make(
    "IT_FISCAL_CODE",
    "IT_FISCAL_CODE",
    not_after("0-9A-Za-z")
    + rf"[A-Z]{{6}}{_CF_DIGIT}{{2}}[ABCDEHLMPRST]{_CF_DIGIT}{{2}}[A-Z]{_CF_DIGIT}{{3}}[A-Z](?![0-9A-Za-z])",
    _checked(v.it_fiscal_code_ok),
    head=not_after("0-9A-Za-z") + r"[A-Z]{6}",
    head_len=6,
    width=18,
    alphabet=r"0-9A-Za-z",
    prefilter=r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z]",
    priority=12,
)


# --- NL_BSN ----------------------------------------------------------------------------
# Nine digits passing the "11-proef": one random number in eleven does.

NL_BSN = _keyed(
    "NL_BSN",
    "NL_BSN",
    Keywords(
        [r"bsn", r"burgerservice", r"sofi\b", r"sofinummer", r"citizen service number", r"persoonsnummer"],
        blockers=OTHER_NUMBERS,
    ),
    r"[0-9]{4}(?P<bs>[ .]?)[0-9]{2}(?P=bs)[0-9]{3}",
    v.nl_bsn_ok,
    head="[0-9]",
    width=11,
    alphabet=r"0-9 .",
    priority=12,
)


# --- BR_CPF ----------------------------------------------------------------------------
# "123.456.789-09" needs no keyword; eleven bare digits do (a phone number
# passes both check digits one time in a hundred).

BR_CPF = make(
    "BR_CPF",
    "BR_CPF",
    r"(?<![0-9.\-/])[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}(?![0-9]|[.\-/][0-9])",
    _checked(v.br_cpf_ok),
    head=r"(?<![0-9.\-/])[0-9]",
    head_len=1,
    width=16,
    alphabet=r"0-9.\-",
    prefilter=r"[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}",
    priority=12,
)

BR_CPF_KEYED = _keyed(
    "BR_CPF/keyed",
    "BR_CPF",
    Keywords([r"cpf", r"cadastro de pessoa", r"contribuinte"], blockers=OTHER_NUMBERS),
    r"[0-9]{9}-?[0-9]{2}",
    v.br_cpf_ok,
    head="[0-9]",
    width=12,
    alphabet=r"0-9\-",
    priority=12,
)


# --- PASSPORT --------------------------------------------------------------------------
# No shared format (9 digits in the US and UK, "C01X00T47" in Germany,
# "12AB34567" in France): six to nine capitals and digits, mostly digits,
# right after the word for passport.


def _passport_ok(value: str) -> bool:
    return 6 <= len(value) <= 9 and sum(ch.isdigit() for ch in value) >= 5


PASSPORT = _keyed(
    "PASSPORT",
    "PASSPORT",
    Keywords(
        [r"passport", r"passeport", r"pasaporte", r"passaporto", r"paspoort", r"reisepass", r"passaporte", r"pass-?nr"],
        gap=24,
        blockers=OTHER_NUMBERS,
    ),
    r"[A-Z0-9]{6,9}",
    _passport_ok,
    head="[A-Z0-9]",
    width=9,
    alphabet=r"A-Za-z0-9",
    priority=12,
)
