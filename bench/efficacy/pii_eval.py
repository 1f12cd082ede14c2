"""PII detection measured on a labelled, Faker-generated corpus.

    .venv/bin/python -m bench.efficacy.pii_eval [--split tune|heldout|both] [--misses N]

The corpus is generated, not stored: Faker (MIT) in eight locales (en_US,
en_GB, de_DE, fr_FR, es_ES, it_IT, nl_NL, pt_BR) supplies names, emails,
phone numbers in each locale's national and international formats (with
extensions in en_US), IBANs, card numbers of every Faker brand and the
identifiers it knows (SSN, ITIN, NIR, DNI/NIE, codice fiscale, BSN, CPF,
passport numbers); the generators below add what it lacks (Mastercard
2-series, UnionPay, JCB 3528-3589, UK NINO and NHS numbers, German tax ids),
each computing its checksum independently of ``extproc.guard.validators``.
Values go into sentences in the locale's language, most with a word that
introduces them ("Telefon:", "my NHS number is"), some without.

Near-miss negatives are values one checksum away from PII (bad Luhn, bad
IBAN check, bad national id checks, never-issued SSN areas, keyword-led
bad checksums) and numbers that are something else: order and invoice ids,
versions, timestamps, hashes, UUIDs, prices, dates, ISBNs, tracking numbers.
Any finding on them is a false positive.

Two splits: ``tune`` (seed 11) is what detectors were adjusted on;
``heldout`` (seed 29) draws other values into the same templates and was
never looked at while tuning. Both are reproducible: same seed, same text.

It runs the real scanner the ``pii`` capability builds (``PiiScanner``,
every built-in entity enabled) and scores per locale and per entity type:
recall (a labelled value counts only when one finding of its entity covers
all of it), precision (findings overlapping a labelled value of their entity,
over all findings, negatives included), and lists misses and false
positives masked (letters and digits past the last four hidden).
"""

from __future__ import annotations

import argparse
import random
import re
import string
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from faker import Faker

from extproc.guard.detectors import BUILTIN_ENTITIES
from extproc.guard.pii import PiiConfig, PiiScanner, mask

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR")
SEEDS = {"tune": 11, "heldout": 29}

# Samples per locale and source.
N_PHONE = 160
N_EMAIL = 40
N_CARD = 8  # per brand
N_IBAN = 40
N_ID = 60  # per national identifier
N_PASSPORT = 30
N_NEGATIVE = 12  # per kind


Span = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Sample:
    locale: str
    kind: str  # the entity, or "negative:<what>"
    text: str
    spans: tuple[Span, ...]


@dataclass(slots=True)
class Score:
    labelled: int = 0
    found: int = 0
    findings: int = 0
    correct: int = 0

    @property
    def recall(self) -> float:
        return self.found / self.labelled if self.labelled else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.findings if self.findings else 1.0


@dataclass(slots=True)
class PiiReport:
    split: str
    samples: int = 0
    negatives: int = 0
    negatives_altered: int = 0
    total: Score = field(default_factory=Score)
    by_locale: dict[str, Score] = field(default_factory=dict)
    by_entity: dict[str, Score] = field(default_factory=dict)
    by_negative: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (samples, altered)
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)


# --- Value generators --------------------------------------------------------


def _luhn_complete(body: str) -> str:
    """``body`` and the Luhn check digit that makes it valid."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str(-total % 10)


def _card_of(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return _luhn_complete(body)


def _group(value: str, sizes: tuple[int, ...], sep: str) -> str:
    out, pos = [], 0
    for size in sizes:
        out.append(value[pos : pos + size])
        pos += size
    if pos < len(value):
        out.append(value[pos:])
    return sep.join(p for p in out if p)


def _format_card(rng: random.Random, number: str) -> str:
    style = rng.choice(("plain", "space", "dash", "space"))
    if style == "plain":
        return number
    sep = " " if style == "space" else "-"
    if len(number) == 15:
        return _group(number, (4, 6, 5), sep)
    if len(number) == 14:
        return _group(number, (4, 6, 4), sep)
    return _group(number, (4, 4, 4, 4, 3), sep)


_FAKER_BRANDS = ("visa13", "visa16", "visa19", "mastercard", "amex", "discover", "diners", "jcb15", "jcb16", "maestro")


def _cards(fake: Faker, rng: random.Random) -> Iterator[str]:
    for brand in _FAKER_BRANDS:
        for _ in range(N_CARD):
            yield _format_card(rng, fake.credit_card_number(card_type=brand))
    own: tuple[tuple[Callable[[], str], int], ...] = (
        (lambda: str(rng.randint(2221, 2720)), 16),  # Mastercard 2-series
        (lambda: "62" + str(rng.randint(0, 9)), rng.choice((16, 19))),  # UnionPay
        (lambda: str(rng.randint(3528, 3589)), 16),  # JCB
    )
    for prefix, length in own:
        for _ in range(N_CARD):
            yield _format_card(rng, _card_of(rng, prefix(), length))


def _iban(fake: Faker, rng: random.Random) -> str:
    iban = str(fake.iban())
    return _group(iban, (4,) * 8, " ") if rng.random() < 0.5 else iban


_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def _nino(fake: Faker, rng: random.Random) -> str:
    while True:
        prefix = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
        if prefix not in ("BG", "GB", "KN", "NK", "NT", "TN"):
            break
    digits = "".join(rng.choice(string.digits) for _ in range(6))
    suffix = rng.choice("ABCD")
    return rng.choice(
        (
            f"{prefix}{digits}{suffix}",
            f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}",
            f"{prefix} {digits} {suffix}",
        )
    )


def _nhs(fake: Faker, rng: random.Random) -> str:
    while True:
        body = "".join(rng.choice(string.digits) for _ in range(9))
        check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(body)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            break
    number = body + str(check)
    return rng.choice((number, _group(number, (3, 3, 4), " "), _group(number, (3, 3, 4), "-")))


def _steuer_id(fake: Faker, rng: random.Random) -> str:
    # Ten digits: nine distinct ones with one of them repeated (twice).
    while True:
        chosen = rng.sample(string.digits, 9)
        body = [*chosen, rng.choice(chosen)]
        rng.shuffle(body)
        if body[0] != "0":
            break
    product = 10
    for ch in body:
        total = (int(ch) + product) % 10 or 10
        product = total * 2 % 11
    number = "".join(body) + str((11 - product) % 10)
    return number if rng.random() < 0.6 else _group(number, (2, 3, 3, 3), " ")


def _nir(fake: Faker, rng: random.Random) -> str:
    number = str(fake.ssn())
    return number if rng.random() < 0.6 else _group(number, (1, 2, 2, 2, 3, 3, 2), " ")


def _cpf(fake: Faker, rng: random.Random) -> str:
    number = str(fake.cpf())
    return number if rng.random() < 0.7 else re.sub(r"[.\-]", "", number)


def _plain(method: str) -> Callable[[Faker, random.Random], str]:
    return lambda fake, rng: str(getattr(fake, method)())


# --- Templates -----------------------------------------------------------------
# {v}: the value; {name}: a Faker name; {label}: the identifier's local name.

_PHONE_T = {
    "en": (
        "Call me at {v} after six.",
        "You can reach {name} on {v}.",
        "Phone: {v}",
        "My mobile number is {v}, text me if I'm late.",
        "{name}, tel. {v}, asked for a callback.",
        "Please update the contact number to {v}.",
        "Customer {name} ({v}) wants a refund.",
    ),
    "de": (
        "Rufen Sie mich unter {v} an.",
        "Telefon: {v}",
        "Sie erreichen {name} unter {v}.",
        "Meine Handynummer ist {v}.",
        "Kontakt: {name}, Tel. {v}",
        "Bitte unter {v} zurückrufen.",
    ),
    "fr": (
        "Appelez-moi au {v} demain.",
        "Téléphone : {v}",
        "Vous pouvez joindre {name} au {v}.",
        "Mon numéro de portable est le {v}.",
        "Contact : {name}, tél. {v}",
        "Merci de rappeler {name} au {v}.",
    ),
    "es": (
        "Llámame al {v} mañana.",
        "Teléfono: {v}",
        "Puede contactar con {name} en el {v}.",
        "Mi móvil es {v}.",
        "Contacto: {name}, tel. {v}",
        "Por favor, devuelva la llamada al {v}.",
    ),
    "it": (
        "Chiamami al {v} domani.",
        "Telefono: {v}",
        "Può contattare {name} al {v}.",
        "Il mio cellulare è {v}.",
        "Contatto: {name}, tel. {v}",
        "Richiamare {name} al numero di telefono {v}.",
    ),
    "nl": (
        "Bel me op {v} morgen.",
        "Telefoon: {v}",
        "U kunt {name} bereiken op telefoonnummer {v}.",
        "Mijn mobiel is {v}.",
        "Contact: {name}, tel. {v}",
        "Graag terugbellen op {v}.",
    ),
    "pt": (
        "Ligue para {v} amanhã.",
        "Telefone: {v}",
        "Você pode falar com {name} pelo {v}.",
        "Meu celular é {v}.",
        "Contato: {name}, tel. {v}",
        "Por favor, retorne a ligação para {v}.",
    ),
}

_EMAIL_T = {
    "en": ("Send it to {v} please.", "My email is {v}.", "{name} <{v}> wrote:", "cc {v} on the reply"),
    "de": ("Schicken Sie es an {v}.", "Meine E-Mail: {v}", "{name} <{v}> schrieb:", "Bitte {v} in Kopie setzen."),
    "fr": ("Envoyez-le à {v}.", "Mon adresse e-mail : {v}", "{name} <{v}> a écrit :", "Mettez {v} en copie."),
    "es": ("Envíalo a {v}.", "Mi correo es {v}.", "{name} <{v}> escribió:", "Pon en copia a {v}."),
    "it": ("Invialo a {v}.", "La mia email è {v}.", "{name} <{v}> ha scritto:", "Metti in copia {v}."),
    "nl": ("Stuur het naar {v}.", "Mijn e-mail is {v}.", "{name} <{v}> schreef:", "Zet {v} in de cc."),
    "pt": ("Envie para {v}.", "Meu e-mail é {v}.", "{name} <{v}> escreveu:", "Coloque {v} em cópia."),
}

_CARD_T = {
    "en": ("Charge card {v}, expiry 09/28.", "My card number is {v}.", "Paid with {v} yesterday.", "card: {v}"),
    "de": (
        "Kartennummer: {v}",
        "Bitte die Karte {v} belasten.",
        "Bezahlt mit {v}.",
        "Kreditkarte {v}, gültig bis 09/28",
    ),
    "fr": ("Numéro de carte : {v}", "Débitez la carte {v}.", "Payé avec {v}.", "Carte bancaire {v}, exp. 09/28"),
    "es": ("Número de tarjeta: {v}", "Cargue la tarjeta {v}.", "Pagado con {v}.", "Tarjeta {v}, caduca 09/28"),
    "it": ("Numero di carta: {v}", "Addebitare la carta {v}.", "Pagato con {v}.", "Carta di credito {v}, scad. 09/28"),
    "nl": ("Kaartnummer: {v}", "Belast de kaart {v}.", "Betaald met {v}.", "Creditcard {v}, geldig tot 09/28"),
    "pt": ("Número do cartão: {v}", "Cobre no cartão {v}.", "Pago com {v}.", "Cartão de crédito {v}, validade 09/28"),
}

_IBAN_T = {
    "en": ("Wire it to IBAN {v}.", "My account: {v}", "Refund to {v} please."),
    "de": ("Bitte auf IBAN {v} überweisen.", "Mein Konto: {v}", "Erstattung an {v}."),
    "fr": ("Virement sur l'IBAN {v}.", "Mon compte : {v}", "Remboursez sur {v}."),
    "es": ("Transfiera al IBAN {v}.", "Mi cuenta: {v}", "Reembolso a {v}."),
    "it": ("Bonifico sull'IBAN {v}.", "Il mio conto: {v}", "Rimborso su {v}."),
    "nl": ("Maak het over naar IBAN {v}.", "Mijn rekening: {v}", "Terugbetalen op {v}."),
    "pt": ("Transfira para o IBAN {v}.", "Minha conta: {v}", "Reembolso para {v}."),
}

_ID_T = {
    "en": ("My {label} is {v}.", "{label}: {v}", "Please update the {label} on file to {v}.", "{name}, {label} {v}"),
    "de": ("Meine {label} lautet {v}.", "{label}: {v}", "Bitte die {label} {v} hinterlegen.", "{name}, {label} {v}"),
    "fr": ("Mon {label} est {v}.", "{label} : {v}", "Merci d'enregistrer le {label} {v}.", "{name}, {label} {v}"),
    "es": ("Mi {label} es {v}.", "{label}: {v}", "Actualice el {label} a {v}.", "{name}, {label} {v}"),
    "it": ("Il mio {label} è {v}.", "{label}: {v}", "Aggiornare il {label} a {v}.", "{name}, {label} {v}"),
    "nl": ("Mijn {label} is {v}.", "{label}: {v}", "Graag het {label} {v} registreren.", "{name}, {label} {v}"),
    "pt": ("Meu {label} é {v}.", "{label}: {v}", "Atualize o {label} para {v}.", "{name}, {label} {v}"),
}

_PASSPORT_LABEL = {
    "en": "passport number",
    "de": "Reisepassnummer",
    "fr": "numéro de passeport",
    "es": "número de pasaporte",
    "it": "numero di passaporto",
    "nl": "paspoortnummer",
    "pt": "número do passaporte",
}

# Per locale: (entity, generator, local names of the identifier).
_IDS: dict[str, tuple[tuple[str, Callable[[Faker, random.Random], str], tuple[str, ...]], ...]] = {
    "en_US": (
        ("US_SSN", _plain("ssn"), ("SSN", "social security number")),
        ("US_ITIN", _plain("itin"), ("ITIN", "taxpayer identification number")),
    ),
    "en_GB": (
        ("UK_NINO", _nino, ("National Insurance number", "NI number", "NINO")),
        ("UK_NHS", _nhs, ("NHS number", "NHS no.")),
    ),
    "de_DE": (("DE_TAX_ID", _steuer_id, ("Steuer-ID", "Steueridentifikationsnummer", "IdNr")),),
    "fr_FR": (("FR_NIR", _nir, ("numéro de sécurité sociale", "NIR", "numéro INSEE")),),
    "es_ES": (
        ("ES_NIF", _plain("nif"), ("DNI", "NIF")),
        ("ES_NIE", _plain("nie"), ("NIE", "número de extranjero")),
    ),
    "it_IT": (("IT_FISCAL_CODE", _plain("ssn"), ("codice fiscale", "CF")),),
    "nl_NL": (("NL_BSN", _plain("ssn"), ("BSN", "burgerservicenummer")),),
    "pt_BR": (("BR_CPF", _cpf, ("CPF", "número do CPF")),),
}


# --- Near-miss negatives -----------------------------------------------------------

_NEG_T = {
    "en": ("Reference {v} in the ticket.", "The value was {v}, see the log.", "Ship it with {v} attached."),
    "de": ("Siehe {v} im Protokoll.", "Der Wert war {v}.", "Mit {v} versenden."),
    "fr": ("Voir {v} dans le journal.", "La valeur était {v}.", "Envoyer avec {v}."),
    "es": ("Ver {v} en el registro.", "El valor era {v}.", "Enviar con {v}."),
    "it": ("Vedi {v} nel registro.", "Il valore era {v}.", "Spedire con {v}."),
    "nl": ("Zie {v} in het logboek.", "De waarde was {v}.", "Verstuur met {v}."),
    "pt": ("Veja {v} no registro.", "O valor era {v}.", "Enviar com {v}."),
}

_ORDER_T = {
    "en": ("Order {v} shipped yesterday.", "Please call me about order {v}.", "Invoice no. {v} is overdue."),
    "de": ("Bestellung {v} wurde versandt.", "Bitte rufen Sie wegen Bestellnummer {v} an.", "Rechnung {v} ist offen."),
    "fr": ("La commande {v} est partie.", "Appelez-moi au sujet de la commande {v}.", "Facture n° {v} impayée."),
    "es": ("El pedido {v} salió ayer.", "Llámame por el pedido {v}.", "La factura {v} está vencida."),
    "it": ("L'ordine {v} è partito.", "Chiamami per l'ordine {v}.", "Fattura n. {v} scaduta."),
    "nl": ("Bestelling {v} is verzonden.", "Bel me over bestelling {v}.", "Factuur {v} staat open."),
    "pt": ("O pedido {v} foi enviado.", "Me ligue sobre o pedido {v}.", "A nota fiscal {v} venceu."),
}


def _bad_luhn(fake: Faker, rng: random.Random) -> str:
    number = fake.credit_card_number(card_type=rng.choice(_FAKER_BRANDS))
    return _format_card(rng, number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10))


def _bad_iban(fake: Faker, rng: random.Random) -> str:
    iban = str(fake.iban())
    check = (int(iban[2:4]) + rng.randint(1, 96)) % 97
    bad = iban[:2] + f"{check:02d}" + iban[4:]
    return _group(bad, (4,) * 8, " ") if rng.random() < 0.5 else bad


def _never_issued_ssn(fake: Faker, rng: random.Random) -> str:
    # 9xx is an ITIN's area: with a group ITINs never have (01-49, 66-69, 89, 93).
    area = rng.choice(("000", "666", str(rng.randint(900, 999))))
    group, serial = f"{rng.choice((*range(1, 50), 66, 67, 68, 69, 89, 93)):02d}", f"{rng.randint(1, 9999):04d}"
    return rng.choice((f"{area}-{group}-{serial}", f"{rng.randint(100, 665)}-00-{serial}"))


def _digits_of(rng: random.Random, n: int, first: str = "123456789") -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(n - 1))


_NEGATIVES: dict[str, Callable[[Faker, random.Random], str]] = {
    "bad_luhn_card": _bad_luhn,
    "bad_iban": _bad_iban,
    "never_issued_ssn": _never_issued_ssn,
    "version": lambda f, r: r.choice(
        (
            f"v{r.randint(1, 30)}.{r.randint(0, 20)}.{r.randint(0, 99)}",
            f"{r.randint(1, 12)}.{r.randint(0, 9)}.{r.randint(0, 9999)}",
        )
    ),
    "timestamp": lambda f, r: r.choice(
        (
            f.date_time().isoformat() + "Z",
            str(r.randint(1_500_000_000, 1_800_000_000)),
            str(r.randint(1_500_000_000_000, 1_800_000_000_000)),
        )
    ),
    "hash": lambda f, r: r.choice((f.sha256(), f.sha1(), f.md5(), f.sha1()[:7])),
    "uuid": lambda f, r: str(f.uuid4()),
    "price": lambda f, r: r.choice(
        (
            f"${r.randint(1, 99999):,}.{r.randint(0, 99):02d}",
            f"{r.randint(1, 9999)},{r.randint(0, 99):02d} €",
            f"R$ {r.randint(1, 999)}.{r.randint(100, 999)},90",
        )
    ),
    "date": lambda f, r: r.choice((f.date(pattern="%d/%m/%Y"), f.date(pattern="%Y-%m-%d"), f.date(pattern="%d.%m.%Y"))),
    "isbn": lambda f, r: f.isbn13(),
    "id_number": lambda f, r: r.choice(
        (
            "#" + _digits_of(r, r.randint(6, 9)),
            f"ORD-{r.randint(2019, 2026)}-{r.randint(100000, 999999)}",
            "1Z" + "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
            "SKU " + _digits_of(r, 8),
        )
    ),
}


def _bad_id(entity: str, rng: random.Random, value: str) -> str:
    """``value`` made invalid: a digit changed (its checksum fails, unless the
    change happens to keep it valid: the caller checks and draws again), a
    never-allocated NINO prefix or ITIN group."""
    if entity == "UK_NINO":
        return rng.choice("DFIQUV") + value[1:]
    if entity == "US_ITIN":
        return value[:4] + rng.choice(("89", "93", "00", "49")) + value[6:]
    positions = [i for i, ch in enumerate(value) if ch.isdigit()]
    i = rng.choice(positions[-3:])
    return value[:i] + str((int(value[i]) + rng.randint(1, 9)) % 10) + value[i + 1 :]


# --- Corpus --------------------------------------------------------------------------


def _fill(template: str, value: str, fake: Faker, label: str = "") -> tuple[str, Span | None]:
    before, _, after = template.partition("{v}")
    before = before.format(name=fake.name(), label=label)
    after = after.format(name=fake.name(), label=label)
    return before + value + after, (len(before), len(before) + len(value), "")


def _sample(locale: str, kind: str, template: str, value: str, fake: Faker, label: str = "") -> Sample:
    text, span = _fill(template, value, fake, label)
    assert span is not None
    spans = () if kind.startswith("negative:") else ((span[0], span[1], kind),)
    return Sample(locale, kind, text, spans)


def corpus(split: str) -> list[Sample]:
    """The labelled samples of ``split`` ("tune" or "heldout")."""
    seed = SEEDS[split]
    out: list[Sample] = []
    for index, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed * 100 + index)
        rng = random.Random(seed * 100 + index)
        lang = locale[:2]

        for _ in range(N_PHONE):
            out.append(_sample(locale, "PHONE", rng.choice(_PHONE_T[lang]), str(fake.phone_number()), fake))
        for _ in range(N_EMAIL):
            value = rng.choice((fake.email(), fake.free_email(), fake.company_email()))
            out.append(_sample(locale, "EMAIL", rng.choice(_EMAIL_T[lang]), value, fake))
        for value in _cards(fake, rng):
            out.append(_sample(locale, "CREDIT_CARD", rng.choice(_CARD_T[lang]), value, fake))
        for _ in range(N_IBAN):
            out.append(_sample(locale, "IBAN", rng.choice(_IBAN_T[lang]), _iban(fake, rng), fake))
        for _ in range(N_PASSPORT):
            value = str(fake.passport_number()).upper()
            out.append(_sample(locale, "PASSPORT", rng.choice(_ID_T[lang]), value, fake, _PASSPORT_LABEL[lang]))
        for entity, make, labels in _IDS.get(locale, ()):
            for _ in range(N_ID):
                out.append(_sample(locale, entity, rng.choice(_ID_T[lang]), make(fake, rng), fake, rng.choice(labels)))
            check = _ID_CHECKS.get(entity)
            bad = 0
            while check is not None and bad < N_NEGATIVE:  # an SSN has no check: see never_issued_ssn
                value = _bad_id(entity, rng, make(fake, rng))
                if check(re.sub(r"[^0-9A-Z]", "", value.upper())):
                    continue
                bad += 1
                out.append(
                    _sample(
                        locale,
                        "negative:bad_" + entity.lower(),
                        rng.choice(_ID_T[lang]),
                        value,
                        fake,
                        rng.choice(labels),
                    )
                )

        for kind, make_negative in _NEGATIVES.items():
            templates = _ORDER_T[lang] if kind == "id_number" else _NEG_T[lang]
            for _ in range(N_NEGATIVE):
                out.append(_sample(locale, "negative:" + kind, rng.choice(templates), make_negative(fake, rng), fake))
        for _ in range(N_NEGATIVE):
            # Order and invoice numbers the length of a phone number, led by a phone word.
            value = _digits_of(rng, rng.choice((9, 10, 11)))
            out.append(_sample(locale, "negative:order_id_after_phone_word", rng.choice(_ORDER_T[lang]), value, fake))
    return out


def _id_checks() -> dict[str, Callable[[str], bool]]:
    from extproc.guard import validators as v

    return {
        "US_ITIN": v.us_itin_ok,
        "UK_NINO": v.uk_nino_ok,
        "UK_NHS": v.uk_nhs_ok,
        "DE_TAX_ID": v.de_tax_id_ok,
        "FR_NIR": v.fr_nir_ok,
        "ES_NIF": v.es_dni_ok,
        "ES_NIE": v.es_nie_ok,
        "IT_FISCAL_CODE": v.it_fiscal_code_ok,
        "NL_BSN": v.nl_bsn_ok,
        "BR_CPF": v.br_cpf_ok,
    }


_ID_CHECKS = _id_checks()


# --- Scoring ---------------------------------------------------------------------------


def scanner() -> PiiScanner:
    """The scanner the ``pii`` capability builds with every built-in entity."""
    return PiiScanner(PiiConfig(entities=dict.fromkeys(BUILTIN_ENTITIES, "redact")))


def _shown(text: str, start: int, end: int, entity: str) -> str:
    return f"{text[:start]}«{mask(text[start:end], entity)}»{text[end:]}"


def _splits(split: str) -> list[str]:
    """The corpus splits a runner's split name stands for: PII has no
    reference split (the injection corpora do); "all" is both."""
    if split in ("all", "both"):
        return list(SEEDS)
    if split == "reference":
        return ["heldout"]
    if split not in SEEDS:
        raise ValueError(f"unknown split {split!r}: use tune, heldout or all")
    return [split]


def evaluate(split: str = "heldout") -> PiiReport:
    scan = scanner()
    names = _splits(split)
    report = PiiReport("+".join(names))
    for sample in (s for name in names for s in corpus(name)):
        report.samples += 1
        locale = report.by_locale.setdefault(sample.locale, Score())
        findings = scan.find(sample.text)
        if sample.kind.startswith("negative:"):
            report.negatives += 1
            n, altered = report.by_negative.get(sample.kind[9:], (0, 0))
            report.by_negative[sample.kind[9:]] = (n + 1, altered + bool(findings))
            report.negatives_altered += bool(findings)
        for start, end, entity in sample.spans:
            score = report.by_entity.setdefault(entity, Score())
            for s in (score, locale, report.total):
                s.labelled += 1
            if any(f.entity == entity and f.start <= start and f.end >= end for f in findings):
                for s in (score, locale, report.total):
                    s.found += 1
            else:
                got = ", ".join(f"{f.entity}:{mask(sample.text[f.start : f.end], f.entity)}" for f in findings)
                report.misses.append(
                    f"{sample.locale} {entity}: {_shown(sample.text, start, end, entity)}  [found: {got or '-'}]"
                )
        for f in findings:
            score = report.by_entity.setdefault(f.entity, Score())
            correct = any(e == f.entity and f.start < end and start < f.end for start, end, e in sample.spans)
            for s in (score, locale, report.total):
                s.findings += 1
                s.correct += correct
            if not correct:
                report.false_positives.append(
                    f"{sample.locale} {sample.kind} -> {f.entity}: {_shown(sample.text, f.start, f.end, f.entity)}"
                )
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def render(report: PiiReport, misses: int = 20) -> str:
    """A markdown summary: totals, per locale, per entity, per negative kind."""
    t = report.total
    lines = [
        f"### PII detection, {report.split} split",
        "",
        f"{report.samples} samples ({t.labelled} labelled values, {report.negatives} near-miss negatives): "
        f"recall **{_pct(t.recall)}**, precision **{_pct(t.precision)}**, "
        f"negatives altered {report.negatives_altered}/{report.negatives}.",
        "",
        "| locale | values | recall | findings | precision |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in report.by_locale.items():
        lines.append(f"| {name} | {s.labelled} | {_pct(s.recall)} | {s.findings} | {_pct(s.precision)} |")
    lines += ["", "| entity | values | recall | findings | precision |", "|---|---:|---:|---:|---:|"]
    for name, s in sorted(report.by_entity.items()):
        lines.append(f"| {name} | {s.labelled} | {_pct(s.recall)} | {s.findings} | {_pct(s.precision)} |")
    lines += ["", "| near-miss negatives | samples | altered |", "|---|---:|---:|"]
    for name, (n, altered) in sorted(report.by_negative.items()):
        lines.append(f"| {name} | {n} | {altered} |")
    if misses and report.misses:
        lines += ["", f"Misses ({len(report.misses)}, values masked):", ""]
        lines += [f"- {m}" for m in report.misses[:misses]]
    if misses and report.false_positives:
        lines += ["", f"False positives ({len(report.false_positives)}, values masked):", ""]
        lines += [f"- {m}" for m in report.false_positives[:misses]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["tune", "heldout", "both"], default="both")
    parser.add_argument("--misses", type=int, default=20, help="misses and false positives to list (0: none)")
    args = parser.parse_args(argv)
    splits = ["tune", "heldout"] if args.split == "both" else [args.split]
    ok = True
    for split in splits:
        report = evaluate(split)
        print(render(report, args.misses))
        print()
        ok = ok and report.total.recall >= 0.99 and report.total.precision >= 0.99 and not report.negatives_altered
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
