"""Every built-in detector: true positives and the near misses it must leave."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from extproc.guard import _multi
from extproc.guard.pii import PiiConfig, PiiScanner
from tests.unit.guard.samples import CARDS, IBANS, JWT, PEM, PEM_BODY

ENGINES = ["hyperscan", "re"] if _multi.HAVE_HYPERSCAN else ["re"]


@pytest.fixture(scope="module", params=ENGINES)
def scanner(request):
    return PiiScanner(PiiConfig(), engine=request.param)


def found(scanner: PiiScanner, text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in scanner.find(text)]


def assert_found(scanner, entity, value, text=None):
    text = text if text is not None else f"see {value} here"
    assert (entity, value) in found(scanner, text), found(scanner, text)


def assert_clean(scanner, text, entity=None):
    hits = found(scanner, text)
    if entity is not None:
        hits = [h for h in hits if h[0] == entity]
    assert hits == [], hits


# --- EMAIL -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "john.doe@example.com",
        "a+tag@sub.example.co.uk",
        "first_last@example.io",
        "josé.garcía@example.es",
        "x@example.museum",
    ],
)
def test_email(scanner, value):
    assert_found(scanner, "EMAIL", value)


def test_email_at_sentence_end(scanner):
    assert found(scanner, "Write to jane@example.com.") == [("EMAIL", "jane@example.com")]


@pytest.mark.parametrize(
    "text",
    [
        "ping @john on slack",
        "user@localhost",
        "a..b@example.com",
        "email@123.123",
        "name@example",
        ".lead@example.com",
        "trail.@example.com",
        "decorator @property def x",
    ],
)
def test_email_near_misses(scanner, text):
    assert_clean(scanner, text, "EMAIL")


# --- PHONE -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "(212) 555-1234",
        "212-555-1234",
        "212.555.1234",
        "212 555 1234",
        "+1 212 555 1234",
        "1-800-555-0199",
        "+1 (212) 555-1234",
        "+14155552671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "020 7946 0958",
        "07700 900123",
        "(020) 7946 0958",
        "01 23 45 67 89",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "+33 6 12 34 56 78",
        "030 12345678",
        "+49 30 12345678",
        "089/1234567",
        "0171-1234567",
        "(030) 123 456 78",
    ],
)
def test_phone(scanner, value):
    assert_found(scanner, "PHONE", value)


@pytest.mark.parametrize(
    "text",
    [
        "on 2023-10-12 at noon",
        "due 12/05/2024",
        "version 1.2.3",
        "id 1234567890",
        "order 4155552671",
        "at 10:30:45",
        "pi is 3.14159265",
        "01-02-2023",
        "+1 2",
        "call 911",
        "+0 123 456 789",
        "5 + 12345678 = x",
        "ISBN 978-3-16-148410-0",
        "range 100-200-3000",
        "0123 4567",
        "+999 123 456 789",
        "2024.01.15.123",
    ],
)
def test_phone_near_misses(scanner, text):
    assert_clean(scanner, text, "PHONE")


def test_invalid_iban_tail_is_not_a_phone(scanner):
    assert_clean(scanner, "iban DE89 3704 0044 0532 0130 01 thanks")


# --- CREDIT_CARD -----------------------------------------------------------


@pytest.mark.parametrize("value", CARDS)
def test_card(scanner, value):
    assert_found(scanner, "CREDIT_CARD", value)


def _luhn_breaking(digits: str) -> str:
    from extproc.guard.validators import luhn_ok

    for d in "0123456789":
        candidate = digits[:-1] + d
        if not luhn_ok(candidate):
            return candidate
    raise AssertionError


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "order 1234567812345678",  # order id, Luhn fails
        "ref " + _luhn_breaking("4000123412341234"),
        "0000000000000000",  # Luhn-valid, no issuer
        "9999 9999 9999 9995",
        "pi=3.4111111111111111",  # a decimal
        "4111 1111-1111 1111",  # mixed separators
        "41111111111111111111111",  # too long
    ],
)
def test_card_near_misses(scanner, text):
    assert_clean(scanner, text, "CREDIT_CARD")


def test_random_order_ids_failing_luhn(scanner):
    import random

    from extproc.guard.validators import luhn_ok

    rng = random.Random(7)
    ids = []
    while len(ids) < 200:
        candidate = "4" + "".join(rng.choice("0123456789") for _ in range(15))
        if not luhn_ok(candidate):
            ids.append(candidate)
    assert_clean(scanner, " ".join(ids), "CREDIT_CARD")


# --- US_SSN ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["123-45-6789", "123 45 6789", "078-05-1120", "899-99-9999"])
def test_ssn(scanner, value):
    assert_found(scanner, "US_SSN", value)


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "987-65-4321",
        "123-00-4567",
        "123-45-0000",
        "123456789",
        "123-45-67890",
        "1123-45-6789",
        "123-45 6789",
    ],
)
def test_ssn_near_misses(scanner, text):
    assert_clean(scanner, text, "US_SSN")


def test_ssn_unformatted_is_opt_in():
    scanner = PiiScanner(PiiConfig(ssn_unformatted=True))
    assert found(scanner, "ssn 123456789 ok") == [("US_SSN", "123456789")]
    assert_clean(scanner, "ssn 666456789 ok")


# --- IBAN ------------------------------------------------------------------


@pytest.mark.parametrize("value", IBANS)
def test_iban(scanner, value):
    assert_found(scanner, "IBAN", value)


def test_iban_followed_by_more_groups(scanner):
    text = "IBAN DE89 3704 0044 0532 0130 00 1234 please"
    assert ("IBAN", "DE89 3704 0044 0532 0130 00") in found(scanner, text)


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # checksum
        "DE88370400440532013000",  # checksum
        "XX89370400440532013000",  # no such country
        "DE89 3704 0044 0532 0130 0",  # too short
        "GB82WEST1234569876543",  # too short
        "de89370400440532013000",  # lower case
    ],
)
def test_iban_near_misses(scanner, text):
    assert_clean(scanner, text, "IBAN")


# --- IPV4 / IPV6 -----------------------------------------------------------


@pytest.mark.parametrize("value", ["192.168.1.1", "10.0.0.255", "8.8.8.8", "255.255.255.0"])
def test_ipv4(scanner, value):
    assert_found(scanner, "IPV4", value)


def test_ipv4_at_sentence_end(scanner):
    assert found(scanner, "Ping 8.8.4.4.") == [("IPV4", "8.8.4.4")]


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "01.02.03.04",
        "v1.2.3.4",
        "V10.0.0.1",
        "version 1.2.3.4",
        "Version: 2.0.0.1",
        "release 10.2.0.1",
        "build 1.2.3.4",
        "abc1.2.3.4",
        "1.2.3.4567",
    ],
)
def test_ipv4_near_misses(scanner, text):
    assert_clean(scanner, text, "IPV4")


def test_version_like_ips_are_reported_when_configured():
    scanner = PiiScanner(PiiConfig(ignore_version_like_ips=False))
    assert found(scanner, "running v1.2.3.4 now") == [("IPV4", "1.2.3.4")]
    assert found(scanner, "version 1.2.3.4") == [("IPV4", "1.2.3.4")]
    assert_clean(scanner, "abc1.2.3.4")


@pytest.mark.parametrize(
    "value",
    [
        "2001:db8::8a2e:370:7334",
        "fe80::1",
        "::ffff:192.0.2.128",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "2001:db8:0:0:1::1",
    ],
)
def test_ipv6(scanner, value):
    assert_found(scanner, "IPV6", value)


@pytest.mark.parametrize(
    "text",
    [
        "at 12:30:45",
        "std::vector<int>",
        "dead::beef",
        "00:1A:2B:3C:4D:5E",
        "a::b",
        "Foo::Bar2",
        "::",
        "1:2:3:4:5:6:7:8:9",
    ],
)
def test_ipv6_near_misses(scanner, text):
    assert_clean(scanner, text, "IPV6")


# --- Cloud and API credentials ---------------------------------------------


@pytest.mark.parametrize("value", ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"])
def test_aws_access_key(scanner, value):
    assert_found(scanner, "AWS_ACCESS_KEY", value)


@pytest.mark.parametrize(
    "text", ["AKIAIOSFODNN7EXAMPL", "XAKIAIOSFODNN7EXAMPLE", "akiaiosfodnn7example", "AKIAIOSFODNN7EXAMPLEX"]
)
def test_aws_access_key_near_misses(scanner, text):
    assert_clean(scanner, text, "AWS_ACCESS_KEY")


SECRET40 = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    "text",
    [
        f"aws_secret_access_key = {SECRET40}",
        f"AWS_SECRET_ACCESS_KEY={SECRET40}",
        f"My AWS secret is {SECRET40}",
        f'{{"aws": {{"secret": "{SECRET40}"}}}}',
    ],
)
def test_aws_secret_key_with_context(scanner, text):
    assert ("AWS_SECRET_KEY", SECRET40) in found(scanner, text)


def test_aws_secret_key_needs_context_unless_entropy_enabled(scanner):
    text = f"value {SECRET40} end"
    assert_clean(scanner, text)
    entropy = PiiScanner(PiiConfig(aws_secret_entropy=True), engine=scanner.engine)
    assert found(entropy, "value Zx81kPq0LmN3vB7tR2yW5uE4aB9cD1eF6gH2iJ3k end") == [
        ("AWS_SECRET_KEY", "Zx81kPq0LmN3vB7tR2yW5uE4aB9cD1eF6gH2iJ3k")
    ]
    # Low entropy or path-like 40-character runs stay clean even then.
    assert_clean(entropy, "ThisIsAVeryLongCamelCaseIdentifierName12")
    assert_clean(entropy, "/usr/local/lib/python3/site/packages/abc")


@pytest.mark.parametrize(
    "text",
    [
        "aws sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",  # hex digest
        "aws key " + "a" * 40,
    ],
)
def test_aws_secret_key_near_misses(scanner, text):
    assert_clean(scanner, text, "AWS_SECRET_KEY")


def test_private_key_block(scanner):
    text = f"my key:\n{PEM}\nthanks"
    assert found(scanner, text) == [("PRIVATE_KEY", PEM)]


@pytest.mark.parametrize("kind", ["", "EC ", "OPENSSH ", "ENCRYPTED ", "PGP "])
def test_private_key_kinds(scanner, kind):
    block_suffix = " BLOCK" if kind == "PGP " else ""
    pem = f"-----BEGIN {kind}PRIVATE KEY{block_suffix}-----\n{PEM_BODY}\n-----END {kind}PRIVATE KEY{block_suffix}-----"
    assert found(scanner, f"x {pem} y") == [("PRIVATE_KEY", pem)]


def test_truncated_private_key(scanner):
    text = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}"
    assert found(scanner, text) == [("PRIVATE_KEY", text)]


def test_private_key_in_json_escapes(scanner):
    text = '{"key": "' + PEM.replace("\n", "\\n") + '"}'
    assert found(scanner, text) == [("PRIVATE_KEY", PEM.replace("\n", "\\n"))]


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
        "Files start with -----BEGIN RSA PRIVATE KEY----- and end with a footer.",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    ],
)
def test_private_key_near_misses(scanner, text):
    assert_clean(scanner, text, "PRIVATE_KEY")


def test_jwt(scanner):
    assert found(scanner, f"token {JWT}.") == [("JWT", JWT)]
    unsigned = JWT.rsplit(".", 1)[0] + "."
    assert found(scanner, f"t={unsigned} ok") == [("JWT", unsigned)]


@pytest.mark.parametrize(
    "text",
    [
        "eyJhbGciOi.not.ajwt",
        "eyJub3QiOiJqc29uIn0.eyJzdWIiOiIxIn0.c2ln",  # header without alg
        "eyJhbGciOiJIUzI1NiJ9x.eyJzdWIiOiIxIn0.c2ln",  # header not base64 JSON
        "eyJhbGciOiJIUzI1NiJ9.eyJub3QganNvbg.c2ln",  # payload not JSON
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln.ZXh0cmE.bW9yZQ",  # five segments (JWE shape)
    ],
)
def test_jwt_near_misses(scanner, text):
    assert_clean(scanner, text, "JWT")


def test_bearer_token(scanner):
    assert found(scanner, "Authorization: Bearer abc123DEF456ghi789") == [("BEARER_TOKEN", "abc123DEF456ghi789")]
    assert found(scanner, "use bearer Zm9vYmFyYmF6cXV4MTIz== now.") == [("BEARER_TOKEN", "Zm9vYmFyYmF6cXV4MTIz==")]
    assert found(scanner, "send Bearer abc123def456.") == [("BEARER_TOKEN", "abc123def456")]


def test_bearer_jwt_is_reported_as_jwt(scanner):
    assert found(scanner, f"Authorization: Bearer {JWT}") == [("JWT", JWT)]


@pytest.mark.parametrize(
    "text",
    [
        "Bearer authentication is described in RFC 6750",
        "a bearer token",
        "Bearer YOUR_TOKEN_HERE",
        "Bearer <token>",
        "Bearer abc",
        "Bearer ${TOKEN}",
    ],
)
def test_bearer_near_misses(scanner, text):
    assert_clean(scanner, text, "BEARER_TOKEN")


@pytest.mark.parametrize(
    "value",
    [
        "sk-proj-Zx81kPq0LmN3vB7tR2yW5uE4",
        "sk-ant-api03-Zx81kPq0LmN3vB7tR2yW5uE4aB9cD",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "gho_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "glpat-Zx81kPq0LmN3vB7tR2yW",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "rk_live_51H8abcDEFghiJKLmnoPQRst",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz12345678",
    ],
)
def test_prefixed_secrets(scanner, value):
    assert_found(scanner, "GENERIC_SECRET", value)


@pytest.mark.parametrize(
    "text, value",
    [
        ("password=Hunter42!x", "Hunter42!x"),
        ("db_password: 'correct-horse-battery-staple-9'", "correct-horse-battery-staple-9"),
        ('"api_key": "Zx81kPq0LmN3vB7tR2yW5"', "Zx81kPq0LmN3vB7tR2yW5"),
        ("client_secret = 8f7d6c5b4a3e2d1c0b9a8f7e", "8f7d6c5b4a3e2d1c0b9a8f7e"),
        ("https://api.example.com/v1?token=AbC123xYz789QwE", "AbC123xYz789QwE"),
        ("X-Api-Key: q8W2e9R4t7Y1u3I5", "q8W2e9R4t7Y1u3I5"),
    ],
)
def test_keyed_secrets(scanner, text, value):
    assert ("GENERIC_SECRET", value) in found(scanner, text)


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens: 4096",
        "tokenizer: bert-base-uncased",
        "password: required",
        "password=${DB_PASSWORD}",
        "api_key = os.environ",
        "sk-learn-is-a-python-library-name",
        "The secret: always be kind",
        "password: <your password>",
        "token: null",
        "secret_santa: true",
        "passwords: ******",
        "sk-" + "a" * 30,
    ],
)
def test_generic_secret_near_misses(scanner, text):
    assert_clean(scanner, text, "GENERIC_SECRET")


def test_prefixed_and_keyed_secret_is_one_finding(scanner):
    text = "api_key=sk-proj-Zx81kPq0LmN3vB7tR2yW5uE4"
    assert found(scanner, text) == [("GENERIC_SECRET", "sk-proj-Zx81kPq0LmN3vB7tR2yW5uE4")]


# --- custom patterns, allow list, entity selection --------------------------


def test_custom_pattern():
    config = PiiConfig(custom=[{"name": "EMPLOYEE_ID", "pattern": r"EMP-\d{6}", "action": "redact"}])
    scanner = PiiScanner(config)
    assert found(scanner, "ask EMP-123456 or EMP-12345") == [("EMPLOYEE_ID", "EMP-123456")]
    assert scanner.sanitize("ask EMP-123456").text == "ask [EMPLOYEE_ID_1]"


def test_custom_pattern_wins_ties_with_builtins():
    config = PiiConfig(custom=[{"name": "TEST_CARD", "pattern": r"4111 1111 1111 1111"}])
    assert found(PiiScanner(config), "card 4111 1111 1111 1111") == [("TEST_CARD", "4111 1111 1111 1111")]


def test_custom_pattern_flags_and_lookarounds():
    config = PiiConfig(custom=[{"name": "PROJECT", "pattern": r"(?i)(?<![a-z])project\s(?:falcon|eagle)(?!\w)"}])
    scanner = PiiScanner(config)
    assert found(scanner, "about Project Falcon today") == [("PROJECT", "Project Falcon")]
    assert found(scanner, "subproject falcon, project falconry") == []


@pytest.mark.parametrize(
    "custom, message",
    [
        ({"name": "ID", "pattern": r"\d+"}, "bound its repeats"),
        ({"name": "ID", "pattern": r"a{0,3}"}, "empty string"),
        ({"name": "ID", "pattern": r"(unclosed"}, "invalid regex"),
        ({"name": "EMAIL", "pattern": r"x{3}"}, "built-in"),
        ({"name": "lower", "pattern": r"x{3}"}, "upper-case"),
        ({"name": "ID", "pattern": r"x{3}", "action": "shred"}, "action"),
        ({"name": "ID", "pattern": r"x{3}", "extra": 1}, "extra"),
    ],
)
def test_custom_pattern_validation(custom, message):
    with pytest.raises(ValidationError, match=message):
        PiiConfig(custom=[custom])


def test_config_rejects_unknown_entities_and_fields():
    with pytest.raises(ValidationError):
        PiiConfig(entities={"DRIVING_LICENCE": "redact"})
    with pytest.raises(ValidationError):
        PiiConfig(entities={"EMAIL": "erase"})
    with pytest.raises(ValidationError):
        PiiConfig(unknown=True)
    with pytest.raises(ValidationError, match="unique"):
        PiiConfig(custom=[{"name": "A", "pattern": "x{2}"}, {"name": "A", "pattern": "y{2}"}])


def test_only_listed_entities_are_detected():
    scanner = PiiScanner(PiiConfig(entities={"EMAIL": "redact"}))
    assert found(scanner, "a@example.com 4111 1111 1111 1111 10.0.0.1") == [("EMAIL", "a@example.com")]


def test_allow_list(scanner):
    allowing = PiiScanner(PiiConfig(allow=["Support@Example.com", "10.0.0.1"]), engine=scanner.engine)
    text = "mail support@example.com or bob@example.com from 10.0.0.1 or 10.0.0.2"
    assert found(allowing, text) == [("EMAIL", "bob@example.com"), ("IPV4", "10.0.0.2")]


# --- offsets and overlaps ---------------------------------------------------


def test_offsets_survive_non_ascii_text(scanner):
    text = "Grüße 😀 — 北京 ∑ jane@example.com “quoted” 4111 1111 1111 1111 ✓"
    assert found(scanner, text) == [("EMAIL", "jane@example.com"), ("CREDIT_CARD", "4111 1111 1111 1111")]


def test_findings_are_sorted_and_disjoint(scanner):
    text = " ".join([JWT, "a@example.com", PEM, "4111111111111111", "+1 212 555 1234", SECRET40, "aws"])
    findings = scanner.find(text)
    assert findings == sorted(findings, key=lambda f: f.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


def test_empty_text(scanner):
    assert scanner.find("") == []
    assert scanner.sanitize("").text == ""
