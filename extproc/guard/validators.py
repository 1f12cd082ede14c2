"""Checks that turn a regex candidate into a detection.

A regex says "this looks like a card number"; these functions say whether it
is one: checksums (Luhn, IBAN mod-97), issuer and country tables, parsers
(``ipaddress``, JWT headers) and entropy. They take the bare value and never
log or raise with it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
from collections import Counter


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# (IIN prefix range low, high, allowed lengths). Prefixes are compared on the
# leading digits of the same width as the bound, so ("51", "55") covers
# 51xxxx..55xxxx. Sources: the networks' published IIN ranges.
_CARD_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # Amex
    ("37", "37", frozenset({15})),
    ("6011", "6011", frozenset(range(16, 20))),  # Discover
    ("644", "649", frozenset(range(16, 20))),
    ("65", "65", frozenset(range(16, 20))),
    ("622126", "622925", frozenset(range(16, 20))),
    ("300", "305", frozenset(range(14, 20))),  # Diners
    ("3095", "3095", frozenset(range(14, 20))),
    ("36", "36", frozenset(range(14, 20))),
    ("38", "39", frozenset(range(14, 20))),
    ("3528", "3589", frozenset(range(16, 20))),  # JCB
    ("35", "35", frozenset({16})),  # JCB as test data generates it (Faker: any 35xx)
    ("1800", "1800", frozenset({15})),  # JCB, 15 digits
    ("2131", "2131", frozenset({15})),
    ("62", "62", frozenset(range(16, 20))),  # UnionPay
    ("2200", "2204", frozenset(range(16, 20))),  # Mir
    ("50", "50", frozenset(range(12, 20))),  # Maestro
    ("56", "69", frozenset(range(12, 20))),  # Maestro's whole range: national debit BINs (PT 6705..., RU 6x...)
    ("6304", "6304", frozenset(range(12, 20))),
    ("6759", "6759", frozenset(range(12, 20))),
    ("6761", "6763", frozenset(range(12, 20))),
    ("6390", "6390", frozenset(range(12, 20))),
    ("0604", "0604", frozenset(range(12, 20))),  # as test card generators (Faker) issue it
    ("60", "60", frozenset(range(16, 20))),  # RuPay
    ("81", "82", frozenset(range(16, 20))),
)


def _issuer_table() -> tuple[frozenset[tuple[str, int]], tuple[int, ...]]:
    """Every (prefix, length) the ranges allow, and the prefix widths: a
    lookup per width instead of a pass over the ranges per candidate."""
    table: set[tuple[str, int]] = set()
    for low, high, lengths in _CARD_RANGES:
        for prefix in range(int(low), int(high) + 1):
            table.update((f"{prefix:0{len(low)}d}", n) for n in lengths)
    return frozenset(table), tuple(sorted({len(low) for low, _, _ in _CARD_RANGES}))


_ISSUERS, _ISSUER_WIDTHS = _issuer_table()


def card_issuer_ok(digits: str) -> bool:
    """A known issuer prefix whose card lengths include ``len(digits)``."""
    n = len(digits)
    return any((digits[:width], n) in _ISSUERS for width in _ISSUER_WIDTHS)


def card_ok(digits: str) -> bool:
    return card_issuer_ok(digits) and luhn_ok(digits)


# IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BI": 27,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DJ": 27,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FK": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HN": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "LY": 25,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MN": 20,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NI": 28,
    "NL": 18,
    "NO": 15,
    "OM": 23,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "RU": 33,
    "SA": 24,
    "SC": 31,
    "SD": 18,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "SO": 23,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
    "YE": 30,
}


def iban_mod97_ok(iban: str) -> bool:
    """ISO 13616 check: the rearranged number is 1 modulo 97."""
    rearranged = iban[4:] + iban[:4]
    try:
        number = "".join(str(int(ch, 36)) for ch in rearranged)
    except ValueError:
        return False
    return int(number) % 97 == 1


def iban_ok(iban: str) -> bool:
    """``iban`` without spaces, upper case."""
    return IBAN_LENGTHS.get(iban[:2]) == len(iban) and iban[2:4].isdigit() and iban.isalnum() and iban_mod97_ok(iban)


def _codes(spec: str) -> frozenset[str]:
    out: set[str] = set()
    for part in spec.split():
        if "-" in part:
            low, high = part.split("-")
            out.update(str(c) for c in range(int(low), int(high) + 1))
        else:
            out.add(part)
    return frozenset(out)


# Assigned ITU-T E.164 country calling codes (a few spare ones are included in
# the ranges; what matters is rejecting +0xx, +28x, +80x-like noise).
COUNTRY_CODES = _codes(
    "1 7 20 27 30-34 36 39 40 41 43-49 51-58 60-66 81 82 84 86 90-95 98 "
    "211-213 216 218 220-258 260-269 290 291 297-299 350-359 370-383 385-387 389 "
    "420 421 423 500-509 590-599 670 672-692 800 808 850 852 853 855 856 870 878 "
    "880-883 886 888 960-968 970-977 979 992-998"
)

# Digits after the country code, where the numbering plan is strict enough to
# be worth checking. Others use E.164's general bound.
_NATIONAL_LENGTHS: dict[str, tuple[int, int]] = {
    "1": (10, 10),
    "7": (10, 10),
    "33": (9, 9),
    "44": (9, 10),
    "49": (6, 13),
    "39": (6, 11),
    "34": (9, 9),
    "31": (9, 9),
    "32": (8, 9),
    "41": (9, 9),
    "61": (9, 9),
    "81": (9, 10),
    "86": (8, 11),
    "91": (10, 10),
}


def intl_phone_ok(digits: str) -> bool:
    """``digits``: country code and national number, no ``+`` or trunk ``0``."""
    if not 8 <= len(digits) <= 15:
        return False
    for size in (1, 2, 3):
        code = digits[:size]
        if code in COUNTRY_CODES:
            national = digits[size:]
            low, high = _NATIONAL_LENGTHS.get(code, (6, 14))
            if not low <= len(national) <= high:
                return False
            return not (code == "1" and national[0] in "01")
    return False


def ipv4_ok(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def ipv6_ok(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    # Require some substance: "::", "a::b" or "dead::beef" are valid but are
    # far more often C++ scopes or hex words than addresses.
    groups = [g for g in value.split(":") if g]
    return len(groups) >= 2 and any(ch.isdigit() for ch in value)


def shannon_entropy(value: str) -> float:
    """Bits per character: log2(n) - sum(c log2 c) / n over the counts c."""
    n = len(value)
    if not n:
        return 0.0
    return math.log2(n) - sum(c * math.log2(c) for c in Counter(value).values() if c > 1) / n


def char_classes(value: str) -> int:
    """How many of lower, upper, digit, other appear."""
    # Over the distinct characters: validators run once per attempt, and a
    # hostile body makes attempts at every keyword.
    if value.isascii():
        chars = set(value)
        alnum = _ascii_alnum_classes(chars)
        return alnum + (not chars <= _ASCII_ALNUM)
    lower = upper = digit = other = False
    for ch in set(value):
        if ch.islower():
            lower = True
        elif ch.isupper():
            upper = True
        elif ch.isdigit():
            digit = True
        else:
            other = True
    return lower + upper + digit + other


_ASCII_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_DIGITS = frozenset("0123456789")
_ASCII_ALNUM = _ASCII_LOWER | _ASCII_UPPER | _ASCII_DIGITS


def _ascii_alnum_classes(chars: set[str]) -> int:
    return (
        (not chars.isdisjoint(_ASCII_LOWER))
        + (not chars.isdisjoint(_ASCII_UPPER))
        + (not chars.isdisjoint(_ASCII_DIGITS))
    )


def alnum_classes(value: str) -> int:
    """How many of lower, upper, digit appear (symbols do not count)."""
    chars = set(value)
    if value.isascii():
        return _ascii_alnum_classes(chars)
    return any(c.islower() for c in chars) + any(c.isupper() for c in chars) + any(c.isdigit() for c in chars)


def b64url_json(segment: str) -> object | None:
    """Decode a base64url JWT segment to JSON, or None."""
    padded = segment + "=" * (-len(segment) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded)
        decoded: object = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return decoded


def jwt_ok(token: str) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    header = b64url_json(parts[0])
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return False
    return isinstance(b64url_json(parts[1]), dict)


_PLACEHOLDER_WORDS = frozenset(
    {
        "null",
        "none",
        "true",
        "false",
        "undefined",
        "required",
        "optional",
        "changeme",
        "password",
        "secret",
        "example",
        "string",
        "redacted",
        "placeholder",
        "your_token",
        "your_api_key",
        "yourpassword",
        "your-api-key",
        "xxxxxxxx",
        "********",
        "hidden",
    }
)


def looks_like_placeholder(value: str) -> bool:
    low = value.lower()
    return (
        low in _PLACEHOLDER_WORDS
        or len(set(low)) <= 2
        or "xxxx" in low
        or "****" in low
        or "..." in low
        or low.startswith(("$", "%(", "{{", "<", "your", "my_", "my-"))
        or low.endswith("_here")
    )


# --- National identifiers ------------------------------------------------------
# Each takes the compact value (separators removed, upper case).

# NINO: the first letter is never D, F, I, Q, U or V, the second never
# D, F, I, O, Q, U or V; these pairs are not allocated. (ZZ is HMRC's
# placeholder, but it is what test data and forms carry: kept.)
_NINO_FIRST = frozenset("ABCEGHJKLMNOPRSTWXYZ")
_NINO_SECOND = frozenset("ABCEGHJKLMNPRSTWXYZ")
_NINO_UNALLOCATED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN"})


def uk_nino_ok(value: str) -> bool:
    return (
        len(value) == 9
        and value[0] in _NINO_FIRST
        and value[1] in _NINO_SECOND
        and value[:2] not in _NINO_UNALLOCATED
        and value[2:8].isdigit()
        and value[8] in "ABCD"
    )


def uk_nhs_ok(digits: str) -> bool:
    """Modulus 11 with weights 10..2; a remainder giving 10 is never issued."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def iso7064_mod11_10(digits: str) -> int:
    """The check digit of ISO 7064 MOD 11,10 (German tax id)."""
    product = 10
    for ch in digits:
        total = (int(ch) + product) % 10 or 10
        product = total * 2 % 11
    return (11 - product) % 10


def de_tax_id_ok(digits: str) -> bool:
    """Steuer-ID: 11 digits, no leading 0; in the first ten one digit occurs
    two or three times (never three in a row), the others at most once."""
    if len(digits) != 11 or not digits.isdigit() or digits[0] == "0":
        return False
    counts = Counter(digits[:10])
    repeated = [d for d, n in counts.items() if n > 1]
    if len(repeated) != 1 or counts[repeated[0]] > 3:
        return False
    if counts[repeated[0]] == 3 and repeated[0] * 3 in digits[:10]:
        return False
    return iso7064_mod11_10(digits[:10]) == int(digits[10])


def fr_nir_ok(value: str) -> bool:
    """INSEE/NIR: sex, year, month, department (2A/2B for Corsica), commune,
    order, then a key of 97 minus the number modulo 97."""
    if len(value) != 15 or value[0] not in "12":
        return False
    month = value[3:5]
    if not month.isdigit() or not ("01" <= month <= "12" or "20" <= month <= "42" or month >= "50"):
        return False
    body, key = value[:13], value[13:]
    if not key.isdigit():
        return False
    # Corsica: 2A and 2B read as 19 and 18; some issuers also subtract 1 or 2
    # million (both conventions are in use, either key is accepted).
    offsets: tuple[int, ...] = (0,)
    if body[5:7] in ("2A", "2B"):
        offsets = (0, 1000000) if body[5:7] == "2A" else (0, 2000000)
        body = body[:5] + ("19" if body[5:7] == "2A" else "18") + body[7:]
    if not body.isdigit():
        return False
    return any(97 - (int(body) - offset) % 97 == int(key) for offset in offsets)


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_ok(value: str) -> bool:
    """DNI: eight digits and the letter of their value modulo 23."""
    return len(value) == 9 and value[:8].isdigit() and _DNI_LETTERS[int(value[:8]) % 23] == value[8]


def es_nie_ok(value: str) -> bool:
    """NIE: X, Y or Z (read as 0, 1, 2), seven digits and the DNI letter."""
    return len(value) == 9 and value[0] in "XYZ" and es_dni_ok(str("XYZ".index(value[0])) + value[1:])


# The value of a character in an odd position: digits 0-9, then letters A-Z
# (A-J weigh as 0-9).
_CF_ODD_DIGITS = (1, 0, 5, 7, 9, 13, 15, 17, 19, 21)
_CF_ODD = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        (*_CF_ODD_DIGITS, *_CF_ODD_DIGITS, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23),
        strict=True,
    )
)


def it_fiscal_code_ok(value: str) -> bool:
    """Codice fiscale: the 16th character is a check letter over the first 15
    (odd positions through a table, even ones by their value)."""
    if len(value) != 16 or not value.isalnum() or not value.isascii():
        return False
    total = 0
    for i, ch in enumerate(value[:15]):
        if i % 2 == 0:
            total += _CF_ODD[ch]
        else:
            total += int(ch) if ch.isdigit() else ord(ch) - 65
    return chr(65 + total % 26) == value[15]


def nl_bsn_ok(digits: str) -> bool:
    """BSN: the "11-proef", weights 9..2 and -1, sum divisible by 11."""
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits, (9, 8, 7, 6, 5, 4, 3, 2, -1), strict=True))
    return total % 11 == 0


def br_cpf_ok(digits: str) -> bool:
    """CPF: two check digits (weights 10..2, then 11..2, modulo 11)."""
    if len(digits) != 11 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    for n in (9, 10):
        total = sum(int(d) * w for d, w in zip(digits[:n], range(n + 1, 1, -1), strict=True))
        check = total * 10 % 11 % 10
        if check != int(digits[n]):
            return False
    return True


def us_itin_ok(digits: str) -> bool:
    """ITIN: 9XX-GG-XXXX, the group GG in 50-65, 70-88, 90-92 or 94-99."""
    if len(digits) != 9 or not digits.isdigit() or digits[0] != "9":
        return False
    group = int(digits[3:5])
    return 50 <= group <= 65 or 70 <= group <= 88 or 90 <= group <= 92 or 94 <= group <= 99
