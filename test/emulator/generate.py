#!/usr/bin/python3
"""Deterministic data set for the migrate_ext API emulator: Xendit invoices and Systeme.io contacts.

Both sources are derived from one list of "people" (customers, leads, test accounts), so that a later
step can also derive a contaminated copy of production from the same people.  Records are built as
dicts and serialized here, with every amount written as the exact decimal text intended ("1499.50",
"800", "0.01").  The same scale always gives byte-identical output.
"""

import argparse
import gc
import json
import os
import random
import re
import sys
import unicodedata
from datetime import datetime, timedelta, timezone
from decimal import Decimal

SEED = 20250630
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def ms_of(year, month, day, hour=0, minute=0, second=0):
    """Milliseconds since the epoch of a UTC wall-clock time."""
    return int((datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc) - EPOCH)
               .total_seconds()) * 1000


START_MS = ms_of(2023, 1, 1)
END_MS = ms_of(2025, 6, 30, 23, 59, 59)
CONTACT_START_MS = ms_of(2022, 10, 1)

# ---------------------------------------------------------------------------------------------
# The figures that must come out exactly at scale 1 (they are multiplied by the scale).

EXPECTED_STATUS = {
    "PAID": {"P2P": 3002, "Canva": 1484, "Other": 10},
    "SETTLED": {"P2P": 332, "Canva": 1299, "Other": 9},
    "EXPIRED": {"P2P": 973, "Canva": 1839, "Other": 6},
    "PENDING": {"P2P": 36, "Canva": 31, "Other": 4},
}
EXPECTED_INVOICES = 9025
EXPECTED_CONTACTS = 15270
EXPECTED_TAGS = {"PaidP2P": 3664, "Canva": 4916, "PaidP2P_and_Canva": 2893}

# Groups of people at scale 1.  Contact classes: B = tags PaidP2P and Canva, P = PaidP2P only,
# C = Canva only, N = neither, None = no contact.  "dup" people have a second contact with the
# same e-mail in a different case.
PEOPLE_PLAN = [
    # group, class, dup, count
    ("p2p_payer", "B", True, 32),
    ("p2p_payer", "B", False, 2529),
    ("p2p_payer", "P", True, 8),
    ("p2p_payer", "P", False, 618),
    ("p2p_payer", "N", False, 12),
    ("p2p_payer", None, False, 45),
    ("manual_p2p", "B", False, 300),
    ("manual_p2p", "P", False, 137),
    ("canva_buyer", "C", True, 25),
    ("canva_buyer", "C", False, 1878),
    ("canva_buyer", None, False, 30),
    ("canva_interest", "C", False, 95),
    ("lead", "N", True, 30),
    ("lead", "N", False, 9511),
]
P2P_TWICE = 70          # P2P payers who paid twice
P2P_THRICE = 10         # ... and three times
CANVA_CROSS = 800       # P2P payers (class B) who also bought the Canva ebook once
CANVA_TWICE = 50        # Canva-only buyers who paid twice
UNPAID_P2P_FROM = [("p2p_payer", 600), ("manual_p2p", 100), ("lead", 259), ("stranger", 50)]
UNPAID_CANVA_FROM = [("canva_buyer", 900), ("cross", 100), ("canva_interest", 95), ("lead", 625),
                     ("stranger", 150)]
OTHER_STRANGERS = 5     # of the Other invoices, how many come from people with no contact

# People whose own e-mail is a test account or an invalid address (all their records carry it).
TEST_PEOPLE = [("p2p_payer", 6), ("manual_p2p", 4), ("canva_buyer", 2), ("lead", 6), ("stranger", 2)]
INVALID_PEOPLE = [("p2p_payer", 3), ("manual_p2p", 1), ("canva_buyer", 2), ("lead", 3), ("stranger", 1)]

# Planted record-level mess at scale 1.
NO_EMAIL_PAID = 8
NO_EMAIL_UNPAID = 6
NO_DESCRIPTION = {"PAID": 2, "SETTLED": 1, "EXPIRED": 1, "PENDING": 1}
DUP_EXTERNAL_GROUPS = 4
INVOICE_MISSING_KEYS = 10
CONTACT_NO_FIELDS = 30
CONTACT_NULL_VALUE = 40
CONTACT_FIELDS_OBJECT = 5
CONTACT_MISSING_KEYS = 10
CONTACT_EMOJI = 25
INVOICE_CASE_RATE = 0.03
INVOICE_PAD_RATE = 0.01
CONTACT_CASE_RATE = 0.02
CONTACT_PAD_RATE = 0.005

# ---------------------------------------------------------------------------------------------
# Vocabulary.

TAG_IDS = {
    "PaidP2P": 1012751, "Canva": 1012529, "PaidCanva": 1013004, "Lead": 1009876,
    "Webinar2024": 1011230, "Webinar2025": 1014002, "FreebieCanva": 1012530,
    "P2P-Installment": 1013310, "Newsletter": 1008001, "Cart-Abandoned": 1012999,
    "FBInviteSent": 1010444, "Reengaged2025": 1015555,
}
CHANGED_TAG = "Reengaged2025"

FIRST_NAMES = [
    "Juan", "Maria", "Ana", "Mark", "John Paul", "Kristine", "Jerome", "Mae",
    "Angelica", "Princess", "Rhea", "Joy", "Grace", "Michelle", "Jennifer", "Carlo", "Miguel",
    "Paolo", "Bea", "Camille", "Nicole", "Patricia", "Ramon", "Rosario", "Lourdes",
    "Cristina", "Ma. Teresa", "Jhon", "Marvin", "Arnel", "Liza", "Irene", "Charmaine", "Daisy",
    "Emmanuel", "Jericho", "Trisha", "Aileen", "Hazel", "Joanna", "Kimberly", "Lovely",
    "Mary Grace", "Sheila", "Analyn", "Rowena", "Maricel", "Ronaldo", "Teodoro",
    "Jasmine", "Ella", "Gabriel", "Rafael", "Andrea", "Katrina",
]
LAST_NAMES = [
    "Dela Cruz", "Santos", "Reyes", "Garcia", "Mendoza", "Bautista", "Villanueva", "Ramos",
    "Aquino", "Castillo", "Cruz", "Gonzales", "Lopez", "Flores", "Torres", "Rivera", "Fernandez",
    "Del Rosario", "Navarro", "Salazar", "Pascual", "Manalo", "Tolentino", "Dizon", "Aguilar",
    "Magbanua", "Soriano", "Macaraeg",
    "Panganiban", "Lim", "Tan", "Co", "Sy", "Yap", "Ong", "Santiago", "De Guzman", "Mercado",
]
ACCENTED_FIRST = ["José", "María", "Niño", "Efrén", "Inés", "Ramón", "Mónica"]
ACCENTED_LAST = ["Peña", "Ñañez", "Muñoz", "Nuñez", "Ibañez", "Concepción", "Dela Peña", "Zuñiga"]
ACCENT_RATE = 0.05
EMOJI = ["🌸", "💕", "✨", "🙏", "😊"]
DOMAINS = [("gmail.com", 70), ("yahoo.com", 14), ("outlook.com", 5), ("icloud.com", 4),
           ("ymail.com", 3), ("hotmail.com", 3), ("live.com", 1)]
P2P_DESCRIPTIONS = ["Papers to Profits", "Papers to Profits", "Papers to Profits",
                    "PAPERS TO PROFITS - Lifetime", "Papers To Profits Course",
                    "papers to profits", "Papers to Profits Learning Fee"]
P2P_INSTALLMENT = "papers to profits (installment)"
CANVA_DESCRIPTIONS = ["Canva Ebook", "Canva Ebook", "CANVA Templates Bundle", "Canva Ebook Bundle",
                      "canva ebook - 50 templates", "Canva Mastery Ebook"]
OTHER_PRODUCTS = [("1-on-1 Consultation", "1500"), ("Workshop Ticket", "2500"),
                  ("Coaching Call", "3500.75"), ("Community Membership", "500"),
                  ("Printables Starter Kit", "250.25")]
P2P_PRICES = [("800", 78), ("1000", 12), ("1499.50", 10)]
P2P_INSTALLMENT_PRICE = "400"
CANVA_PRICES = [("99", 40), ("149", 30), ("199.50", 20), ("249", 10)]
PAYMENT_CHANNELS = [("EWALLET", "GCASH", 45), ("EWALLET", "PAYMAYA", 12), ("EWALLET", "GRABPAY", 4),
                    ("EWALLET", "SHOPEEPAY", 5), ("CREDIT_CARD", "CREDIT_CARD", 8),
                    ("BANK_TRANSFER", "BPI_ONLINE_BANKING", 7), ("RETAIL_OUTLET", "7ELEVEN", 6),
                    ("RETAIL_OUTLET", "CEBUANA", 3), ("QR_CODE", "QRPH", 7), ("DIRECT_DEBIT", "DD_BPI", 3)]
SOURCE_URLS = [None, None, None, "https://gracefulhomeschooling.systeme.io/p2p-webinar",
               "https://gracefulhomeschooling.systeme.io/canva-freebie",
               "https://gracefulhomeschooling.com/papers-to-profits", "https://l.facebook.com/"]
USER_ID = "6419c2e4b2d5a31a2c9f1d07"
MERCHANT_NAME = "Graceful Homeschooling"
MERCHANT_PICTURE = "https://du8nwjtfkinx.cloudfront.net/xendit.png"
INVOICE_OPTIONAL_KEYS = ["merchant_name", "user_id", "invoice_url", "expiry_date", "updated",
                         "merchant_profile_picture_url"]
CONTACT_OPTIONAL_KEYS = ["locale", "sourceURL", "needsConfirmation", "registeredAt"]
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NUM_RE = re.compile(r'"@@num@@([-0-9.]+)@@"')

# ---------------------------------------------------------------------------------------------
# Small helpers.


def iso_ms(ms):
    """Xendit style UTC time with milliseconds: 2024-03-05T02:58:14.123Z."""
    d = EPOCH + timedelta(milliseconds=ms)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
            f".{ms % 1000:03d}Z")


def iso_offset(ms, hours):
    """Systeme.io style time with an offset and no milliseconds: 2024-01-01T08:00:00+08:00."""
    d = EPOCH + timedelta(milliseconds=ms, hours=hours)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
            f"+{hours:02d}:00")


def weighted(rng, pairs):
    """Pick the first element of one (value..., weight) tuple by weight."""
    total = sum(p[-1] for p in pairs)
    x = rng.random() * total
    for p in pairs:
        x -= p[-1]
        if x < 0:
            return p[0] if len(p) == 2 else p[:-1]
    return pairs[-1][0] if len(pairs[-1]) == 2 else pairs[-1][:-1]


def ascii_letters(text):
    """Lower-case ASCII letters and digits of a name (accents stripped)."""
    flat = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in flat.lower() if ch.isascii() and ch.isalnum())


def strip_accents(text):
    """The same name without accents (Jose for José)."""
    flat = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in flat if not unicodedata.combining(ch))


def norm_email(email):
    """The identity the extension uses: lower(trim(email)); None stays None."""
    if not isinstance(email, str):
        return None
    return email.strip(" ").lower()


def product_of(description):
    """P2P, Canva or Other, by the case-insensitive description rule."""
    if not isinstance(description, str):
        return "Other"
    low = description.lower()
    if "papers to profits" in low:
        return "P2P"
    if "canva" in low:
        return "Canva"
    return "Other"


def encode_default(value):
    """Mark Decimals so that their exact text can be put back as a bare JSON number."""
    if isinstance(value, Decimal):
        return "@@num@@" + str(value) + "@@"
    raise TypeError(f"cannot serialize {type(value).__name__}")


ENCODERS = {
    flag: json.JSONEncoder(ensure_ascii=flag, separators=(",", ":"), default=encode_default)
    for flag in (False, True)
}


def dumps(record, ascii_only=False):
    """Compact JSON text of one record, amounts written exactly as their Decimal text."""
    text = ENCODERS[ascii_only].encode(record)
    return NUM_RE.sub(r"\1", text) if "@@num@@" in text else text


def loads(text):
    """Parse one record back, keeping decimal numbers exact."""
    return json.loads(text, parse_float=Decimal)


def hex_id(rng, seconds, taken):
    """A 24-hex ObjectId-like id: 8 hex of the creation second and 16 random hex."""
    while True:
        value = f"{seconds:08x}{rng.getrandbits(64):016x}"
        if value not in taken:
            taken.add(value)
            return value


def uuid_text(rng):
    """A version-4 looking UUID drawn from the generator's random source."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"


# ---------------------------------------------------------------------------------------------
# People.


class Person:
    """One customer, lead or stranger; both API sources (and later production) derive from people."""

    __slots__ = ("key", "group", "klass", "dup", "first", "last", "email", "email_kind", "t0",
                 "slots", "installment", "cross", "tags", "invoice_ids", "contact_ids")

    def __init__(self, key, group, klass, dup):
        """Start a person with no records."""
        self.key = key
        self.group = group
        self.klass = klass
        self.dup = dup
        self.first = ""
        self.last = ""
        self.email = ""
        self.email_kind = "normal"
        self.t0 = 0
        self.slots = []
        self.installment = False
        self.cross = False
        self.tags = []
        self.invoice_ids = []
        self.contact_ids = []

    def as_dict(self):
        """A JSON-ready view for a later step (production contamination)."""
        return {"key": self.key, "group": self.group, "contact_class": self.klass,
                "duplicate_contact": self.dup, "first_name": self.first, "last_name": self.last,
                "email": self.email, "email_kind": self.email_kind, "first_seen": iso_ms(self.t0),
                "cross_buyer": self.cross, "installment": self.installment, "tags": self.tags,
                "invoice_ids": self.invoice_ids, "contact_ids": self.contact_ids}


class Slot:
    """One planned invoice of a person, before it becomes a record."""

    __slots__ = ("person", "product", "paid", "n", "status", "created")

    def __init__(self, person, product, paid, n=0, status=None):
        """Plan an invoice: product, paid or not, and its rank among the person's payments."""
        self.person = person
        self.product = product
        self.paid = paid
        self.n = n
        self.status = status
        self.created = 0


def make_email(rng, first, last, taken):
    """A unique, valid, lower-case address built from a name."""
    f, l = ascii_letters(first), ascii_letters(last)
    domain = weighted(rng, DOMAINS)
    style = rng.randrange(6)
    if style == 0:
        local = f"{f}.{l}"
    elif style == 1:
        local = f"{f}{l}{rng.randrange(1, 100)}"
    elif style == 2:
        local = f"{f}_{l}"
    elif style == 3:
        local = f"{f[:1]}{l}{rng.randrange(1980, 2006)}"
    elif style == 4:
        local = f"{f}.{l}{rng.randrange(1, 1000)}"
    else:
        local = f"{l}.{f}"
    email = f"{local}@{domain}"
    while email in taken:
        email = f"{local}{rng.randrange(1, 10000)}@{domain}"
    taken.add(email)
    return email


def new_person(rng, people, group, klass, dup, taken):
    """Append one person with a name, an e-mail and a first-seen time."""
    p = Person(len(people) + 1, group, klass, dup)
    p.first = rng.choice(ACCENTED_FIRST if rng.random() < ACCENT_RATE else FIRST_NAMES)
    p.last = rng.choice(ACCENTED_LAST if rng.random() < ACCENT_RATE else LAST_NAMES)
    p.email = make_email(rng, p.first, p.last, taken)
    u = rng.random() ** 0.7
    p.t0 = START_MS + int(u * (END_MS - 20 * DAY - START_MS))
    people.append(p)
    return p


def make_people(rng, scale, taken):
    """All people of the planned groups, in plan order."""
    people = []
    for group, klass, dup, count in PEOPLE_PLAN:
        for _ in range(count * scale):
            new_person(rng, people, group, klass, dup, taken)
    return people


def by_group(people, group):
    """People of one group, in list order."""
    return [p for p in people if p.group == group]


def plan_paid(rng, people, scale):
    """Paid P2P and Canva slots: repeat payers, installments and cross-buyers."""
    payers = by_group(people, "p2p_payer")
    multi = rng.sample(payers, (P2P_TWICE + P2P_THRICE) * scale)
    times = {p.key: 1 for p in payers}
    for i, p in enumerate(multi):
        times[p.key] = 2 if i < P2P_TWICE * scale else 3
        p.installment = rng.random() < 0.5
    for p in payers:
        for n in range(times[p.key]):
            p.slots.append(Slot(p, "P2P", True, n))
    class_b = [p for p in payers if p.klass == "B"]
    for p in rng.sample(class_b, CANVA_CROSS * scale):
        p.cross = True
        p.slots.append(Slot(p, "Canva", True, 0))
    buyers = by_group(people, "canva_buyer")
    twice = {p.key for p in rng.sample(buyers, CANVA_TWICE * scale)}
    for p in buyers:
        for n in range(2 if p.key in twice else 1):
            p.slots.append(Slot(p, "Canva", True, n))


def add_stranger(rng, people, taken):
    """A person who appears only in Xendit (no contact)."""
    return new_person(rng, people, "stranger", None, False, taken)


def plan_unpaid(rng, people, scale, taken):
    """EXPIRED/PENDING slots, mostly from people who also paid, and the Other invoices."""
    for product, plan in (("P2P", UNPAID_P2P_FROM), ("Canva", UNPAID_CANVA_FROM)):
        for group, count in plan:
            n = count * scale
            if group == "stranger":
                chosen = [add_stranger(rng, people, taken) for _ in range(n)]
            elif group == "cross":
                chosen = rng.sample([p for p in people if p.cross], n)
            else:
                chosen = rng.sample(by_group(people, group), n)
            for p in chosen:
                p.slots.append(Slot(p, product, False))
    with_contact = [p for p in people if p.klass is not None]
    for status, counts in EXPECTED_STATUS.items():
        for _ in range(counts["Other"] * scale):
            p = rng.choice(with_contact)
            p.slots.append(Slot(p, "Other", status in ("PAID", "SETTLED"), 0, status))
    others = [s for p in people for s in p.slots if s.product == "Other"]
    for s in rng.sample(others, OTHER_STRANGERS * scale):
        s.person.slots.remove(s)
        stranger = add_stranger(rng, people, taken)
        s.person = stranger
        stranger.slots.append(s)


def assign_statuses(rng, people, scale):
    """Spread the exact PAID/SETTLED and EXPIRED/PENDING counts over the slots of each product."""
    for product in ("P2P", "Canva"):
        slots = [s for p in people for s in p.slots if s.product == product]
        for paid, names in ((True, ("PAID", "SETTLED")), (False, ("EXPIRED", "PENDING"))):
            chosen = [s for s in slots if s.paid == paid]
            statuses = [n for n in names for _ in range(EXPECTED_STATUS[n][product] * scale)]
            assert len(statuses) == len(chosen), (product, paid, len(statuses), len(chosen))
            rng.shuffle(statuses)
            for s, status in zip(chosen, statuses):
                s.status = status


def clamp(rng, ms):
    """Keep an invoice time inside the data window."""
    if ms > END_MS:
        return END_MS - rng.randrange(0, 30 * DAY)
    if ms < START_MS:
        return START_MS + rng.randrange(0, 10 * DAY)
    return ms


def assign_times(rng, people):
    """Creation times: payments follow abandoned checkouts, installments are monthly."""
    for p in people:
        first_paid = {}
        for s in p.slots:
            if not s.paid or s.product == "Other":
                continue
            if s.product == "P2P":
                gap = 30 * DAY if p.installment else rng.randrange(20 * DAY, 200 * DAY)
                s.created = p.t0 + rng.randrange(0, 2 * HOUR) + s.n * gap
            elif p.cross:
                s.created = p.t0 + rng.randrange(DAY, 400 * DAY)
            else:
                s.created = p.t0 + rng.randrange(0, 2 * HOUR) + s.n * rng.randrange(10 * DAY, 200 * DAY)
            first_paid.setdefault(s.product, s.created)
            first_paid[s.product] = min(first_paid[s.product], s.created)
        for s in p.slots:
            if s.product == "Other":
                s.created = p.t0 + rng.randrange(0, 300 * DAY)
            elif not s.paid:
                if s.product in first_paid:
                    s.created = first_paid[s.product] - rng.randrange(10 * MINUTE, 5 * DAY)
                else:
                    s.created = p.t0 + rng.randrange(0, 30 * DAY)
            s.created = clamp(rng, s.created)
            if s.status == "PENDING":
                s.created = END_MS - rng.randrange(HOUR, 14 * DAY)


def unique_times(slots):
    """Make every creation time distinct (newest-first order must be total)."""
    slots.sort(key=lambda s: s.created)
    last = -1
    for s in slots:
        if s.created <= last:
            s.created = last + 1
        last = s.created


def set_special_emails(rng, people, scale):
    """Give some people a test-account address or an invalid address."""
    used = set()
    index = 0
    for group, count in TEST_PEOPLE:
        pool = [p for p in by_group(people, group) if p.key not in used]
        for p in rng.sample(pool, count * scale):
            used.add(p.key)
            p.email = test_email(index, p)
            p.email_kind = "test"
            index += 1
    index = 0
    for group, count in INVALID_PEOPLE:
        pool = [p for p in by_group(people, group) if p.key not in used]
        for p in rng.sample(pool, count * scale):
            used.add(p.key)
            p.email = invalid_email(index, p)
            p.email_kind = "invalid"
            index += 1


def test_email(i, p):
    """A test-account address: test@example.com, qa+N@example.com, name@test.com ..."""
    if i == 0:
        return "test@example.com"
    kind = i % 3
    if kind == 1:
        return f"qa+{i}@example.com"
    if kind == 2:
        return f"{ascii_letters(p.first)}{i}@test.com"
    return f"test{i}@example.com"


def invalid_email(i, p):
    """An address that no mail server accepts: no TLD, no @, a space, a doubled @."""
    f, l = ascii_letters(p.first), ascii_letters(p.last)
    if i == 0:
        return "juan.delacruz@gmail"
    if i == 1:
        return "maria at yahoo.com"
    kind = i % 5
    if kind == 0:
        return f"{f}.{l}{i}@gmail"
    if kind == 1:
        return f"{f}{i} at yahoo.com"
    if kind == 2:
        return f"{f}.{l}{i}@@gmail.com"
    if kind == 3:
        return f"{f}{l}{i}.gmail.com"
    return f"{f} {l}{i}@gmail.com"


def case_variant(rng, email):
    """The same address with a different case (never equal to the input)."""
    local, _, domain = email.partition("@")
    kind = rng.randrange(4)
    if kind == 0:
        out = ".".join(part[:1].upper() + part[1:] for part in local.split(".")) + "@" + domain
    elif kind == 1:
        out = local + "@" + domain[:1].upper() + domain[1:]
    elif kind == 2:
        out = email.upper()
    else:
        out = local[:1].upper() + local[1:] + "@" + domain.upper()
    return out if out != email else email.upper()


def pad_variant(rng, email):
    """The same address with leading and/or trailing spaces."""
    return [" " + email, email + " ", "  " + email + " "][rng.randrange(3)]


# ---------------------------------------------------------------------------------------------
# Invoices.


def price_of(rng, slot):
    """Amount text and description of a planned invoice."""
    p = slot.person
    if slot.product == "P2P":
        if p.installment and slot.paid:
            return P2P_INSTALLMENT_PRICE, P2P_INSTALLMENT
        return weighted(rng, P2P_PRICES), rng.choice(P2P_DESCRIPTIONS)
    if slot.product == "Canva":
        return weighted(rng, CANVA_PRICES), rng.choice(CANVA_DESCRIPTIONS)
    name, price = rng.choice(OTHER_PRODUCTS)
    return price, name


def external_id_of(rng, slot):
    """The merchant's reference for an invoice."""
    if slot.product == "P2P":
        return "p2p-" + uuid_text(rng)
    if slot.product == "Canva":
        return f"canva-ebook-{rng.randrange(10**9, 10**10)}"
    return uuid_text(rng)


def updated_of(rng, status, created, expiry, paid_at):
    """The invoice's last update time, by status."""
    if status == "PAID":
        return paid_at + rng.randrange(1000, 60_000)
    if status == "SETTLED":
        return paid_at + rng.randrange(DAY, 3 * DAY)
    if status == "EXPIRED":
        return expiry + rng.randrange(0, 5000)
    return created


def build_invoice(rng, slot, taken_ids):
    """One Xendit invoice dict in the real field order."""
    p = slot.person
    amount, description = price_of(rng, slot)
    created = slot.created
    paid = slot.status in ("PAID", "SETTLED")
    inv_id = hex_id(rng, created // 1000, taken_ids)
    expiry = created + (30 * DAY if slot.status == "PENDING" else DAY)
    d = {"id": inv_id, "external_id": external_id_of(rng, slot), "user_id": USER_ID}
    if paid:
        method, channel = weighted(rng, PAYMENT_CHANNELS)
        paid_at = created + rng.randrange(MINUTE, 20 * HOUR)
        d["payment_method"] = method
    d.update(status=slot.status, merchant_name=MERCHANT_NAME, merchant_profile_picture_url=MERCHANT_PICTURE,
             amount=Decimal(amount))
    if paid:
        d["paid_amount"] = Decimal(amount)
    d.update(payer_email=p.email, description=description)
    if paid:
        d["paid_at"] = iso_ms(paid_at)
    d.update(expiry_date=iso_ms(expiry), invoice_url="https://checkout.xendit.co/web/" + inv_id)
    if slot.status == "PENDING":
        d["available_ewallets"] = [{"ewallet_type": t} for t in ("GCASH", "PAYMAYA", "GRABPAY", "SHOPEEPAY")]
        d["available_qr_codes"] = [{"qr_code_type": "QRPH"}]
    d.update(should_exclude_credit_card=False, should_send_email=rng.random() < 0.7, created=iso_ms(created),
             updated=iso_ms(updated_of(rng, slot.status, created, expiry, paid_at if paid else 0)),
             currency="PHP")
    if paid:
        d["payment_channel"] = channel
    add_extras(rng, d, p, description, amount)
    p.invoice_ids.append(inv_id)
    return d


def add_extras(rng, d, p, description, amount):
    """Sometimes items[] and a customer{} object, as merchants send them."""
    if rng.random() < 0.3:
        d["items"] = [{"name": description, "quantity": 1, "price": Decimal(amount),
                       "category": "Digital Product"}]
    if rng.random() < 0.25:
        d["customer"] = {"given_names": p.first, "surname": p.last, "email": p.email,
                         "mobile_number": f"+639{rng.randrange(10**8, 10**9)}"}


# ---------------------------------------------------------------------------------------------
# Contacts.


def tags_of(rng, p):
    """Tag names of a person's contact, by contact class and history."""
    names = []
    if p.klass in ("B", "P"):
        names.append("PaidP2P")
    if p.klass in ("B", "C"):
        names.append("Canva")
    if p.cross or (p.group == "canva_buyer"):
        names.append("PaidCanva")
    if p.installment:
        names.append("P2P-Installment")
    if p.group == "canva_interest":
        names.append("FreebieCanva")
    if p.klass == "N":
        if rng.random() < 0.85:
            names.append("Lead")
        if any(not s.paid for s in p.slots):
            names.append("Cart-Abandoned")
    if rng.random() < 0.2:
        names.append("Webinar2024")
    if rng.random() < 0.1:
        names.append("Webinar2025")
    if rng.random() < 0.15:
        names.append("Newsletter")
    if p.klass in ("B", "P") and rng.random() < 0.3:
        names.append("FBInviteSent")
    return names


def fields_of(rng, first, last, locale):
    """The fields array with first_name and surname, sometimes phone and country."""
    labels = ("Prénom", "Nom") if locale == "fr" else ("First name", "Surname")
    fields = [{"fieldName": labels[0], "slug": "first_name", "value": first},
              {"fieldName": labels[1], "slug": "surname", "value": last}]
    if rng.random() < 0.3:
        fields.append({"fieldName": "Phone number", "slug": "phone_number",
                       "value": f"+639{rng.randrange(10**8, 10**9)}"})
    if rng.random() < 0.2:
        fields.append({"fieldName": "Country", "slug": "country", "value": "PH"})
    return fields


def build_contact(rng, p, registered, email, first):
    """One Systeme.io contact dict (its id is set later, by registration order)."""
    locale = weighted(rng, [("en", 95), ("es", 3), ("fr", 2)])
    offset = 8 if rng.random() < 0.25 else 0
    return {
        "id": 0,
        "email": email,
        "registeredAt": iso_offset(registered - registered % 1000, offset),
        "locale": locale,
        "sourceURL": rng.choice(SOURCE_URLS),
        "unsubscribed": rng.random() < 0.05,
        "bounced": rng.random() < 0.01,
        "needsConfirmation": rng.random() < 0.02,
        "fields": fields_of(rng, first, p.last, locale),
        "tags": [{"id": TAG_IDS[n], "name": n} for n in p.tags],
    }


def build_contacts(rng, people):
    """Contacts of every person who has one, with ids by registration time; returns (dicts, owners)."""
    planned = []
    for p in people:
        if p.klass is None:
            continue
        p.tags = tags_of(rng, p)
        paid = [s.created for s in p.slots if s.paid]
        registered = (min(paid) if paid else p.t0) - rng.randrange(0, 30 * DAY)
        registered = max(registered, CONTACT_START_MS)
        planned.append((registered, p, p.email, p.first))
        if p.dup:
            later = registered + rng.randrange(DAY, 200 * DAY)
            if later > END_MS:
                later = registered + rng.randrange(0, END_MS - registered + 1)
            alias = p.first if rng.random() < 0.6 else strip_accents(p.first)
            planned.append((later, p, case_variant(rng, p.email), alias))
    planned.sort(key=lambda t: t[0])
    contacts, owners = [], []
    next_id = 10_000_000
    for registered, p, email, first in planned:
        next_id += rng.randrange(1, 7)
        c = build_contact(rng, p, registered, email, first)
        c["id"] = next_id
        p.contact_ids.append(next_id)
        contacts.append(c)
        owners.append(p)
    contacts.reverse()
    owners.reverse()
    return contacts, owners


# ---------------------------------------------------------------------------------------------
# Planting the mess.


def pick(rng, indexes, count, used):
    """Choose count unused indexes (deterministically) and mark them used."""
    pool = [i for i in indexes if i not in used]
    if len(pool) < count:
        raise AssertionError(f"not enough records to plant mess: need {count}, have {len(pool)}")
    chosen = rng.sample(pool, count)
    used.update(chosen)
    return sorted(chosen)


def plain_invoices(invoices, slots, status=None, product=None):
    """Indexes of invoices of normal people with the given status(es) and product."""
    key = (id(invoices), len(invoices))
    if PLAIN_CACHE.get("key") != key:
        PLAIN_CACHE.clear()
        PLAIN_CACHE["key"] = key
        for i, (d, s) in enumerate(zip(invoices, slots)):
            if s.person.email_kind == "normal":
                PLAIN_CACHE.setdefault((d["status"], s.product), []).append(i)
    statuses = status if isinstance(status, tuple) else (status,) if status else tuple(EXPECTED_STATUS)
    products = (product,) if product else ("P2P", "Canva", "Other")
    out = []
    for st in statuses:
        for pr in products:
            out.extend(PLAIN_CACHE.get((st, pr), []))
    return sorted(out)


PLAIN_CACHE = {}


def plant_invoice_mess(rng, invoices, slots, scale):
    """Plant the documented record-level mess in the invoices; returns the used indexes."""
    used = set()
    for i in pick(rng, plain_invoices(invoices, slots, ("PAID", "SETTLED"), "P2P") +
                  plain_invoices(invoices, slots, ("PAID", "SETTLED"), "Canva"), NO_EMAIL_PAID * scale, used):
        drop_email(invoices[i])
    for i in pick(rng, plain_invoices(invoices, slots, "EXPIRED"), NO_EMAIL_UNPAID * scale, used):
        drop_email(invoices[i])
    for status, count in NO_DESCRIPTION.items():
        for i in pick(rng, plain_invoices(invoices, slots, status, "Other"), count * scale, used):
            del invoices[i]["description"]
            for item in invoices[i].get("items", []):
                item["name"] = "Digital product"
    for i in pick(rng, plain_invoices(invoices, slots, "PAID", "Other"), scale, used):
        set_amount(invoices[i], Decimal("0.01"))
    for i in pick(rng, plain_invoices(invoices, slots, "SETTLED", "Other"), scale, used):
        set_amount(invoices[i], Decimal("123456.78"))
    plant_usd(rng, invoices, slots, scale, used)
    plant_bad_amounts(rng, invoices, slots, scale, used)
    plant_dup_external(rng, invoices, slots, scale, used)
    for i in pick(rng, plain_invoices(invoices, slots), INVOICE_MISSING_KEYS * scale, used):
        keys = rng.sample(INVOICE_OPTIONAL_KEYS, rng.randrange(1, 3))
        for k in keys:
            invoices[i].pop(k, None)
    unstorable = pick(rng, plain_invoices(invoices, slots, "EXPIRED", "P2P"), 1, used)[0]
    invoices[unstorable]["description"] = "Papers to Profits\u0000"
    vary_invoice_emails(rng, invoices, slots, used)
    return used


def drop_email(d):
    """Remove every trace of the payer's e-mail from an invoice."""
    d.pop("payer_email", None)
    d.pop("customer", None)


def set_amount(d, amount):
    """Set amount, paid_amount and item price together."""
    d["amount"] = amount
    if "paid_amount" in d:
        d["paid_amount"] = amount
    for item in d.get("items", []):
        item["price"] = amount


def plant_usd(rng, invoices, slots, scale, used):
    """A few invoices in US dollars."""
    plan = [("PAID", "Canva", "4.99", 2), ("PAID", "Other", "25", 1), ("SETTLED", "Other", "49.99", 1)]
    for status, product, amount, count in plan:
        for i in pick(rng, plain_invoices(invoices, slots, status, product), count * scale, used):
            invoices[i]["currency"] = "USD"
            set_amount(invoices[i], Decimal(amount))


def plant_bad_amounts(rng, invoices, slots, scale, used):
    """Non-positive amounts (0, -800) and one amount sent as the string "800.00"."""
    plan = [("PAID", "P2P", Decimal("0")), ("PAID", "P2P", Decimal("-800")),
            ("SETTLED", "Canva", Decimal("0")), ("PAID", "P2P", "800.00")]
    for status, product, amount in plan:
        for i in pick(rng, plain_invoices(invoices, slots, status, product), scale, used):
            set_amount(invoices[i], amount)


def plant_dup_external(rng, invoices, slots, scale, used):
    """Pairs of different invoices that share one external_id."""
    pairs = [(("PAID", "P2P"), ("EXPIRED", "P2P")), (("PAID", "P2P"), ("PAID", "P2P")),
             (("SETTLED", "Canva"), ("PAID", "Canva")), (("PAID", "Canva"), ("EXPIRED", "Canva"))]
    total = DUP_EXTERNAL_GROUPS * scale
    for t, ((s1, p1), (s2, p2)) in enumerate(pairs):
        count = len(range(t, total, len(pairs)))
        firsts = pick(rng, plain_invoices(invoices, slots, s1, p1), count, used)
        seconds = pick(rng, plain_invoices(invoices, slots, s2, p2), count, used)
        for a, b in zip(firsts, seconds):
            invoices[b]["external_id"] = invoices[a]["external_id"]


def vary_invoice_emails(rng, invoices, slots, used):
    """Mixed-case and space-padded payer e-mails on untouched records."""
    for i, (d, s) in enumerate(zip(invoices, slots)):
        if i in used or "payer_email" not in d or s.person.email_kind == "invalid":
            continue
        r = rng.random()
        if r < INVOICE_CASE_RATE:
            d["payer_email"] = case_variant(rng, d["payer_email"])
        elif r < INVOICE_CASE_RATE + INVOICE_PAD_RATE:
            d["payer_email"] = pad_variant(rng, d["payer_email"])


def plain_contacts(contacts, owners, lead_only=False):
    """Indexes of contacts of normal people with the usual fields array."""
    out = []
    for i, (c, p) in enumerate(zip(contacts, owners)):
        if p.email_kind != "normal" or not isinstance(c.get("fields"), list):
            continue
        if lead_only and (p.group != "lead" or p.dup):
            continue
        out.append(i)
    return out


def field(c, slug):
    """The field dict with this slug, or None."""
    for f in c["fields"]:
        if f["slug"] == slug:
            return f
    return None


def plant_contact_mess(rng, contacts, owners, scale):
    """Plant the documented record-level mess in the contacts; returns the used indexes."""
    used = set()
    for i in pick(rng, plain_contacts(contacts, owners), CONTACT_NO_FIELDS * scale, used):
        contacts[i]["fields"] = []
    for i in pick(rng, plain_contacts(contacts, owners), CONTACT_NULL_VALUE * scale, used):
        field(contacts[i], rng.choice(["first_name", "surname"]))["value"] = None
    for i in pick(rng, plain_contacts(contacts, owners), CONTACT_FIELDS_OBJECT * scale, used):
        c = contacts[i]
        c["fields"] = {"first_name": field(c, "first_name")["value"], "surname": field(c, "surname")["value"]}
    for i in pick(rng, plain_contacts(contacts, owners), CONTACT_EMOJI * scale, used):
        f = field(contacts[i], "first_name")
        f["value"] = f["value"] + " " + rng.choice(EMOJI)
    for i in pick(rng, plain_contacts(contacts, owners), CONTACT_MISSING_KEYS * scale, used):
        c = contacts[i]
        keys = rng.sample(CONTACT_OPTIONAL_KEYS, rng.randrange(1, 3))
        if owners[i].klass == "N" and rng.random() < 0.5:
            keys.append("tags")
        for k in keys:
            c.pop(k, None)
    unstorable = pick(rng, plain_contacts(contacts, owners, lead_only=True), 1, used)[0]
    f = field(contacts[unstorable], "surname")
    f["value"] = f["value"] + "\u0000"
    vary_contact_emails(rng, contacts, owners, used)
    return used


def vary_contact_emails(rng, contacts, owners, used):
    """Mixed-case and space-padded e-mails on untouched records (duplicates already differ)."""
    for i, (c, p) in enumerate(zip(contacts, owners)):
        if i in used or p.email_kind == "invalid" or c["email"] != p.email:
            continue
        r = rng.random()
        if r < CONTACT_CASE_RATE:
            c["email"] = case_variant(rng, c["email"])
        elif r < CONTACT_CASE_RATE + CONTACT_PAD_RATE:
            c["email"] = pad_variant(rng, c["email"])


# ---------------------------------------------------------------------------------------------
# Truth: everything measured from the final records.


def is_test_email(email):
    """Test accounts: @example.com and @test.com addresses."""
    n = norm_email(email)
    return n is not None and (n.endswith("@example.com") or n.endswith("@test.com"))


def email_kinds(email):
    """Which e-mail mess kinds apply to one address."""
    kinds = []
    if not isinstance(email, str):
        return ["email_missing"]
    if email != email.strip(" "):
        kinds.append("email_padded")
    if email.strip(" ") != email.strip(" ").lower():
        kinds.append("email_mixed_case")
    if not EMAIL_RE.match(email.strip(" ")):
        kinds.append("email_invalid")
    if is_test_email(email):
        kinds.append("email_test_account")
    return kinds


def amount_text(value):
    """The exact JSON text of an amount value."""
    if isinstance(value, (Decimal, int)) and not isinstance(value, bool):
        return str(value)
    return dumps(value)


def invoice_truth(invoices, unstorable_ids):
    """Status x product table and invoice mess lists."""
    table = {s: {"P2P": 0, "Canva": 0, "Other": 0, "total": 0} for s in EXPECTED_STATUS}
    mess = {k: [] for k in ("email_missing", "email_missing_paid", "email_padded", "email_mixed_case",
                            "email_invalid", "email_test_account", "description_missing",
                            "currency_not_php", "amount_non_positive", "amount_non_numeric",
                            "amount_two_decimals", "missing_optional_keys")}
    by_external = {}
    missing = {}
    for d in invoices:
        status, product = d["status"], product_of(d.get("description"))
        table[status][product] += 1
        table[status]["total"] += 1
        for kind in email_kinds(d.get("payer_email")):
            mess[kind].append(d["id"])
        if "payer_email" not in d and status in ("PAID", "SETTLED"):
            mess["email_missing_paid"].append(d["id"])
        if "description" not in d:
            mess["description_missing"].append(d["id"])
        if d.get("currency", "PHP") != "PHP":
            mess["currency_not_php"].append(d["id"])
        amount = d.get("amount")
        if isinstance(amount, (Decimal, int)):
            if amount <= 0:
                mess["amount_non_positive"].append(d["id"])
            if "." in amount_text(amount) and len(amount_text(amount).split(".")[1]) == 2:
                mess["amount_two_decimals"].append(d["id"])
        else:
            mess["amount_non_numeric"].append(d["id"])
        gone = [k for k in INVOICE_OPTIONAL_KEYS if k not in d]
        if gone:
            missing[d["id"]] = gone
            mess["missing_optional_keys"].append(d["id"])
        by_external.setdefault(d.get("external_id"), []).append(d["id"])
    groups = [ids for ext, ids in by_external.items() if ext is not None and len(ids) > 1]
    mess["external_id_duplicate"] = sorted(i for g in groups for i in g)
    mess["unstorable"] = list(unstorable_ids)
    return table, mess, groups, missing


def contact_names(c):
    """First and last name of a contact, whatever the shape of its fields."""
    f = c.get("fields")
    if isinstance(f, dict):
        return f.get("first_name"), f.get("surname")
    if isinstance(f, list):
        first = next((x.get("value") for x in f if x.get("slug") == "first_name"), None)
        last = next((x.get("value") for x in f if x.get("slug") == "surname"), None)
        return first, last
    return None, None


def has_emoji(text):
    """True when a name holds an emoji or other pictograph."""
    return not text.isascii() and any(ord(ch) > 0xFFFF or unicodedata.category(ch) == "So" for ch in text)


def has_accent(text):
    """True when a name holds a non-ASCII letter (José, Niño, Peña, Ñañez)."""
    return not text.isascii() and any(ord(ch) > 127 and unicodedata.category(ch).startswith("L") for ch in text)


def contact_truth(contacts, unstorable_ids):
    """Tag counts and contact mess lists."""
    tags = {}
    both = 0
    mess = {k: [] for k in ("email_padded", "email_mixed_case", "email_invalid", "email_test_account",
                            "name_accents", "name_emoji", "fields_empty", "fields_null_value",
                            "fields_object", "missing_keys")}
    by_email = {}
    missing = {}
    for c in contacts:
        names = [t["name"] for t in c.get("tags", [])]
        for n in names:
            tags[n] = tags.get(n, 0) + 1
        if "PaidP2P" in names and "Canva" in names:
            both += 1
        for kind in email_kinds(c.get("email")):
            mess[kind].append(c["id"])
        first, last = contact_names(c)
        text = " ".join(x for x in (first, last) if isinstance(x, str))
        if has_accent(text):
            mess["name_accents"].append(c["id"])
        if has_emoji(text):
            mess["name_emoji"].append(c["id"])
        fields = c.get("fields")
        if fields == []:
            mess["fields_empty"].append(c["id"])
        elif isinstance(fields, dict):
            mess["fields_object"].append(c["id"])
        elif any(x.get("value") is None for x in fields):
            mess["fields_null_value"].append(c["id"])
        gone = [k for k in CONTACT_OPTIONAL_KEYS + ["tags"] if k not in c]
        if gone:
            missing[c["id"]] = gone
            mess["missing_keys"].append(c["id"])
        by_email.setdefault(norm_email(c.get("email")), []).append(c["id"])
    groups = [sorted(ids) for e, ids in by_email.items() if e is not None and len(ids) > 1]
    groups.sort()
    mess["duplicate_email"] = sorted(i for g in groups for i in g)
    mess["unstorable"] = list(unstorable_ids)
    tags = dict(sorted(tags.items()))
    return tags, both, mess, groups, missing


def paid_p2p_emails(invoices):
    """Normalized payer e-mails of PAID/SETTLED P2P invoices."""
    return {norm_email(d["payer_email"]) for d in invoices
            if d["status"] in ("PAID", "SETTLED") and product_of(d.get("description")) == "P2P"
            and isinstance(d.get("payer_email"), str)}


def manual_payment_truth(invoices, contacts):
    """PaidP2P contacts with no PAID/SETTLED P2P invoice for the same lower(trim(email))."""
    paid = paid_p2p_emails(invoices)
    ids, emails = [], set()
    for c in contacts:
        if any(t["name"] == "PaidP2P" for t in c.get("tags", [])):
            e = norm_email(c.get("email"))
            if e not in paid:
                ids.append(c["id"])
                emails.add(e)
    contact_emails = {norm_email(c.get("email")) for c in contacts}
    payers_without_contact = sorted(e for e in paid if e not in contact_emails)
    return {"contacts": len(ids), "distinct_emails": len(emails), "contact_ids": sorted(ids),
            "paid_p2p_emails_without_contact": len(payers_without_contact)}


def amount_samples(invoices):
    """A few (id, exact amount text) pairs, two-decimal ones included."""
    wanted = ["800", "1000", "1499.50", "400", "99", "149", "199.50", "249", "3500.75", "250.25",
              "0.01", "123456.78", "4.99", "0", "-800", '"800.00"']
    out, seen = [], set()
    for d in reversed(invoices):
        if "amount" not in d:
            continue
        text = amount_text(d["amount"])
        if text in wanted and text not in seen:
            seen.add(text)
            out.append({"id": d["id"], "amount": text, "json_type": "string" if text.startswith('"') else "number",
                        "status": d["status"], "currency": d.get("currency")})
    out.sort(key=lambda x: wanted.index(x["amount"]))
    return out


def check_exact(table, contacts_total, tags, both, invoices_total, scale):
    """Assert the exact seed figures (multiplied by the scale)."""
    for status, counts in EXPECTED_STATUS.items():
        for product, n in counts.items():
            got = table[status][product]
            assert got == n * scale, f"{status}/{product}: {got} != {n * scale}"
    assert invoices_total == EXPECTED_INVOICES * scale, invoices_total
    assert contacts_total == EXPECTED_CONTACTS * scale, contacts_total
    assert tags.get("PaidP2P") == EXPECTED_TAGS["PaidP2P"] * scale, tags.get("PaidP2P")
    assert tags.get("Canva") == EXPECTED_TAGS["Canva"] * scale, tags.get("Canva")
    assert both == EXPECTED_TAGS["PaidP2P_and_Canva"] * scale, both


def build_truth(scale, invoices, contacts, people, unstorable_invoice, unstorable_contact):
    """The truth document: counts, tables, mess lists and samples."""
    table, inv_mess, ext_groups, inv_missing = invoice_truth(invoices, [unstorable_invoice])
    tags, both, con_mess, dup_groups, con_missing = contact_truth(contacts, [unstorable_contact])
    check_exact(table, len(contacts), tags, both, len(invoices), scale)
    groups = {}
    for p in people:
        groups[p.group] = groups.get(p.group, 0) + 1
    return {
        "scale": scale,
        "seed": SEED,
        "counts": {"invoices": len(invoices), "contacts": len(contacts), "people": len(people)},
        "invoices_by_status_product": table,
        "contact_tags": tags,
        "contacts_paidp2p_and_canva": both,
        "tag_ids": TAG_IDS,
        "people_by_group": dict(sorted(groups.items())),
        "mess_counts": {"invoices": {k: len(v) for k, v in inv_mess.items()},
                        "contacts": {k: len(v) for k, v in con_mess.items()}},
        "unstorable": {"invoice_ids": [unstorable_invoice], "contact_ids": [unstorable_contact],
                       "reason": "a string holds the JSON escape \\u0000, which jsonb rejects"},
        "paidp2p_without_paid_p2p_invoice": manual_payment_truth(invoices, contacts),
        "amount_samples": amount_samples(invoices),
        "external_id_duplicate_groups": ext_groups,
        "duplicate_email_contact_groups": dup_groups,
        "invoice_missing_keys": inv_missing,
        "contact_missing_keys": con_missing,
        "mess": {"invoices": inv_mess, "contacts": con_mess},
        "notes": {
            "product": "P2P: description contains 'papers to profits' (case-insensitive); Canva: contains "
                       "'canva'; Other: anything else, including no description key",
            "email_identity": "lower(trim(email)), trim removing spaces only",
            "email_invalid": "trimmed address does not match ^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$",
            "email_test_account": "normalized address ends with @example.com or @test.com",
            "amount_two_decimals": "numeric amount written with exactly two decimals",
            "contacts_encoding": "contact texts escape non-ASCII as \\uXXXX (emoji as surrogate pairs); "
                                 "invoice texts are raw UTF-8",
        },
    }


# ---------------------------------------------------------------------------------------------
# The data set.


class Dataset:
    """Generated records as JSON text (ids and order included), the truth and the people."""

    def __init__(self, scale, invoices, contacts, invoice_ids, contact_ids, truth, people):
        """Hold one generated (or changed) data set."""
        self.scale = scale
        self.invoices = invoices
        self.contacts = contacts
        self.invoice_ids = invoice_ids
        self.contact_ids = contact_ids
        self.truth = truth
        self.people = people


def generate(scale=1):
    """Build the data set for a scale: invoices newest first, contacts by id descending, truth."""
    if scale < 1:
        raise ValueError("scale must be >= 1")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return build_dataset(scale)
    finally:
        if was_enabled:
            gc.enable()


def build_dataset(scale):
    """The steps of generate(), people first, records next, mess and truth last."""
    rng = random.Random(SEED)
    taken = set()
    people = make_people(rng, scale, taken)
    plan_paid(rng, people, scale)
    plan_unpaid(rng, people, scale, taken)
    assign_statuses(rng, people, scale)
    assign_times(rng, people)
    set_special_emails(rng, people, scale)
    slots = [s for p in people for s in p.slots]
    unique_times(slots)
    slots.reverse()
    ids = set()
    invoices = [build_invoice(rng, s, ids) for s in slots]
    contacts, owners = build_contacts(rng, people)
    plant_invoice_mess(rng, invoices, slots, scale)
    plant_contact_mess(rng, contacts, owners, scale)
    unstorable_invoice = next(d["id"] for d in invoices if "\u0000" in d.get("description", ""))
    unstorable_contact = next(c["id"] for c in contacts if isinstance(c.get("fields"), list)
                              and any("\u0000" in (f.get("value") or "") for f in c["fields"]))
    truth = build_truth(scale, invoices, contacts, people, unstorable_invoice, unstorable_contact)
    invoice_texts = [dumps(d) for d in invoices]
    contact_texts = [dumps(c, ascii_only=True) for c in contacts]
    return Dataset(scale, invoice_texts, contact_texts, [d["id"] for d in invoices],
                   [c["id"] for c in contacts], truth, people)


# ---------------------------------------------------------------------------------------------
# A changed copy: same ids and order, exactly n records of each source with different content.


def mess_ids(truth, source):
    """Every id that some mess list of the truth names."""
    out = set()
    for ids in truth["mess"][source].values():
        out.update(ids)
    return out


def change_invoice(d):
    """PENDING becomes PAID (paid_at, paid_amount, updated set); PAID becomes SETTLED."""
    created_ms = parse_iso_ms(d["created"])
    if d["status"] == "PENDING":
        paid_at = created_ms + HOUR
        d["status"] = "PAID"
        d["paid_amount"] = d["amount"]
        d["paid_at"] = iso_ms(paid_at)
        d["updated"] = iso_ms(paid_at + 2000)
        d["payment_method"] = "EWALLET"
        d["payment_channel"] = "GCASH"
    else:
        d["status"] = "SETTLED"
        d["updated"] = iso_ms(parse_iso_ms(d["paid_at"]) + 2 * DAY)
    return d


def parse_iso_ms(text):
    """Milliseconds since the epoch of a ...Z time with milliseconds."""
    d = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int((d - EPOCH).total_seconds() * 1000 + 0.5)


def changed(dataset, n):
    """A copy where exactly n invoices (oldest PENDING, then oldest PAID) and n contacts (lowest ids) changed."""
    if n < 0:
        raise ValueError("n must be >= 0")
    invoices = list(dataset.invoices)
    contacts = list(dataset.contacts)
    skip_inv = mess_ids(dataset.truth, "invoices")
    skip_con = mess_ids(dataset.truth, "contacts")
    pending, paid = [], []
    for i in range(len(invoices) - 1, -1, -1):
        if dataset.invoice_ids[i] in skip_inv:
            continue
        status = loads(invoices[i])["status"]
        if status == "PENDING":
            pending.append(i)
        elif status == "PAID":
            paid.append(i)
    chosen_inv = (pending + paid)[:n]
    if len(chosen_inv) < n:
        raise ValueError(f"cannot change {n} invoices")
    table = json.loads(json.dumps(dataset.truth["invoices_by_status_product"]))
    for i in chosen_inv:
        d = loads(invoices[i])
        product = product_of(d.get("description"))
        table[d["status"]][product] -= 1
        table[d["status"]]["total"] -= 1
        change_invoice(d)
        table[d["status"]][product] += 1
        table[d["status"]]["total"] += 1
        invoices[i] = dumps(d)
    chosen_con = []
    for i in range(len(contacts) - 1, -1, -1):
        if len(chosen_con) == n:
            break
        if dataset.contact_ids[i] in skip_con:
            continue
        c = loads(contacts[i])
        c["tags"].append({"id": TAG_IDS[CHANGED_TAG], "name": CHANGED_TAG})
        contacts[i] = dumps(c, ascii_only=True)
        chosen_con.append(i)
    if len(chosen_con) < n:
        raise ValueError(f"cannot change {n} contacts")
    truth = dict(dataset.truth)
    truth["invoices_by_status_product"] = table
    truth["contact_tags"] = dict(dataset.truth["contact_tags"])
    if n:
        truth["contact_tags"][CHANGED_TAG] = truth["contact_tags"].get(CHANGED_TAG, 0) + n
    truth["changed"] = {"n": n, "invoice_ids": sorted(dataset.invoice_ids[i] for i in chosen_inv),
                        "contact_ids": sorted(dataset.contact_ids[i] for i in chosen_con)}
    return Dataset(dataset.scale, invoices, contacts, dataset.invoice_ids, dataset.contact_ids,
                   truth, dataset.people)


# ---------------------------------------------------------------------------------------------
# Command line.


def write_array(path, texts):
    """Write records as one JSON array, one record per line."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("[\n")
        f.write(",\n".join(texts))
        f.write("\n]\n")
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)


def write_json(path, value):
    """Write a pretty JSON document."""
    text = json.dumps(value, indent=2)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)


def main(argv=None):
    """python3 generate.py --scale N --out DIR [--changed N] [--people]."""
    ap = argparse.ArgumentParser(description="Generate the migrate_ext emulator data set.")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--changed", type=int, default=None, help="write the copy with N changed records of each source")
    ap.add_argument("--people", action="store_true", help="also write people.json")
    args = ap.parse_args(argv)
    data = generate(args.scale)
    if args.changed is not None:
        data = changed(data, args.changed)
    os.makedirs(args.out, exist_ok=True)
    write_array(os.path.join(args.out, "invoices.json"), data.invoices)
    write_array(os.path.join(args.out, "contacts.json"), data.contacts)
    write_json(os.path.join(args.out, "truth.json"), data.truth)
    if args.people:
        write_json(os.path.join(args.out, "people.json"), [p.as_dict() for p in data.people])
    print(f"invoices={len(data.invoices)} contacts={len(data.contacts)} out={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
