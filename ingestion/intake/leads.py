"""Lead Tracker reads from the dbt marts over short-lived read-only connections.

Tables from later issues (`fct_lead_stages`, `fct_lead_stage_transitions`) are optional: absent → the
fields degrade to what `fct_lead_scores` says, and the audit trail is empty. Columns are picked by
name so a mart gaining columns never breaks the API.
"""

from __future__ import annotations

import hashlib
from typing import Any

from activation.warehouse import Warehouse

SCHEMA = "analytics"
_TRANSITION_TIME_COLUMNS = ("transitioned_at", "occurred_at", "changed_at", "entered_at", "valid_from")


class MartMissing(Exception):
    """A required mart is not built yet (the pipeline has not run)."""


def lead_id_for(email: str | None, phone_e164: str | None) -> str | None:
    """The lead id dbt gives this person: md5('email:<trim+lower email>'), else md5('phone:<e164>')."""
    if email and email.strip():
        return hashlib.md5(f"email:{email.strip().lower()}".encode()).hexdigest()
    if phone_e164:
        return hashlib.md5(f"phone:{phone_e164}".encode()).hexdigest()
    return None


def _first(row: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return None


def fetch_lead(db: Warehouse, lead_id: str) -> dict[str, Any] | None:
    if not db.table_exists(SCHEMA, "dim_leads"):
        raise MartMissing("analytics.dim_leads is not built yet: run the pipeline (leadflow run)")
    rows = db.query(f"select * from {SCHEMA}.dim_leads where lead_id = ?", [lead_id])
    return rows[0] if rows else None


def fetch_scores(db: Warehouse, lead_id: str) -> list[dict[str, Any]]:
    """One dict per product: the fct_lead_scores row, with `stage` from fct_lead_stages when it exists."""
    scores: dict[str, dict[str, Any]] = {}
    if db.table_exists(SCHEMA, "fct_lead_scores"):
        for row in db.query(f"select * from {SCHEMA}.fct_lead_scores where lead_id = ?", [lead_id]):
            row["stage"] = "sql" if row.get("is_sql") else "mql" if row.get("is_mql") else "lead"
            scores[str(row["product_id"])] = row
    if db.table_exists(SCHEMA, "fct_lead_stages"):
        for row in db.query(f"select * from {SCHEMA}.fct_lead_stages where lead_id = ?", [lead_id]):
            product_id = row.get("product_id")
            stage = _first(row, ("stage", "current_stage", "to_stage"))
            if product_id is None or stage is None:
                continue
            scores.setdefault(str(product_id), {"product_id": str(product_id)})["stage"] = stage
    return [scores[key] for key in sorted(scores)]


def fetch_transitions(db: Warehouse, lead_id: str) -> list[dict[str, Any]]:
    if not db.table_exists(SCHEMA, "fct_lead_stage_transitions"):
        return []
    rows = db.query(f"select * from {SCHEMA}.fct_lead_stage_transitions where lead_id = ?", [lead_id])
    out = [
        {
            "product_id": row.get("product_id"),
            "from_stage": _first(row, ("from_stage", "previous_stage")),
            "to_stage": _first(row, ("to_stage", "stage", "new_stage")),
            "transitioned_at": _first(row, _TRANSITION_TIME_COLUMNS),
            "reason": _first(row, ("reason", "trigger", "source")),
            "transition_seq": row.get("transition_seq"),
            "rule_id": row.get("rule_id"),
            "triggering_event_id": row.get("triggering_event_id"),
            "score": row.get("score"),
            "rules_version": row.get("rules_version"),
        }
        for row in rows
    ]
    # several moves of one signal share a timestamp: transition_seq orders them
    out.sort(
        key=lambda t: (
            str(t["product_id"] or ""),
            t["transition_seq"] if t["transition_seq"] is not None else 0,
            str(t["transitioned_at"] or ""),
        )
    )
    return out
