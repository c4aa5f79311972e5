"""Analytics report, mart exports and the metric queries the `/metrics` API shares (plain Python, no Dagster).

Everything reads the analytics marts (dbt_project/models/marts/analytics) over short-lived read-only
connections, so a report can run while nothing else writes (DuckDB: one writer process, no readers beside it).

- `read_metrics(url)` / the `query_*` functions: the numbers, as plain dicts (the API serves these).
- `build_report(url, out_path)`: ONE self-contained HTML file (charts are inline SVG drawn by matplotlib,
  no scripts, no external resources) with the funnel per product, conversion by weekly cohort, time to
  conversion, attribution by channel under each model, message performance and holdout lift with its CI.
- `export_marts(url, out_dir, fmt)`: every analytics mart as CSV or JSON (ISO 8601 timestamps).
- `add_cli_commands(subparsers)`: `leadflow report [--out PATH]`, `leadflow export --format csv|json --out DIR`.
- `report_metadata(result)`: figures for a Dagster materialization.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from activation.warehouse import Warehouse, connect

SCHEMA = "analytics"
# every analytics mart, with the order its export and reads use (deterministic files)
ANALYTICS_MARTS: dict[str, str] = {
    "fct_conversions": "conversion_id, lead_id",
    "fct_conversion_funnel": "product_id, workflow, channel, cohort_week, stage_order",
    "fct_time_to_conversion": "product_id, measured_from, channel",
    "fct_conversion_attribution": "conversion_id, attribution_model, touch_position",
    "fct_message_performance": "product_id, workflow, template, channel",
    "fct_holdout_lift": "product_id, workflow",
}
FUNNEL_STAGES = ("new", "engaged", "mql", "sql", "opportunity", "customer")
ATTRIBUTION_MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
CHART_IDS = ("funnel", "cohort-trend", "time-to-conversion", "attribution", "holdout-lift")


class MartMissing(Exception):
    """An analytics mart is not built yet (run `leadflow transform` or `leadflow run`)."""


# --- values -----------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A warehouse value as a JSON-ready Python value: Decimal → int/float, timestamps → aware UTC datetimes."""
    if isinstance(value, Decimal):
        return (
            int(value)
            if value == value.to_integral_value() and value.as_tuple().exponent >= 0
            else float(value)
        )
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return value


def _rows(db: Warehouse, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in db.query(sql, params)]


def _require(db: Warehouse, table: str) -> None:
    if not db.table_exists(SCHEMA, table):
        raise MartMissing(f"{SCHEMA}.{table} is not built yet: run the pipeline (leadflow run)")


def _filters(**equals: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for column, value in equals.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return (" where " + " and ".join(clauses)) if clauses else "", params


def _rate(numerator: float | None, denominator: float | None) -> float | None:
    return None if not denominator or numerator is None else numerator / denominator


# --- queries (shared with ingestion/intake/metrics.py) ----------------------------------------------


def query_funnel(
    db: Warehouse, product_id: str | None = None, channel: str | None = None, workflow: str | None = None
) -> list[dict[str, Any]]:
    """Funnel per product (summed over channels, workflows and cohorts unless filtered)."""
    _require(db, "fct_conversion_funnel")
    where, params = _filters(product_id=product_id, channel=channel, workflow=workflow)
    rows = _rows(
        db,
        f"""
        select product_id, funnel_stage, min(stage_order) as stage_order, sum(leads) as leads
        from {SCHEMA}.fct_conversion_funnel{where}
        group by product_id, funnel_stage
        order by product_id, min(stage_order)
        """,
        params,
    )
    entered: dict[str, int] = {r["product_id"]: r["leads"] for r in rows if r["funnel_stage"] == "new"}
    previous: dict[str, int | None] = {}
    for row in rows:
        row["leads"] = int(row["leads"] or 0)
        row["stage_order"] = int(row["stage_order"])
        row["leads_entered"] = int(entered.get(row["product_id"], 0) or 0)
        row["conversion_rate"] = _rate(row["leads"], row["leads_entered"])
        prior = previous.get(row["product_id"])
        row["step_rate"] = _rate(row["leads"], row["leads"] if prior is None else prior)
        previous[row["product_id"]] = row["leads"]
    return rows


def query_cohort_trend(db: Warehouse, product_id: str | None = None) -> list[dict[str, Any]]:
    """Per product and weekly cohort of first touch: leads entered, customers, conversion rate."""
    _require(db, "fct_conversion_funnel")
    where, params = _filters(product_id=product_id)
    where = (where + " and" if where else " where") + " cohort_week is not null"
    rows = _rows(
        db,
        f"""
        select
            product_id,
            cohort_week,
            sum(case when funnel_stage = 'new' then leads else 0 end) as leads_entered,
            sum(case when funnel_stage = 'customer' then leads else 0 end) as customers
        from {SCHEMA}.fct_conversion_funnel{where}
        group by product_id, cohort_week
        order by product_id, cohort_week
        """,
        params,
    )
    for row in rows:
        row["leads_entered"] = int(row["leads_entered"] or 0)
        row["customers"] = int(row["customers"] or 0)
        row["conversion_rate"] = _rate(row["customers"], row["leads_entered"])
    return rows


def query_time_to_conversion(
    db: Warehouse, product_id: str | None = None, channel: str | None = None
) -> list[dict[str, Any]]:
    """fct_time_to_conversion rows (median / p75 / p90 days per product, channel and starting point)."""
    _require(db, "fct_time_to_conversion")
    where, params = _filters(product_id=product_id, channel=channel)
    return _rows(
        db,
        f"select * from {SCHEMA}.fct_time_to_conversion{where} order by {ANALYTICS_MARTS['fct_time_to_conversion']}",
        params,
    )


def query_conversion_durations(db: Warehouse, product_id: str | None = None) -> list[dict[str, Any]]:
    """Per conversion's lead: days from first touch and from MQL (the distribution behind the percentiles)."""
    _require(db, "fct_conversions")
    where, params = _filters(product_id=product_id)
    return _rows(
        db,
        f"""
        select conversion_id, lead_id, product_id, first_touch_channel, converted_at,
               days_from_first_touch, days_from_mql
        from {SCHEMA}.fct_conversions{where}
        order by conversion_id, lead_id
        """,
        params,
    )


def query_attribution(db: Warehouse, product_id: str | None = None) -> list[dict[str, Any]]:
    """Credited conversions (sum of weights) and attributed amount per attribution model and channel."""
    _require(db, "fct_conversion_attribution")
    where, params = _filters(product_id=product_id)
    rows = _rows(
        db,
        f"""
        select
            attribution_model,
            channel,
            sum(attribution_weight) as credited_conversions,
            sum(attributed_amount) as attributed_amount,
            count(distinct conversion_id) as conversions_touched
        from {SCHEMA}.fct_conversion_attribution{where}
        group by attribution_model, channel
        order by attribution_model, channel
        """,
        params,
    )
    for row in rows:
        row["credited_conversions"] = float(row["credited_conversions"] or 0.0)
        row["conversions_touched"] = int(row["conversions_touched"] or 0)
    return rows


def query_message_performance(
    db: Warehouse, product_id: str | None = None, channel: str | None = None
) -> list[dict[str, Any]]:
    """fct_message_performance rows (sent, delivered, opened, clicked, replied, failed, converted, rates)."""
    _require(db, "fct_message_performance")
    where, params = _filters(product_id=product_id, channel=channel)
    return _rows(
        db,
        f"select * from {SCHEMA}.fct_message_performance{where} "
        f"order by {ANALYTICS_MARTS['fct_message_performance']}",
        params,
    )


def query_holdout(db: Warehouse, product_id: str | None = None) -> list[dict[str, Any]]:
    """fct_holdout_lift rows: treated vs holdout conversion, lift and its 95 % interval per workflow."""
    _require(db, "fct_holdout_lift")
    where, params = _filters(product_id=product_id)
    return _rows(
        db,
        f"select * from {SCHEMA}.fct_holdout_lift{where} order by {ANALYTICS_MARTS['fct_holdout_lift']}",
        params,
    )


def query_summary(db: Warehouse) -> dict[str, Any]:
    """Headline figures: conversions, attributed revenue, leads in the funnel, messages sent."""
    _require(db, "fct_conversions")
    conversions = db.scalar(f"select count(distinct conversion_id) from {SCHEMA}.fct_conversions") or 0
    revenue = db.scalar(
        f"select sum(amount) from (select distinct conversion_id, amount from {SCHEMA}.fct_conversions) as deals"
    )
    leads = (
        db.scalar(f"select sum(leads) from {SCHEMA}.fct_conversion_funnel where funnel_stage = 'new'") or 0
    )
    sent = db.scalar(f"select sum(sent) from {SCHEMA}.fct_message_performance") or 0
    return {
        "conversions": int(conversions),
        "converted_amount": float(plain(revenue) or 0.0),
        "leads_in_funnel": int(plain(leads)),
        "messages_sent": int(plain(sent)),
    }


QUERIES: dict[str, Callable[[Warehouse], Any]] = {
    "summary": query_summary,
    "funnel": query_funnel,
    "cohort_trend": query_cohort_trend,
    "time_to_conversion": query_time_to_conversion,
    "conversion_durations": query_conversion_durations,
    "attribution": query_attribution,
    "message_performance": query_message_performance,
    "holdout": query_holdout,
}


def read_metrics(warehouse_url: str) -> dict[str, Any]:
    """Every report section in one short-lived read-only connection (raises MartMissing when not built)."""
    with connect(warehouse_url, read_only=True) as db:
        return {name: query(db) for name, query in QUERIES.items()}


# --- charts (matplotlib → inline SVG) ----------------------------------------------------------------

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot

    pyplot.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: readable, searchable, small
            "svg.hashsalt": "leadflow",  # stable element ids, so the same data gives the same file
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return pyplot


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG in HTML
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # RDF boilerplate, not content


def _empty(ax, message: str = "no data yet") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def chart_funnel(funnel: list[dict[str, Any]]) -> str:
    plt = _pyplot()
    products = sorted({r["product_id"] for r in funnel})
    fig, axes = plt.subplots(
        1, max(1, len(products)), figsize=(5.2 * max(1, len(products)), 3.6), squeeze=False
    )
    if not products:
        _empty(axes[0][0])
    for ax, product in zip(axes[0], products, strict=False):
        rows = sorted((r for r in funnel if r["product_id"] == product), key=lambda r: r["stage_order"])
        stages = [r["funnel_stage"] for r in rows]
        leads = [r["leads"] for r in rows]
        bars = ax.barh(stages[::-1], leads[::-1], color=_PALETTE[0])
        for bar, row in zip(bars, rows[::-1], strict=True):
            rate = row["conversion_rate"]
            label = f"{row['leads']:,}" + (f"  ({rate:.0%})" if rate is not None else "")
            ax.annotate(
                label,
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
            )
        ax.set_title(f"{product}: leads reaching each stage")
        ax.set_xlabel("leads (share of leads entered)")
        ax.set_xlim(0, max(leads + [1]) * 1.35)
    return _svg(fig)


def chart_cohort_trend(trend: list[dict[str, Any]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    products = sorted({r["product_id"] for r in trend})
    if not products:
        _empty(ax)
    for i, product in enumerate(products):
        rows = [r for r in trend if r["product_id"] == product]
        weeks = [str(r["cohort_week"]) for r in rows]
        rates = [100 * (r["conversion_rate"] or 0.0) for r in rows]
        ax.plot(weeks, rates, marker="o", color=_PALETTE[i % len(_PALETTE)], label=product)
        for week, rate, row in zip(weeks, rates, rows, strict=True):
            ax.annotate(
                f"{row['customers']}/{row['leads_entered']}",
                (week, rate),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    if products:
        ax.set_ylabel("converted to customer (%)")
        ax.set_xlabel("cohort: week of first touch (Monday, UTC)")
        ax.set_title("Conversion rate by weekly cohort (labels: customers / leads)")
        ax.legend(title="product")
        ax.tick_params(axis="x", labelrotation=45)
    return _svg(fig)


def chart_time_to_conversion(durations: list[dict[str, Any]], percentiles: list[dict[str, Any]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    products = sorted({r["product_id"] for r in durations if r["days_from_first_touch"] is not None})
    if not products:
        _empty(ax)
    for i, product in enumerate(products):
        days = [
            r["days_from_first_touch"]
            for r in durations
            if r["product_id"] == product and r["days_from_first_touch"] is not None
        ]
        color = _PALETTE[i % len(_PALETTE)]
        ax.scatter(days, [i] * len(days), color=color, alpha=0.7, s=28, label=f"{product} (n={len(days)})")
        stats = next(
            (
                p
                for p in percentiles
                if p["product_id"] == product
                and p["channel"] == "all"
                and p["measured_from"] == "first_touch"
            ),
            None,
        )
        if stats:
            for name, mark in (("median_days", "|"), ("p75_days", "^"), ("p90_days", "v")):
                ax.scatter([stats[name]], [i + 0.25], marker=mark, color="black", s=60)
            ax.annotate(
                f"median {stats['median_days']:.1f} d · p75 {stats['p75_days']:.1f} d · p90 {stats['p90_days']:.1f} d",
                (stats["median_days"], i + 0.25),
                xytext=(0, 8),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    if products:
        ax.set_yticks(range(len(products)), products)
        ax.set_ylim(-0.6, len(products) - 0.2)
        ax.set_xlabel("days from first touch to closed-won deal")
        ax.set_title("Time to conversion (dots: conversions; marks: median, p75, p90)")
        ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def chart_attribution(attribution: list[dict[str, Any]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    channels = sorted({r["channel"] for r in attribution})
    models = [m for m in ATTRIBUTION_MODELS if any(r["attribution_model"] == m for r in attribution)]
    if not channels:
        _empty(ax)
    width = 0.8 / max(1, len(channels))
    for j, channel in enumerate(channels):
        credits = [
            sum(
                r["credited_conversions"]
                for r in attribution
                if r["attribution_model"] == m and r["channel"] == channel
            )
            for m in models
        ]
        xs = [i + (j - (len(channels) - 1) / 2) * width for i in range(len(models))]
        bars = ax.bar(xs, credits, width, label=channel, color=_PALETTE[j % len(_PALETTE)])
        ax.bar_label(bars, labels=[f"{c:.2f}" for c in credits], fontsize=7, padding=2)
    if channels:
        ax.set_xticks(range(len(models)), [m.replace("_", " ") for m in models])
        ax.set_ylabel("conversions credited")
        ax.set_title("Attribution of closed-won deals by channel, per model")
        ax.legend(title="channel", fontsize=8)
    return _svg(fig)


def chart_holdout(holdout: list[dict[str, Any]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.8 * max(1, len(holdout))))
    rows = [r for r in holdout if r.get("lift") is not None]
    if not rows:
        _empty(ax, "no lift yet (a treated or holdout group is empty)")
    for i, row in enumerate(rows):
        lift, low, high = 100 * row["lift"], 100 * row["lift_ci_low"], 100 * row["lift_ci_high"]
        ax.errorbar([lift], [i], xerr=[[lift - low], [high - lift]], fmt="o", color=_PALETTE[0], capsize=5)
        ax.annotate(
            f"{lift:+.1f} pp [{low:+.1f}, {high:+.1f}]  treated {row['treated_conversions']}/{row['treated_leads']}, "
            f"holdout {row['holdout_conversions']}/{row['holdout_leads']}",
            (lift, i),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    if rows:
        ax.axvline(0, color="#999", linewidth=1, linestyle="--")
        ax.set_yticks(range(len(rows)), [r["workflow"] for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel("lift: treated minus holdout conversion rate (percentage points, 95 % CI)")
        ax.set_title("Holdout lift per workflow")
    return _svg(fig)


# --- HTML --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _table(rows: list[dict[str, Any]], columns: Sequence[str], caption: str) -> str:
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = (
        "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
            for r in rows
        )
        or f"<tr><td colspan='{len(columns)}'>no rows yet</td></tr>"
    )
    return f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(chart_id: str, title: str, svg: str, note: str) -> str:
    return (
        f'<section><h2>{html.escape(title)}</h2><figure id="chart-{chart_id}" data-chart="{chart_id}">{svg}'
        f"<figcaption>{html.escape(note)}</figcaption></figure>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666;margin-top:0}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:10rem}
.card b{display:block;font-size:1.5rem}
figure{margin:0} figure svg{max-width:100%;height:auto} figcaption{color:#555;font-size:.9rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.85rem} caption{text-align:left;font-weight:600;margin:.3rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right} th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left} section{margin-bottom:2rem}
"""


@dataclass(frozen=True)
class ReportResult:
    """What build_report wrote: the file, when, which charts, and the headline figures."""

    path: Path
    generated_at: datetime
    charts: tuple[str, ...]
    figures: dict[str, Any] = field(default_factory=dict)
    bytes_written: int = 0


def render_report(metrics: dict[str, Any], generated_at: datetime, source: str = "") -> str:
    """The HTML page for the metrics read_metrics returns (pure: no warehouse access)."""
    summary = metrics["summary"]
    lift_note = (
        "Lift = treated minus holdout conversion rate (intent-to-treat); 95 % interval from the normal "
        "approximation of the difference of two proportions: ±1.96·sqrt(p_t(1−p_t)/n_t + p_h(1−p_h)/n_h)."
    )
    sections = [
        _figure(
            "funnel",
            "Funnel per product",
            chart_funnel(metrics["funnel"]),
            "Leads that reached each lifecycle stage or a later one (customer also by a closed-won deal); "
            "percentages are of the leads that entered.",
        ),
        _figure(
            "cohort-trend",
            "Conversion by weekly cohort of first touch",
            chart_cohort_trend(metrics["cohort_trend"]),
            "Share of each week's newly touched leads that became customers so far (recent cohorts are still young).",
        ),
        _figure(
            "time-to-conversion",
            "Time to conversion",
            chart_time_to_conversion(metrics["conversion_durations"], metrics["time_to_conversion"]),
            "Days from a lead's first touch in the product to its deal closing won.",
        )
        + _table(
            metrics["time_to_conversion"],
            [
                "product_id",
                "channel",
                "measured_from",
                "conversions",
                "median_days",
                "p75_days",
                "p90_days",
                "mean_days",
            ],
            "Time to conversion (days): continuous percentiles",
        )
        + "</section>",
        _figure(
            "attribution",
            "Attribution by channel",
            chart_attribution(metrics["attribution"]),
            "Each closed-won deal's credit (1 per deal) split over its leads' touches in the lookback window; "
            "`none` = a deal without touches.",
        )
        + _table(
            metrics["attribution"],
            ["attribution_model", "channel", "credited_conversions", "attributed_amount"],
            "Credited conversions and amount per model and channel",
        )
        + "</section>",
        "<section><h2>Message performance</h2>"
        + _table(
            metrics["message_performance"],
            [
                "product_id",
                "template",
                "channel",
                "sent",
                "delivered",
                "opened",
                "clicked",
                "replied",
                "failed",
                "converted",
                "conversion_rate",
            ],
            "Per template and channel",
        )
        + "</section>",
        _figure("holdout-lift", "Holdout lift", chart_holdout(metrics["holdout"]), lift_note)
        + _table(
            metrics["holdout"],
            [
                "workflow",
                "treated_leads",
                "treated_conversions",
                "holdout_leads",
                "holdout_conversions",
                "lift",
                "lift_ci_low",
                "lift_ci_high",
                "is_significant",
                "is_sample_adequate",
            ],
            "Treated vs holdout",
        )
        + "</section>",
    ]
    sections = [s if s.endswith("</section>") else s + "</section>" for s in sections]
    cards = "".join(
        f'<div class="card">{html.escape(label)}<b>{html.escape(_fmt(summary[key]))}</b></div>'
        for key, label in (
            ("conversions", "closed-won deals"),
            ("converted_amount", "closed-won amount"),
            ("leads_in_funnel", "leads in the funnel"),
            ("messages_sent", "messages sent"),
        )
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>leadflow analytics report</title><style>{_CSS}</style></head><body>"
        "<h1>leadflow analytics</h1>"
        f"<p class='meta'>Generated {html.escape(_fmt(generated_at))}{html.escape(source)}</p>"
        f"<div class='cards'>{cards}</div>" + "".join(sections) + "</body></html>\n"
    )


def build_report(warehouse_url: str, out_path: str | Path) -> ReportResult:
    """Read the analytics marts (read-only, short-lived) and write one self-contained HTML report."""
    out = Path(out_path)
    metrics = read_metrics(warehouse_url)
    generated_at = datetime.now(UTC)
    page = render_report(metrics, generated_at)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a report
    holdout = [r for r in metrics["holdout"] if r.get("lift") is not None]
    figures = dict(metrics["summary"])
    figures["funnel_customers"] = sum(
        r["leads"] for r in metrics["funnel"] if r["funnel_stage"] == "customer"
    )
    overall = [
        r
        for r in metrics["time_to_conversion"]
        if r["channel"] == "all" and r["measured_from"] == "first_touch"
    ]
    if overall:
        figures["median_days_to_conversion"] = {r["product_id"]: r["median_days"] for r in overall}
    if holdout:
        figures["holdout_lift"] = {
            r["workflow"]: {"lift": r["lift"], "ci_low": r["lift_ci_low"], "ci_high": r["lift_ci_high"]}
            for r in holdout
        }
    return ReportResult(out, generated_at, CHART_IDS, figures, len(page.encode()))


def report_metadata(result: ReportResult) -> dict[str, Any]:
    """Plain values for a Dagster materialization (Dagster wraps str/int/float/dict; the path as text)."""
    metadata: dict[str, Any] = {
        "path": str(result.path),
        "generated_at": result.generated_at.isoformat(),
        "charts": len(result.charts),
        "bytes": result.bytes_written,
    }
    for key, value in result.figures.items():
        metadata[key] = (
            value if isinstance(value, int | float | str) else json.loads(json.dumps(value, default=str))
        )
    return metadata


# --- exports -----------------------------------------------------------------------------------------


def export_cell(value: Any) -> Any:
    """A mart value as exported to JSON (CSV writes str() of this, '' for null)."""
    value = plain(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_text(value: Any) -> str:
    value = export_cell(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def read_mart(db: Warehouse, mart: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns (in table order) and rows of an analytics mart, in its export order."""
    _require(db, mart)
    cursor = db.connection.cursor()
    try:
        cursor.execute(f"select * from {SCHEMA}.{mart} order by {ANALYTICS_MARTS[mart]}")
        columns = [d[0] for d in cursor.description]
        return columns, [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def export_marts(warehouse_url: str, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
    """Write every analytics mart to `<out_dir>/<mart>.<fmt>` (csv: header + rows; json: a list of objects)."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"format must be csv or json, not {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with connect(warehouse_url, read_only=True) as db:
        marts = {mart: read_mart(db, mart) for mart in ANALYTICS_MARTS}
    for mart, (columns, rows) in marts.items():
        path = out / f"{mart}.{fmt}"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            if fmt == "csv":
                writer = csv.writer(handle)
                writer.writerow(columns)
                writer.writerows([_csv_text(row[c]) for c in columns] for row in rows)
            else:
                json.dump([{c: export_cell(row[c]) for c in columns} for row in rows], handle, indent=1)
                handle.write("\n")
        tmp.replace(path)
        written.append(path)
    return written


# --- command line ------------------------------------------------------------------------------------


def _settings():
    from orchestration.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as error:
        raise SystemExit(f"leadflow: setting error: {error}") from error


def default_report_path(home: Path) -> Path:
    """Where `leadflow report` (and the daily Dagster asset) writes the report: $LEADFLOW_HOME/reports/."""
    return home / "reports" / "leadflow-report.html"


def cmd_report(args: argparse.Namespace) -> int:
    settings = _settings()
    out = Path(args.out) if args.out else default_report_path(settings.home)
    try:
        result = build_report(settings.warehouse.url, out)
    except MartMissing as error:
        raise SystemExit(f"leadflow: {error}") from error
    print(f"report: {result.path} ({result.bytes_written:,} bytes, {len(result.charts)} charts)")
    for key, value in result.figures.items():
        print(f"  {key}: {value}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings()
    out = Path(args.out) if args.out else settings.home / "exports"
    try:
        paths = export_marts(settings.warehouse.url, out, args.format)
    except MartMissing as error:
        raise SystemExit(f"leadflow: {error}") from error
    for path in paths:
        print(path)
    return 0


def add_cli_commands(subparsers: Any) -> None:
    """Register `leadflow report` and `leadflow export` on the CLI's subparsers."""
    report = subparsers.add_parser(
        "report",
        help="write the analytics report (one self-contained HTML file)",
        description="Read the analytics marts (read-only) and write one HTML file that renders offline: funnel "
        "per product, conversion by weekly cohort, time to conversion, attribution by channel under each model, "
        "message performance, holdout lift with its 95 % interval.",
    )
    report.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="output file (default $LEADFLOW_HOME/reports/leadflow-report.html)",
    )
    report.set_defaults(func=cmd_report)

    export = subparsers.add_parser(
        "export",
        help="export every analytics mart as CSV or JSON",
        description=f"Write {', '.join(ANALYTICS_MARTS)} to DIR/<mart>.csv|json (timestamps ISO 8601 UTC).",
    )
    export.add_argument("--format", choices=["csv", "json"], default="csv", help="file format (default csv)")
    export.add_argument(
        "--out", default=None, metavar="DIR", help="directory (default $LEADFLOW_HOME/exports)"
    )
    export.set_defaults(func=cmd_export)


def iter_export_rows(path: Path) -> Iterable[dict[str, Any]]:
    """Read an export back (CSV: every value text, '' = null; JSON: as written)."""
    if path.suffix == ".json":
        yield from json.loads(path.read_text(encoding="utf-8"))
        return
    with path.open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


__all__ = [
    "ANALYTICS_MARTS",
    "CHART_IDS",
    "MartMissing",
    "ReportResult",
    "add_cli_commands",
    "build_report",
    "default_report_path",
    "export_marts",
    "read_metrics",
    "report_metadata",
]
