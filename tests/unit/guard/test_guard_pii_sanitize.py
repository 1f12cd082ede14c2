"""Actions (redact, mask, pseudonymize, block), the vault, and no PII in reprs."""

from __future__ import annotations

import pytest

from extproc.guard.pii import (
    Finding,
    PiiConfig,
    PiiScanner,
    PseudonymVault,
    Redaction,
    StreamRestorer,
    StreamSanitizer,
    mask,
)
from tests.unit.guard.samples import JWT, PEM


def scanner_with(**actions) -> PiiScanner:
    return PiiScanner(PiiConfig(entities=actions))


def test_redact_numbers_per_entity_and_reuses_placeholders():
    scanner = PiiScanner(PiiConfig())
    result = scanner.sanitize("a@example.com, b@example.com, a@example.com, 10.0.0.1")
    assert result.text == "[EMAIL_1], [EMAIL_2], [EMAIL_1], [IPV4_1]"
    assert result.counts == {"EMAIL": 3, "IPV4": 1}
    assert result.blocked == []


def test_vault_keeps_numbering_across_messages_of_a_request():
    scanner = PiiScanner(PiiConfig())
    vault = PseudonymVault()
    first = scanner.sanitize("from a@example.com", vault)
    second = scanner.sanitize("to b@example.com cc a@example.com", vault)
    assert first.text == "from [EMAIL_1]"
    assert second.text == "to [EMAIL_2] cc [EMAIL_1]"
    # Without a vault every call starts again.
    assert scanner.sanitize("to b@example.com").text == "to [EMAIL_1]"


def test_redacted_values_are_not_restorable():
    scanner = PiiScanner(PiiConfig())
    vault = PseudonymVault()
    out = scanner.sanitize("mail a@example.com", vault).text
    assert vault.restore(out) == out
    assert len(vault) == 0


def test_mask():
    scanner = scanner_with(CREDIT_CARD="mask", EMAIL="mask", US_SSN="mask", PHONE="mask")
    text = "card 4111111111111111, 4111 1111 1111 1111, mail jane.doe@example.com, ssn 123-45-6789, tel (212) 555-1234"
    assert scanner.sanitize(text).text == (
        "card ************1111, **** **** **** 1111, mail ********@example.com, ssn ***-**-6789, tel (***) ***-1234"
    )


@pytest.mark.parametrize(
    "value, entity, expected",
    [
        ("abcd", "GENERIC_SECRET", "****"),
        ("abcde", "GENERIC_SECRET", "*bcde"),
        ("a\\nbcdefg", "PRIVATE_KEY", "*\\n**defg"),
        ("x@y.io", "EMAIL", "*@y.io"),
    ],
)
def test_mask_function(value, entity, expected):
    assert mask(value, entity) == expected


def test_pseudonymize_and_restore():
    scanner = scanner_with(EMAIL="pseudonymize", PHONE="pseudonymize", CREDIT_CARD="redact")
    vault = PseudonymVault()
    text = "Write to jane@example.com or call (212) 555-1234; card 4111 1111 1111 1111."
    result = scanner.sanitize(text, vault)
    assert result.text == "Write to [EMAIL_1] or call [PHONE_1]; card [CREDIT_CARD_1]."
    answer = "I will email [EMAIL_1] and phone [PHONE_1] about [CREDIT_CARD_1] and [EMAIL_9]."
    assert vault.restore(answer) == (
        "I will email jane@example.com and phone (212) 555-1234 about [CREDIT_CARD_1] and [EMAIL_9]."
    )
    assert len(vault) == 2


def test_block_reports_and_leaves_text():
    scanner = scanner_with(PRIVATE_KEY="block", EMAIL="redact", CREDIT_CARD="block")
    text = f"mail a@example.com\n{PEM}\ncard 4111111111111111 and 5555555555554444"
    result = scanner.sanitize(text)
    assert result.blocked == ["PRIVATE_KEY", "CREDIT_CARD"]
    assert result.counts == {"EMAIL": 1, "PRIVATE_KEY": 1, "CREDIT_CARD": 2}
    assert result.text == text.replace("a@example.com", "[EMAIL_1]")


def test_nothing_found_returns_the_same_text():
    scanner = PiiScanner(PiiConfig())
    text = "nothing to see here, version 1.2.3.4 on 2024-05-12"
    result = scanner.sanitize(text)
    assert result.text is text and result.counts == {} and result.blocked == []


def test_no_raw_values_in_reprs_or_errors():
    scanner = scanner_with(EMAIL="pseudonymize", JWT="block")
    vault = PseudonymVault()
    secret = "jane.doe@example.com"
    result = scanner.sanitize(f"{secret} {JWT}", vault)
    stream = StreamSanitizer(scanner, vault)
    stream.feed(f"hello {secret} and {JWT} ")
    restorer = StreamRestorer(vault)
    restorer.feed("[EMAIL_")
    reprs = [repr(x) for x in (scanner, vault, result, stream, restorer, *scanner.find(secret))]
    for r in reprs:
        assert secret not in r and "jane" not in r and JWT[:20] not in r
    assert "counts" in repr(result) and "text" not in repr(result)
    stream.flush()
    with pytest.raises(RuntimeError) as info:
        stream.feed(secret)
    assert secret not in str(info.value)
    assert repr(Finding("EMAIL", 0, 5)) == "Finding(entity='EMAIL', start=0, end=5)"
    assert isinstance(result, Redaction)


def test_placeholders_for_custom_entities():
    scanner = PiiScanner(PiiConfig(custom=[{"name": "TICKET", "pattern": r"TCK-\d{4}", "action": "pseudonymize"}]))
    vault = PseudonymVault()
    out = scanner.sanitize("see TCK-1234 and TCK-9999", vault).text
    assert out == "see [TICKET_1] and [TICKET_2]"
    assert vault.restore(out) == "see TCK-1234 and TCK-9999"


@pytest.mark.parametrize(
    "chunks",
    [
        ["Hi [EMA", "IL_1], bye"],
        ["Hi [", "EMAIL_1", "]", ", bye"],
        ["Hi [EMAIL_1", "], bye"],
        ["Hi [E", "MAIL_1] [EMA", "IL_1]"],
        ["a [not a placeholder", "] b [x"],
        ["[" * 3, "EMAIL_1]"],
    ],
)
def test_stream_restorer(chunks):
    scanner = scanner_with(EMAIL="pseudonymize")
    vault = PseudonymVault()
    scanner.sanitize("x@example.com", vault)
    restorer = StreamRestorer(vault)
    out = "".join(restorer.feed(c) for c in chunks) + restorer.flush()
    assert out == vault.restore("".join(chunks))


def test_stream_restorer_releases_long_brackets():
    vault = PseudonymVault()
    restorer = StreamRestorer(vault)
    assert restorer.feed("[" + "A" * 100) == "[" + "A" * 100
    assert restorer.feed("[ABC") == ""
    assert restorer.flush() == "[ABC"
