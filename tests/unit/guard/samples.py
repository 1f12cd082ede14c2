"""Known-good and known-bad values shared by the guard tests (all synthetic:
documentation examples, issuer test numbers, example.com addresses)."""

from __future__ import annotations

# A valid HS256 token ({"sub": "1234567890", "name": "Jane"}).
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
    "bLP6VDLpvP8ZzllnDlSzEMCEh3ve1Csg44Mi4xnOpDQ"
)

PEM_BODY = "\n".join(
    [
        "MIIEpAIBAAKCAQEA2a2rwplBQLF29amygykEMmYz0+Kcj3bKBp29P2rFj7TnzBfO",
        "W8RTXlvbUDtYs4PQbQ8DXmZTiH3eDW1dbeHkYNPBxjNOsJuVL2YPBl7n+xq4u5Nq",
        "6VxW3kw8GVL+M3BLUtNIvR9K0ZkRqMZJcwSVuTpKCYXPz0Qv7l8KqZ3pnlhP2Cj0",
    ]
)
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"

CARDS = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5500 0000 0000 0004",
    "5555555555554444",
    "2223000048400011",
    "3782 822463 10005",
    "371449635398431",
    "6011 1111 1111 1117",
    "3056 930902 5904",
    "3530111333300000",
    "4012888888881881",
]

IBANS = [
    "DE89370400440532013000",
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91ABNA0417164300",
    "ES9121000418450200051332",
    "IT60X0542811101000000123456",
    "CH93 0076 2011 6238 5295 7",
    "BE68539007547034",
    "NO9386011117947",
]

# One value per built-in entity, for property tests (each is detected as
# that entity whatever plain text surrounds it, given a space on each side).
PII_VALUES = [
    ("EMAIL", "jane.doe@example.com"),
    ("EMAIL", "ops+alerts@mail.example.org"),
    ("PHONE", "(415) 555-0123"),
    ("PHONE", "+44 20 7946 0958"),
    ("PHONE", "06 12 34 56 78"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "378282246310005"),
    ("US_SSN", "123-45-6789"),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IPV4", "192.168.10.20"),
    ("IPV6", "2001:db8::8a2e:370:7334"),
    ("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
    ("JWT", JWT),
    ("PRIVATE_KEY", PEM),
    ("GENERIC_SECRET", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("GENERIC_SECRET", "sk-proj-Zx81kPq0LmN3vB7tR2yW5uE4"),
]

# Text fragments with context-dependent detections.
PII_PHRASES = [
    ("AWS_SECRET_KEY", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("BEARER_TOKEN", "Authorization: Bearer abc123DEF456ghi789"),
    ("GENERIC_SECRET", "password=Hunter42!x"),
]
