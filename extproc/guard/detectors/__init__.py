"""The built-in PII and secret detectors, by entity, and custom ones.

Each family lives in its own module (``contact``, ``finance``, ``national``,
``network``, ``credentials``); ``base`` says what a detector is and what
its metadata promises the scanner. This module is the catalogue: which
detectors an entity name selects, and detectors built from policy regexes.
"""

from __future__ import annotations

import re

from extproc.guard import regex_analysis
from extproc.guard.detectors.base import Detector, ScanOptions, whole
from extproc.guard.detectors.contact import (
    EMAIL,
    PHONE_BARE,
    PHONE_BR,
    PHONE_FR,
    PHONE_INTL,
    PHONE_KEYED,
    PHONE_KEYED_GROUPED,
    PHONE_NANP,
    PHONE_TRUNK,
)
from extproc.guard.detectors.credentials import (
    AWS_ACCESS_KEY,
    AWS_SECRET_KEY,
    AWS_SECRET_KEY_ENTROPY,
    BEARER_TOKEN,
    GENERIC_SECRET_KEYED,
    GENERIC_SECRET_PREFIXED,
    JWT,
    PRIVATE_KEY,
)
from extproc.guard.detectors.finance import CREDIT_CARD, IBAN
from extproc.guard.detectors.national import (
    BR_CPF,
    BR_CPF_KEYED,
    DE_TAX_ID,
    ES_NIE,
    ES_NIF,
    FR_NIR,
    IT_FISCAL_CODE,
    NL_BSN,
    PASSPORT,
    UK_NHS,
    UK_NINO,
    UK_NINO_GROUPED,
    US_ITIN,
    US_ITIN_KEYED,
    US_SSN,
    US_SSN_PLAIN,
)
from extproc.guard.detectors.network import IPV4, IPV6

__all__ = [
    "BUILTIN_ENTITIES",
    "CUSTOM_MAX_WIDTH",
    "NATIONAL_ENTITIES",
    "Detector",
    "ScanOptions",
    "analyze_custom",
    "builtin_detectors",
    "custom_detector",
]

# Identifiers of one country each: detected when a policy lists them (a
# German deployment lists DE_TAX_ID). Every other built-in entity is on by
# default; these would cost every request a dozen more prefilter patterns
# for numbers most deployments never see.
NATIONAL_ENTITIES: tuple[str, ...] = (
    "US_ITIN",
    "UK_NINO",
    "UK_NHS",
    "DE_TAX_ID",
    "FR_NIR",
    "ES_NIF",
    "ES_NIE",
    "IT_FISCAL_CODE",
    "NL_BSN",
    "BR_CPF",
    "PASSPORT",
)

BUILTIN_ENTITIES: tuple[str, ...] = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN",
    "IPV4",
    "IPV6",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "PRIVATE_KEY",
    "JWT",
    "BEARER_TOKEN",
    "GENERIC_SECRET",
    *NATIONAL_ENTITIES,
)

_BY_ENTITY: dict[str, tuple[Detector, ...]] = {
    "EMAIL": (EMAIL,),
    "PHONE": (PHONE_INTL, PHONE_NANP, PHONE_FR, PHONE_BR, PHONE_TRUNK, PHONE_BARE, PHONE_KEYED, PHONE_KEYED_GROUPED),
    "CREDIT_CARD": (CREDIT_CARD,),
    "US_SSN": (US_SSN,),
    "IBAN": (IBAN,),
    "IPV4": (IPV4,),
    "IPV6": (IPV6,),
    "AWS_ACCESS_KEY": (AWS_ACCESS_KEY,),
    "AWS_SECRET_KEY": (AWS_SECRET_KEY,),
    "PRIVATE_KEY": (PRIVATE_KEY,),
    "JWT": (JWT,),
    "BEARER_TOKEN": (BEARER_TOKEN,),
    "GENERIC_SECRET": (GENERIC_SECRET_PREFIXED, GENERIC_SECRET_KEYED),
    "US_ITIN": (US_ITIN, US_ITIN_KEYED),
    "UK_NINO": (UK_NINO, UK_NINO_GROUPED),
    "UK_NHS": (UK_NHS,),
    "DE_TAX_ID": (DE_TAX_ID,),
    "FR_NIR": (FR_NIR,),
    "ES_NIF": (ES_NIF,),
    "ES_NIE": (ES_NIE,),
    "IT_FISCAL_CODE": (IT_FISCAL_CODE,),
    "NL_BSN": (NL_BSN,),
    "BR_CPF": (BR_CPF, BR_CPF_KEYED),
    "PASSPORT": (PASSPORT,),
}


def builtin_detectors(
    entities: frozenset[str], ssn_unformatted: bool = False, aws_secret_entropy: bool = False
) -> list[Detector]:
    out = [det for entity in BUILTIN_ENTITIES if entity in entities for det in _BY_ENTITY[entity]]
    if ssn_unformatted and "US_SSN" in entities:
        out.append(US_SSN_PLAIN)
    if aws_secret_entropy and "AWS_SECRET_KEY" in entities:
        out.append(AWS_SECRET_KEY_ENTROPY)
    return out


# --- Custom patterns ---------------------------------------------------------

CUSTOM_MAX_WIDTH = 1024


def analyze_custom(pattern: str) -> tuple[int, int, int, str | None]:
    """(max width, lookahead, lookbehind, first-char head) of a policy regex.

    Raises ValueError for patterns that can match empty or unboundedly long
    text: a stream must know how far a value can reach, and an unbounded
    pattern (``\\d+``) is also how one regex turns a large body into
    quadratic work. Bound it instead (``\\d{6,12}``).
    """
    shape = regex_analysis.shape(pattern)  # ValueError for an invalid regex
    if shape.max_width > CUSTOM_MAX_WIDTH:
        raise ValueError(
            f"pattern can match more than {CUSTOM_MAX_WIDTH} characters; bound its repeats "
            "(e.g. {1,64} instead of + or *)"
        )
    if shape.min_width == 0:
        raise ValueError("pattern can match the empty string")
    return shape.max_width, shape.ahead, shape.behind, shape.head


def custom_detector(name: str, pattern: str) -> Detector:
    high, ahead, behind, head = analyze_custom(pattern)
    compiled = re.compile(pattern)
    flags = compiled.flags & (re.IGNORECASE | re.ASCII | re.DOTALL | re.MULTILINE)
    compiled_head = re.compile(head, flags) if head is not None else None
    return Detector(
        key=f"custom:{name}",
        entity=name,
        pattern=compiled,
        validate=whole,
        width=high + ahead + 1,
        head=compiled_head,
        head_len=1,
        scan_head=compiled_head,
        context=behind + 1,
        priority=-1,
    )
