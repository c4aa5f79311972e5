"""The raw CRM tables (ARCHITECTURE.md "Raw tables"): columns, types and row conversion.

Shared by the HubSpot source and the SQL CRM source so both produce identical tables.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import phonenumbers
from dlt.common.schema.typing import TTableSchemaColumns

#: Property holding the last-modified timestamp (the incremental cursor), per object type.
MODIFIED_PROPERTY = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}

#: HubSpot properties requested per object type (everything the raw tables keep).
PROPERTIES = {
    "contacts": (
        "email",
        "firstname",
        "lastname",
        "phone",
        "mobilephone",
        "country",
        "hs_timezone",
        "jobtitle",
        "lifecyclestage",
        "hs_email_optout",
        "associatedcompanyid",
        "createdate",
        "lastmodifieddate",
    ),
    "companies": (
        "name",
        "domain",
        "industry",
        "numberofemployees",
        "country",
        "createdate",
        "hs_lastmodifieddate",
    ),
    "deals": (
        "dealname",
        "amount",
        "dealstage",
        "pipeline",
        "closedate",
        "createdate",
        "hs_lastmodifieddate",
        "leadflow_product",
    ),
}

_TEXT = {"data_type": "text", "nullable": True}
_TS = {"data_type": "timestamp", "timezone": True, "nullable": True}
_BOOL = {"data_type": "bool", "nullable": True}


def _columns(names: tuple[str, ...], special: dict[str, dict[str, Any]]) -> TTableSchemaColumns:
    columns: TTableSchemaColumns = {"id": {"data_type": "text", "nullable": False, "primary_key": True}}
    for name in names:
        columns[name] = dict(special.get(name, _TEXT))  # type: ignore[assignment]
    columns["archived"] = dict(_BOOL)  # type: ignore[assignment]
    return columns


#: dlt column hints of the raw tables (``deals__contact_ids`` comes from the ``contact_ids`` list).
COLUMNS: dict[str, TTableSchemaColumns] = {
    "contacts": _columns(
        (*PROPERTIES["contacts"][:5], "phone_e164", *PROPERTIES["contacts"][5:]),
        {"hs_email_optout": _BOOL, "createdate": _TS, "lastmodifieddate": _TS},
    ),
    "companies": _columns(
        PROPERTIES["companies"],
        {
            "numberofemployees": {"data_type": "bigint", "nullable": True},
            "createdate": _TS,
            "hs_lastmodifieddate": _TS,
        },
    ),
    "deals": _columns(
        PROPERTIES["deals"],
        {
            "amount": {"data_type": "double", "nullable": True},
            "closedate": _TS,
            "createdate": _TS,
            "hs_lastmodifieddate": _TS,
        },
    ),
}

# Country as typed into a CRM → ISO region for phonenumbers. Two-letter codes pass through.
_COUNTRY_REGIONS = {
    "united states": "US",
    "usa": "US",
    "us": "US",
    "united states of america": "US",
    "canada": "CA",
    "united kingdom": "GB",
    "uk": "GB",
    "great britain": "GB",
    "england": "GB",
    "ireland": "IE",
    "germany": "DE",
    "deutschland": "DE",
    "france": "FR",
    "spain": "ES",
    "españa": "ES",
    "portugal": "PT",
    "italy": "IT",
    "netherlands": "NL",
    "belgium": "BE",
    "switzerland": "CH",
    "austria": "AT",
    "norway": "NO",
    "norge": "NO",
    "sweden": "SE",
    "denmark": "DK",
    "finland": "FI",
    "poland": "PL",
    "brazil": "BR",
    "brasil": "BR",
    "mexico": "MX",
    "argentina": "AR",
    "china": "CN",
    "japan": "JP",
    "india": "IN",
    "australia": "AU",
    "new zealand": "NZ",
    "singapore": "SG",
    "south africa": "ZA",
}


def region_for_country(country: str | None) -> str | None:
    """ISO 3166 region code for a free-text country (``"Germany"`` → ``"DE"``), else None."""
    if not country:
        return None
    text = country.strip()
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return _COUNTRY_REGIONS.get(text.lower())


def to_e164(phone: str | None, country: str | None) -> str | None:
    """Parse a phone number with ``phonenumbers`` (default region from ``country``) to E.164.

    Returns:
        The E.164 string, or None when the number is missing, unparseable or invalid.
    """
    if not phone or not str(phone).strip():
        return None
    try:
        parsed = phonenumbers.parse(str(phone), region_for_country(country))
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def to_datetime(value: Any) -> datetime | None:
    """HubSpot datetime (ISO 8601 or epoch millis string), or a DB value, → aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_bool(value: Any) -> bool | None:
    """HubSpot boolean strings (``"true"``/``"false"``) → bool; empty → None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def _to_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _to_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_CONVERTERS = {
    "timestamp": to_datetime,
    "bool": to_bool,
    "bigint": _to_int,
    "double": _to_float,
    "text": _to_text,
}


def to_row(object_type: str, object_id: Any, values: dict[str, Any], archived: bool) -> dict[str, Any]:
    """Build one raw-table row from flat property values (HubSpot strings or DB values).

    Args:
        object_type: ``contacts``, ``companies`` or ``deals``.
        object_id: The record id (stored as text).
        values: Property name → value; missing properties become None.
        archived: Whether the record is archived in the CRM.

    Returns:
        A dict with exactly the table's columns, typed as in :data:`COLUMNS`.
    """
    row: dict[str, Any] = {"id": str(object_id)}
    for name, column in COLUMNS[object_type].items():
        if name in ("id", "archived", "phone_e164"):
            continue
        row[name] = _CONVERTERS[column["data_type"]](values.get(name))
    if object_type == "contacts":
        row["phone_e164"] = to_e164(row["phone"], row["country"]) or to_e164(
            row["mobilephone"], row["country"]
        )
    row["archived"] = bool(archived)
    return row
