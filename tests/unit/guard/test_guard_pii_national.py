"""National identifiers, phone shapes and card brands added for issue #11:
each valid value is found (and only it), each value failing its checksum or
issuance rules is not, and identifiers without a distinctive shape count
only after their keyword. Both engines (Hyperscan prefilter and plain re)."""

from __future__ import annotations

import pytest

from extproc.guard import _multi
from extproc.guard.pii import BUILTIN_ENTITIES, PiiConfig, PiiScanner, StreamSanitizer

ENGINES = ["re", "hyperscan"] if _multi.HAVE_HYPERSCAN else ["re"]


@pytest.fixture(scope="module", params=ENGINES)
def scanner(request: pytest.FixtureRequest) -> PiiScanner:
    return PiiScanner(PiiConfig(entities=dict.fromkeys(BUILTIN_ENTITIES, "redact")), engine=request.param)


def found(scanner: PiiScanner, text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in scanner.find(text)]


VALID = [
    # (entity, text, value)
    ("UK_NINO", "NI number AB123456C on file", "AB123456C"),
    ("UK_NINO", "nino: AB 12 34 56 C.", "AB 12 34 56 C"),
    ("UK_NINO", "her NINO is JG 103759 A", "JG 103759 A"),
    ("UK_NHS", "NHS number 943 476 5919", "943 476 5919"),
    ("UK_NHS", "My NHS no. is 9434765919.", "9434765919"),
    ("DE_TAX_ID", "Steuer-ID: 86095742719", "86095742719"),
    ("DE_TAX_ID", "Meine Steueridentifikationsnummer lautet 47 036 892 816.", "47 036 892 816"),
    ("FR_NIR", "NIR 255081416802538", "255081416802538"),
    ("FR_NIR", "numéro de sécurité sociale : 2 55 08 14 168 025 38", "2 55 08 14 168 025 38"),
    ("FR_NIR", "sécu 269054958815780 ok", "269054958815780"),
    ("ES_NIF", "DNI 12345678Z", "12345678Z"),
    ("ES_NIF", "mi NIF es 12345678-Z.", "12345678-Z"),
    ("ES_NIE", "NIE X1234567L", "X1234567L"),
    ("IT_FISCAL_CODE", "codice fiscale RSSMRA85T10A562S", "RSSMRA85T10A562S"),
    ("NL_BSN", "Mijn BSN is 111222333.", "111222333"),
    ("NL_BSN", "burgerservicenummer: 1112.22.333", "1112.22.333"),
    ("BR_CPF", "CPF 529.982.247-25", "529.982.247-25"),
    ("BR_CPF", "meu CPF: 52998224725", "52998224725"),
    ("US_ITIN", "ITIN 912-70-1234", "912-70-1234"),
    ("US_ITIN", "taxpayer identification number 912701234", "912701234"),
    ("PASSPORT", "passport number: C01X00T47", "C01X00T47"),
    ("PASSPORT", "Reisepassnummer C01X00T47 gültig", "C01X00T47"),
    ("PASSPORT", "numéro de passeport : 12AB34567", "12AB34567"),
]


@pytest.mark.parametrize(("entity", "text", "value"), VALID)
def test_valid_identifiers_are_found(scanner: PiiScanner, entity: str, text: str, value: str) -> None:
    assert found(scanner, text) == [(entity, value)]


INVALID = [
    "NI number QQ123456C",  # Q never starts a NINO
    "NI number AO123456C",  # O never second
    "NI number GB123456A",  # unallocated prefix
    "NI number AB123456E",  # suffix A-D only
    "NHS number 943 476 5918",  # modulus 11 fails
    "Steuer-ID: 86095742718",  # check digit
    "Steuer-ID: 12345678903",  # no digit repeated in the first ten
    "Steuer-ID: 11112345678",  # one digit four times
    "Steuer-ID: 01234567891",  # leading zero
    "NIR 255081416802539",  # key
    "NIR 355081416802538",  # sex digit
    "DNI 12345678A",  # letter
    "NIE X1234567A",
    "codice fiscale RSSMRA85T10A562T",  # check letter
    "Mijn BSN is 111222334.",  # 11-proef
    "CPF 529.982.247-26",
    "CPF 111.111.111-11",  # repeated digits pass the checks, never issued
    "ITIN 912-89-1234",  # group 89 is never issued
    "ITIN 912-93-1234",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_identifiers_are_not_found(scanner: PiiScanner, text: str) -> None:
    assert found(scanner, text) == []


@pytest.mark.parametrize(
    "text",
    [
        "order 111222333 shipped",  # a valid BSN without its keyword
        "invoice 9434765919",  # a valid NHS number without "NHS"
        "id 86095742719",  # a valid Steuer-ID without its keyword
        "ref 912701234",  # a valid ITIN without dashes or keyword
        "code C01X00T47",  # passport-shaped, no passport word
        "BSN for order 111222333",  # the keyword belongs to something else
        "passport expires 2031-05-12",  # the passport word, no number after it
        "passport photo 35x45mm",
    ],
)
def test_keyword_identifiers_need_their_keyword(scanner: PiiScanner, text: str) -> None:
    assert found(scanner, text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("call (476)792-9423x23670 now", "(476)792-9423x23670"),
        ("tel 001-761-847-5005x800", "001-761-847-5005x800"),
        ("206.269.0743x9150", "206.269.0743x9150"),
        ("+1-780-563-6083x7783", "+1-780-563-6083x7783"),
        ("office 415-555-0123 ext. 12", "415-555-0123 ext. 12"),
        ("(511)706-0943x20982", "(511)706-0943x20982"),  # N11 area, but bracketed with an extension
        ("Telefon 07682137168", "07682137168"),
        ("0140422902", "0140422902"),  # French national number, no separators
        ("phone: 8233565229", "8233565229"),
        ("Chiamami al 3547987593", "3547987593"),
        ("Bel me op 0612345678", "0612345678"),
        ("Ligue 35 0698-2299", "35 0698-2299"),
        ("(011)-5423676", "(011)-5423676"),
        ("Customer (+44161 496 0927) wants a refund", "+44161 496 0927"),
    ],
)
def test_phone_shapes(scanner: PiiScanner, text: str, value: str) -> None:
    assert found(scanner, text) == [("PHONE", value)]


@pytest.mark.parametrize(
    "text",
    [
        "order 8233565229 shipped",  # bare digits, no phone word
        "Please call me about order 8233565229",  # the phone word belongs to the order
        "311-555-0123",  # N11 area code, plain
        "epoch 1715524200",
        "NHS number 943 476 5918",  # a failed NHS check is not a phone number
        "0000123456",  # zero-padded id
    ],
)
def test_phone_near_misses(scanner: PiiScanner, text: str) -> None:
    assert [e for e, _ in found(scanner, text)] == []


@pytest.mark.parametrize(
    "value",
    [
        "3528000000000007",  # JCB 3528-3589
        "3589 0000 0000 0003",
        "180000000000002",  # JCB, 15 digits
        "213100000000001",
        "5018 0000 0009",  # Maestro, 12 digits
        "36000000000008",  # Diners, 14 digits
        "3800 000000 0006",  # Diners 38, 14 digits
        "2221000000000009",  # Mastercard 2-series
        "6200000000000005",  # UnionPay
    ],
)
def test_card_brands(scanner: PiiScanner, value: str) -> None:
    assert found(scanner, f"card {value} ok") == [("CREDIT_CARD", value)]


@pytest.mark.parametrize(
    "text",
    ["card 3528000000000008", "FR82 3000 6000 0112 3456 7890 189"],  # bad Luhn; a bad IBAN's middle
)
def test_card_near_misses(scanner: PiiScanner, text: str) -> None:
    assert found(scanner, text) == []


def test_new_entities_are_selectable_alone() -> None:
    scanner = PiiScanner(PiiConfig(entities={"NL_BSN": "mask"}))
    text = "BSN 111222333, NHS number 943 476 5919, mail a@example.com"
    assert found(scanner, text) == [("NL_BSN", "111222333")]
    assert scanner.sanitize(text).text == "BSN *****2333, NHS number 943 476 5919, mail a@example.com"


def test_streams_reproduce_one_shot_scans(scanner: PiiScanner) -> None:
    text = " ".join(t for _, t, _ in VALID) + " call (476)792-9423x23670, Telefon 07682137168. " + " ".join(INVALID)
    expected = scanner.sanitize(text).text
    for step in (1, 3, 7):
        stream = StreamSanitizer(scanner)
        out = "".join(stream.feed(text[i : i + step]) for i in range(0, len(text), step)) + stream.flush()
        assert out == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("My phone number is (351) 935 181 909.", "(351) 935 181 909"),
        ("Tel.: 8 (865) 797-54-32", "8 (865) 797-54-32"),
        ("telefoon 08/ 718 03 34", "08/ 718 03 34"),
        ("Call me at 792 601 815 tomorrow", "792 601 815"),
        ("mobile: 26018159", "26018159"),
    ],
)
def test_keyword_led_phones_in_any_grouping(scanner: PiiScanner, text: str, value: str) -> None:
    assert found(scanner, text) == [("PHONE", value)]


@pytest.mark.parametrize(
    "text",
    [
        "My phone broke on 12.05.2024 and again in 2025",  # a date after the word is a date
        "792 601 815 tomorrow",  # the same grouping without a phone word
        "phone order 792 601 815",  # the word belongs to an order
    ],
)
def test_keyword_led_phone_near_misses(scanner: PiiScanner, text: str) -> None:
    assert found(scanner, text) == []


def test_card_digits_inside_a_hash_are_not_a_card(scanner: PiiScanner) -> None:
    # The same Luhn-valid digits alone are a card; glued into hex they are not.
    assert found(scanner, "id 6011000000000004 ok") == [("CREDIT_CARD", "6011000000000004")]
    text = "sha 3491b71ddfe3b236531351eb1a9fbc1b4171347a6011000000000004c06dae499fd"
    assert found(scanner, text) == []


def test_national_identifiers_are_opt_in() -> None:
    from extproc.guard.detectors import NATIONAL_ENTITIES

    default = PiiScanner(PiiConfig())
    assert not set(NATIONAL_ENTITIES) & set(default.entities)
    assert "PHONE" in default.entities and "CREDIT_CARD" in default.entities
    assert found(default, "BSN 111222333, NIE X1234567L") == []
    listed = PiiScanner(PiiConfig(entities={"NL_BSN": "redact", "ES_NIE": "redact"}))
    assert found(listed, "BSN 111222333, NIE X1234567L") == [("NL_BSN", "111222333"), ("ES_NIE", "X1234567L")]
