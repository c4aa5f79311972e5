"""`leadflow activate --dry-run`: what a real run would send now, what is suppressed and why; writes nothing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from activation.delivery import plan_delivery
from activation.warehouse import connect

EXCLUSIONS_MODEL = "fct_message_exclusions"
CAP_REASONS = ("daily_cap", "weekly_cap")


@dataclass
class DryRunReport:
    """Counts per (product, channel) to send, suppressions by reason, cap hits and sample payloads."""

    send_list: str
    to_send: Counter = field(default_factory=Counter)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    suppressed: Counter = field(default_factory=Counter)
    cap_hits: list[dict[str, Any]] = field(default_factory=list)
    already_sent: int = 0
    not_yet_due: int = 0
    given_up: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_to_send(self) -> int:
        return sum(self.to_send.values())

    def render(self) -> str:
        lines = [f"dry run of {self.send_list}: nothing is sent or recorded"]
        lines.append(f"  would send: {self.total_to_send} messages")
        for (product, channel), count in sorted(self.to_send.items(), key=lambda item: str(item[0])):
            lines.append(f"    {product:<12} {channel:<10} {count}")
        lines.append(
            f"  already sent: {self.already_sent}; due later (quiet hours, delays): {self.not_yet_due}; "
            f"given up after repeated failures: {self.given_up}"
        )
        if self.quarantined:
            lines.append(f"  would quarantine (template errors): {len(self.quarantined)}")
            for key, reason in self.quarantined[:5]:
                lines.append(f"    {key}: {reason}")
        if self.suppressed:
            lines.append("  suppressed, by reason:")
            for (product, channel, reason), count in sorted(
                self.suppressed.items(), key=lambda item: tuple(str(part or "") for part in item[0])
            ):
                lines.append(f"    {product:<12} {channel or '-':<10} {reason:<22} {count}")
        if self.cap_hits:
            lines.append(f"  leads over the contact budget: {len(self.cap_hits)}")
            for hit in self.cap_hits[:10]:
                lines.append(f"    {hit['lead_id']} {hit['product_id']} {hit['reason']}")
        for sample in self.samples:
            lines.append(f"  sample {sample['product_id']}/{sample['channel']} → {sample['recipient']}:")
            lines.append(f"    subject: {sample['content'].get('subject')}")
            text = (sample["content"].get("text") or "").splitlines()
            lines.extend(f"    | {line}" for line in text[:6])
        return "\n".join(lines)


def dry_run(
    warehouse_url: str,
    send_list: str,
    *,
    from_email: str,
    unsubscribe_group_id: int | None = None,
    schema: str = "analytics",
    now: datetime | None = None,
    samples_per_channel: int = 1,
) -> DryRunReport:
    """Plan delivery exactly as a real run would (same ledger diff, same rendering), without writing."""
    report = DryRunReport(send_list=send_list)
    with connect(warehouse_url, read_only=True) as warehouse:
        plan = plan_delivery(
            warehouse,
            send_list,
            from_email=from_email,
            unsubscribe_group_id=unsubscribe_group_id,
            schema=schema,
            now=now,
        )
        if warehouse.table_exists(schema, EXCLUSIONS_MODEL):
            for row in warehouse.query(
                f"select product_id, channel, reason, count(*) as n from {schema}.{EXCLUSIONS_MODEL} "
                "group by product_id, channel, reason"
            ):
                report.suppressed[(row["product_id"], row["channel"], row["reason"])] = int(row["n"])
            report.cap_hits = warehouse.query(
                f"select lead_id, product_id, reason from {schema}.{EXCLUSIONS_MODEL} "
                f"where reason in ({', '.join('?' for _ in CAP_REASONS)}) order by lead_id, product_id",
                list(CAP_REASONS),
            )
    report.already_sent, report.not_yet_due, report.given_up = (
        plan.already_sent,
        plan.not_yet_due,
        plan.given_up,
    )
    report.quarantined = [(row["idempotency_key"], reason) for row, reason in plan.quarantined]
    seen: Counter = Counter()
    for message in plan.messages:
        slot = (message.get("product_id"), message.get("channel"))
        report.to_send[slot] += 1
        if seen[slot] < samples_per_channel:
            seen[slot] += 1
            report.samples.append(message)
    return report
