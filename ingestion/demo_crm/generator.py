"""Deterministic synthetic CRM in HubSpot CRM v3 shape, plus demo product events.

The same ``(seed, n_contacts, id_offset)`` always produces the same records, and
``write_demo_events`` writes the same bytes for the same inputs, so tests and ``make run`` are
reproducible. The data is deliberately messy the way real CRMs are: duplicate people whose e-mails
differ only in case, contacts with a phone but no e-mail, phones in national and international
formats, unicode names, archived records, opted-out contacts and missing time zones.
"""

from __future__ import annotations

import json
import os
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OBJECT_TYPES = ("contacts", "companies", "deals")

#: Property holding the last-modified timestamp, per object type (HubSpot's own naming).
MODIFIED_PROPERTY = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}

#: HubSpot's default sales pipeline stages (pipeline id "default").
DEAL_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)
DEMO_PRODUCTS = ("atlas", "beacon")
LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
INDUSTRIES = (
    "COMPUTER_SOFTWARE",
    "FINANCIAL_SERVICES",
    "HOSPITAL_HEALTH_CARE",
    "RETAIL",
    "LOGISTICS_AND_SUPPLY_CHAIN",
    "EDUCATION_MANAGEMENT",
    "MARKETING_AND_ADVERTISING",
)
JOB_TITLES = (
    "CTO",
    "Head of Operations",
    "Marketing Manager",
    "Data Engineer",
    "Founder",
    "VP Sales",
    "Product Owner",
    "Analyst",
)
FEATURES = ("dashboards", "exports", "alerts", "api", "sso", "reports")

# (country name as typed into HubSpot, ISO region, HubSpot time zone, phone templates).
# "#" in a template is replaced by a random digit; the fixed digits keep the numbers valid
# for phonenumbers so most of them parse to E.164.
_COUNTRIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "United States",
        "US",
        "america_slash_los_angeles",
        ("(415) 555-01##", "415.555.01##", "+1 212 736 ####", "2127365###", "(646) 555-01##"),
    ),
    ("United Kingdom", "GB", "europe_slash_london", ("+44 20 7946 0###", "020 7946 0###", "07911 123###")),
    ("Germany", "DE", "europe_slash_berlin", ("0049 30 123456#", "+49 30 1234567#", "030 123456#")),
    ("France", "FR", "europe_slash_paris", ("+33 1 23 45 67 ##", "01 23 45 67 ##")),
    ("Spain", "ES", "europe_slash_madrid", ("+34 612 345 ###", "612 34 5###")),
    ("Norway", "NO", "europe_slash_oslo", ("+47 412 34 ###", "412 34 ###")),
    ("Brazil", "BR", "america_slash_sao_paulo", ("+55 11 91234-5###", "(11) 91234-5###")),
    ("China", "CN", "asia_slash_shanghai", ("+86 138 0013 8###",)),
    ("Japan", "JP", "asia_slash_tokyo", ("+81 3-1234-5###", "03-1234-5###")),
)
_GARBAGE_PHONES = ("n/a", "12345", "call me", "+00 000")

_FIRST_NAMES = (
    "Ana",
    "José",
    "Zoë",
    "Øyvind",
    "Björn",
    "François",
    "Chloé",
    "Mateus",
    "Priya",
    "Liam",
    "Olivia",
    "Noah",
    "Emma",
    "Hiroshi",
    "Sofía",
    "Jürgen",
    "Maëlle",
    "Wei",
    "李",
    "Łukasz",
)
_LAST_NAMES = (
    "Silva",
    "García",
    "Müller",
    "Hansen",
    "Smith",
    "O'Brien",
    "Nakamura",
    "Dubois",
    "Novak",
    "Ødegård",
    "Kowalski",
    "Wang",
    "明",
    "Johnson",
    "Fernández",
    "Schröder",
)
_COMPANY_WORDS = (
    "Acme",
    "Nordlicht",
    "Blue Harbor",
    "Quantum",
    "Papaya",
    "Ironbark",
    "Café Lumière",
    "Sakura",
    "Granite",
    "Helix",
    "Orbit",
    "Tandem",
)
_COMPANY_SUFFIXES = ("Inc.", "GmbH", "Ltd", "SA", "AS", "Labs", "Group", "")
_TLDS = ("com", "io", "de", "co.uk", "fr", "no", "com.br")
_FREEMAIL = ("gmail.com", "outlook.com", "proton.me", "yahoo.co.uk")


def anchor_for_seed(seed: int) -> datetime:
    """Fixed "now" of a demo data set: 2026-11-01 plus ``seed % 28`` days, at 12:00 UTC.

    Args:
        seed: The generator seed.

    Returns:
        A timezone-aware UTC datetime; all generated timestamps lie before it.
    """
    return datetime(2026, 11, 1, 12, tzinfo=UTC) + timedelta(days=seed % 28)


def hubspot_timestamp(moment: datetime) -> str:
    """Format a datetime the way HubSpot returns datetime properties (ms precision, ``Z``)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass
class DemoCrm:
    """A generated CRM: HubSpot v3 objects plus deal → contact associations.

    Attributes:
        seed: Seed used to generate the data.
        anchor: The data set's fixed "now".
        contacts: Contact objects (``{"id", "properties", "createdAt", "updatedAt", "archived"}``).
        companies: Company objects, same shape.
        deals: Deal objects, same shape.
        deal_contacts: Deal id → associated contact ids.
    """

    seed: int
    anchor: datetime
    contacts: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)
    deals: list[dict[str, Any]] = field(default_factory=list)
    deal_contacts: dict[str, list[str]] = field(default_factory=dict)

    def objects(self, object_type: str) -> list[dict[str, Any]]:
        """Return the objects of one type (``contacts``, ``companies`` or ``deals``)."""
        return getattr(self, object_type)


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    folded = folded.replace("Ø", "O").replace("ø", "o")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _fill(template: str, rng: random.Random) -> str:
    return "".join(str(rng.randrange(10)) if ch == "#" else ch for ch in template)


def _object(
    object_id: str,
    properties: dict[str, str | None],
    created: datetime,
    modified: datetime,
    archived: bool,
    archived_at: datetime | None,
) -> dict[str, Any]:
    props = {key: value for key, value in properties.items() if value is not None}
    props["hs_object_id"] = object_id
    obj: dict[str, Any] = {
        "id": object_id,
        "properties": props,
        "createdAt": hubspot_timestamp(created),
        "updatedAt": hubspot_timestamp(archived_at or modified),
        "archived": archived,
    }
    if archived_at is not None:
        obj["archivedAt"] = hubspot_timestamp(archived_at)
    return obj


def _times(rng: random.Random, anchor: datetime, max_age_days: int = 720) -> tuple[datetime, datetime]:
    created = anchor - timedelta(
        seconds=rng.randrange(3600, max_age_days * 86400), milliseconds=rng.randrange(1000)
    )
    span = int((anchor - created).total_seconds())
    modified = created + timedelta(
        seconds=rng.randrange(0, max(span - 60, 1)), milliseconds=rng.randrange(1000)
    )
    return created, modified


def generate_crm(seed: int = 42, n_contacts: int = 500, *, id_offset: int = 0) -> DemoCrm:
    """Generate a deterministic, realistically messy CRM.

    Args:
        seed: Random seed; the same seed gives the same CRM.
        n_contacts: Number of contacts (duplicates and archived ones included). Companies are
            about ``n_contacts / 8``, deals about ``0.4 * n_contacts``.
        id_offset: Added to every numeric id, so several CRMs can share one id space without
            collisions (contacts start at ``id_offset + 1``, companies at ``id_offset + 5_000_001``,
            deals at ``id_offset + 9_000_001``).

    Returns:
        The generated :class:`DemoCrm`.
    """
    rng = random.Random(f"leadflow-demo-crm-{seed}")
    anchor = anchor_for_seed(seed)
    crm = DemoCrm(seed=seed, anchor=anchor)
    # Bulk imports give many records the same timestamp, which the incremental sync must survive.
    import_time = anchor - timedelta(days=200, milliseconds=rng.randrange(1000))

    n_companies = max(1, n_contacts // 8)
    company_countries: list[tuple[str, str, str, tuple[str, ...]]] = []
    for index in range(n_companies):
        country = rng.choice(_COUNTRIES)
        company_countries.append(country)
        word = rng.choice(_COMPANY_WORDS)
        name = f"{word} {rng.choice(_COMPANY_SUFFIXES)}".strip()
        if rng.random() < 0.5:
            name = f"{name} {index}"
        domain = f"{_ascii(word)}{index}.{rng.choice(_TLDS)}"
        created, modified = _times(rng, anchor)
        archived = rng.random() < 0.03
        crm.companies.append(
            _object(
                str(id_offset + 5_000_001 + index),
                {
                    "name": name,
                    "domain": domain,
                    "industry": rng.choice(INDUSTRIES) if rng.random() < 0.85 else None,
                    "numberofemployees": str(rng.choice((5, 12, 40, 150, 800, 5000)))
                    if rng.random() < 0.8
                    else None,
                    "country": country[0],
                    "createdate": hubspot_timestamp(created),
                    "hs_lastmodifieddate": hubspot_timestamp(modified),
                },
                created,
                modified,
                archived,
                modified + timedelta(minutes=5) if archived else None,
            )
        )

    people: list[dict[str, Any]] = []
    for index in range(n_contacts):
        object_id = str(id_offset + 1 + index)
        duplicate_of = people[rng.randrange(len(people))] if people and rng.random() < 0.05 else None
        if duplicate_of is not None:
            props = dict(duplicate_of["properties"])
            props.pop("hs_object_id", None)
            if props.get("email"):
                local, _, domain = props["email"].partition("@")
                props["email"] = (
                    f"{local.capitalize()}@{domain.upper()}" if rng.random() < 0.5 else props["email"].upper()
                )
            region = (
                next(c for c in _COUNTRIES if c[0] == props.get("country", ""))
                if props.get("country")
                else None
            )
            if region is not None and rng.random() < 0.5:
                props["phone"] = _fill(rng.choice(region[3]), rng)
        else:
            company_index = rng.randrange(n_companies)
            company = crm.companies[company_index]
            country = company_countries[company_index] if rng.random() < 0.7 else rng.choice(_COUNTRIES)
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            local = ".".join(part for part in (_ascii(first), _ascii(last)) if part) or f"user{object_id}"
            has_company = rng.random() < 0.8
            domain = (
                company["properties"]["domain"]
                if has_company and rng.random() < 0.7
                else rng.choice(_FREEMAIL)
            )
            email = f"{local}{rng.randrange(100) if rng.random() < 0.3 else ''}@{domain}"
            if rng.random() < 0.1:
                email = email.capitalize()
            phone_roll = rng.random()
            props = {
                "email": None if rng.random() < 0.08 else email,
                "firstname": first if rng.random() < 0.97 else None,
                "lastname": last if rng.random() < 0.9 else None,
                "phone": _fill(rng.choice(country[3]), rng) if phone_roll < 0.75 else None,
                "mobilephone": _fill(rng.choice(country[3]), rng) if rng.random() < 0.2 else None,
                "country": country[0] if rng.random() < 0.9 else None,
                "hs_timezone": country[2] if rng.random() < 0.7 else None,
                "jobtitle": rng.choice(JOB_TITLES) if rng.random() < 0.6 else None,
                "lifecyclestage": rng.choice(LIFECYCLE_STAGES),
                "hs_email_optout": "true" if rng.random() < 0.07 else "false",
                "associatedcompanyid": company["id"] if has_company else None,
            }
            if props["email"] is None and props["phone"] is None:
                props["phone"] = _fill(rng.choice(country[3]), rng)
            if phone_roll > 0.98:
                props["phone"] = rng.choice(_GARBAGE_PHONES)
        if rng.random() < 0.1:
            created = import_time - timedelta(days=1)
            modified = import_time
        else:
            created, modified = _times(rng, anchor)
        archived = rng.random() < 0.03
        props["createdate"] = hubspot_timestamp(created)
        props["lastmodifieddate"] = hubspot_timestamp(modified)
        contact = _object(
            object_id,
            props,
            created,
            modified,
            archived,
            modified + timedelta(minutes=5) if archived else None,
        )
        crm.contacts.append(contact)
        people.append(contact)

    n_deals = max(len(DEAL_STAGES), int(n_contacts * 0.4))
    live_contacts = [c["id"] for c in crm.contacts if not c["archived"]] or [c["id"] for c in crm.contacts]
    for index in range(n_deals):
        object_id = str(id_offset + 9_000_001 + index)
        stage = DEAL_STAGES[index] if index < len(DEAL_STAGES) else rng.choice(DEAL_STAGES)
        product = DEMO_PRODUCTS[index % 2] if index < 2 else rng.choice(DEMO_PRODUCTS)
        created, modified = _times(rng, anchor, max_age_days=365)
        closed = stage in ("closedwon", "closedlost")
        close_date = (
            modified
            if closed
            else (anchor + timedelta(days=rng.randrange(5, 90)) if rng.random() < 0.5 else None)
        )
        archived = rng.random() < 0.03
        crm.deals.append(
            _object(
                object_id,
                {
                    "dealname": f"{product.capitalize()} for {rng.choice(_COMPANY_WORDS)} #{index}",
                    "amount": f"{rng.randrange(5, 500) * 100}.{rng.choice(('00', '50'))}"
                    if rng.random() < 0.85
                    else None,
                    "dealstage": stage,
                    "pipeline": "default",
                    "closedate": hubspot_timestamp(close_date) if close_date else None,
                    "createdate": hubspot_timestamp(created),
                    "hs_lastmodifieddate": hubspot_timestamp(modified),
                    "leadflow_product": product,
                },
                created,
                modified,
                archived,
                modified + timedelta(minutes=5) if archived else None,
            )
        )
        n_assoc = rng.choice((1, 1, 1, 2, 3)) if rng.random() < 0.95 else 0
        crm.deal_contacts[object_id] = sorted(
            set(rng.sample(live_contacts, min(n_assoc, len(live_contacts)))), key=int
        )
    return crm


def demo_events(seed: int, crm: DemoCrm, n_events: int | None = None) -> list[dict[str, Any]]:
    """Build deterministic product events for a subset of CRM people and for unknown users.

    Args:
        seed: Random seed (usually the CRM's seed).
        crm: The CRM whose contacts the events partly refer to.
        n_events: Number of events; defaults to ``10 * len(crm.contacts)`` (5,000 for 500 contacts).

    Returns:
        Event dicts in the landing format, ordered by ``occurred_at``.
    """
    rng = random.Random(f"leadflow-demo-events-{seed}")
    anchor = anchor_for_seed(seed)
    n_events = 10 * len(crm.contacts) if n_events is None else n_events
    known = [c for c in crm.contacts if not c["archived"] and rng.random() < 0.6]
    users: list[dict[str, Any]] = []
    for contact in known:
        props = contact["properties"]
        users.append(
            {
                "email": props.get("email"),
                "phone": props.get("phone") if not props.get("email") else None,
                "user_id": f"u-{contact['id']}",
                "product_id": rng.choice(DEMO_PRODUCTS),
                "weight": rng.choice((1, 1, 2, 5, 12)),
            }
        )
    for index in range(max(1, len(crm.contacts) // 3)):
        region = rng.choice(_COUNTRIES)
        with_email = rng.random() < 0.85
        users.append(
            {
                "email": f"{_ascii(rng.choice(_FIRST_NAMES)) or 'user'}.{index}@{rng.choice(_FREEMAIL)}"
                if with_email
                else None,
                "phone": None if with_email else _fill(rng.choice(region[3]), rng),
                "user_id": f"p-{seed}-{index}",
                "product_id": rng.choice(DEMO_PRODUCTS),
                "weight": rng.choice((1, 1, 2, 4)),
            }
        )
    weights = [u["weight"] for u in users]
    event_types = ("login", "feature_used", "pricing_page_viewed", "trial_started", "demo_requested")
    chosen = rng.choices(users, weights=weights, k=n_events)
    events: list[dict[str, Any]] = []
    for index, user in enumerate(chosen):
        event_type = rng.choices(event_types, weights=(70, 20, 6, 2, 2))[0]
        occurred = anchor - timedelta(seconds=rng.randrange(60 * 86400))
        email = user["email"]
        if email and rng.random() < 0.15:
            email = rng.choice((email.upper(), f"  {email} ", email.capitalize()))
        properties: dict[str, Any] = {}
        if event_type == "feature_used":
            properties = {"feature": rng.choice(FEATURES)}
        elif event_type == "pricing_page_viewed":
            properties = {"page": "/pricing", "plan_viewed": rng.choice(("starter", "pro", "enterprise"))}
        elif event_type == "trial_started":
            properties = {"plan": rng.choice(("pro", "enterprise"))}
        event = {
            "event_id": f"demo-{seed}-{index:07d}",
            "event_type": event_type,
            "occurred_at": occurred.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "product_id": user["product_id"],
            "email": email,
            "phone": user["phone"],
            "user_id": user["user_id"],
            "source": "product",
            "properties": properties,
        }
        events.append({key: value for key, value in event.items() if value is not None})
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    return events


def write_demo_events(
    landing_dir: str | os.PathLike[str], seed: int, crm: DemoCrm, n_events: int | None = None
) -> Path:
    """Write demo product events to ``<landing_dir>/product_events/demo-<seed>.jsonl``.

    Writes ``.jsonl.tmp``, fsyncs, then renames, so the ``.jsonl`` is complete and immutable. If
    the file already exists nothing is written (the loader loads each file once).

    Args:
        landing_dir: The landing zone root (``$LEADFLOW_HOME/landing``).
        seed: Random seed; the same seed and CRM give the same bytes.
        crm: The CRM the events partly refer to.
        n_events: Number of events (default ``10 * len(crm.contacts)``).

    Returns:
        Path of the ``.jsonl`` file.
    """
    target = Path(landing_dir) / "product_events" / f"demo-{seed}.jsonl"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(
        json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in demo_events(seed, crm, n_events)
    )
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target
