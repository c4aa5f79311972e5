"""Floors: the least work a warehouse needs for the same rows, measured in the same run.

- load floors: the workload's raw rows (valid events in the `raw_events.events` shape plus the CRM
  tables as the SQL CRM stores them) loaded with the warehouse's bulk path and nothing else:
  PostgreSQL `COPY … FROM STDIN (FORMAT csv)` through psycopg2's `copy_expert`, DuckDB `read_csv` (and,
  reported beside it, `read_parquet`) into tables. No keys, no merge, no validation, no state.
- aggregate floor: one SQL statement computing a decayed engagement score per (person, product) over
  those events: sum(points × exp(−ln 2 × age / half-life)) with the points of `seeds/scoring_rules.csv`
  and the half-lives of `seeds/products.csv`, at the workload's anchor. The person is the trimmed,
  lower-cased email, else the user id: the cheapest identity rule that still groups a person's events.

Each function runs inside a measured child (bench/measure.py) and returns the rows it wrote.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bench.workload import ANCHOR, FLOOR_COLUMNS, FLOOR_TABLES, SEEDS_DIR

_PG_TYPES = {"double": "double precision"}


def _ddl(table: str, postgres: bool) -> str:
    columns = ", ".join(
        f"{name} {_PG_TYPES.get(kind, kind) if postgres else kind}" for name, kind in FLOOR_COLUMNS[table]
    )
    return f"create table bench_floor.{table} ({columns})"


def duckdb_load(db_path: str, files: dict[str, str], file_format: str) -> int:
    """Load every floor table from CSV (`read_csv`) or parquet (`read_parquet`) into a new DuckDB file."""
    import duckdb

    Path(db_path).unlink(missing_ok=True)
    con = duckdb.connect(db_path)
    con.execute("set enable_progress_bar = false")  # DuckDB 2.0 draws one on stdout otherwise
    try:
        con.execute("create schema bench_floor")
        rows = 0
        for table in FLOOR_TABLES:
            con.execute(_ddl(table, postgres=False))
            if file_format == "csv":
                types = "{" + ", ".join(f"'{n}': '{t}'" for n, t in FLOOR_COLUMNS[table]) + "}"
                reader = f"read_csv('{files[table]}', header = true, columns = {types})"
            else:
                reader = f"read_parquet('{files[table]}')"
            rows += con.execute(f"insert into bench_floor.{table} select * from {reader}").fetchall()[0][0]
    finally:
        con.close()  # the checkpoint that makes the rows durable is part of the load
    return rows


def postgres_copy(url: str, files: dict[str, str]) -> int:
    """COPY every floor table's CSV into a fresh schema of the PostgreSQL database at `url`."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        rows = 0
        with conn.cursor() as cursor:
            cursor.execute("drop schema if exists bench_floor cascade")
            cursor.execute("create schema bench_floor")
            for table in FLOOR_TABLES:
                cursor.execute(_ddl(table, postgres=True))
                with open(files[table], encoding="utf-8") as handle:
                    cursor.copy_expert(
                        f"copy bench_floor.{table} from stdin with (format csv, header true)", handle
                    )
                rows += cursor.rowcount
        conn.commit()
    finally:
        conn.close()
    return rows


def _seed(name: str) -> list[dict[str, str]]:
    with open(SEEDS_DIR / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _rules_values() -> str:
    """The scoring rules joined to their product's half-life, as a VALUES list (same SQL on both)."""
    half_lives = {p["product_id"]: float(p["decay_half_life_days"]) for p in _seed("products.csv")}
    rows = [
        f"('{r['product_id']}', '{r['event_product_id']}', '{r['event_type']}', "
        f"{float(r['points'])}, {half_lives[r['product_id']]})"
        for r in _seed("scoring_rules.csv")
    ]
    return ",\n".join(rows)


def aggregate_sql() -> str:
    as_of = f"cast('{ANCHOR.isoformat()}' as timestamp with time zone)"
    return f"""
        create table bench_floor.decayed_scores as
        with rules (product_id, event_product_id, event_type, points, half_life_days) as (
            values {_rules_values()}
        ),
        events as (
            select
                coalesce('email:' || lower(trim(email)), 'user:' || user_id) as person,
                product_id,
                event_type,
                extract(epoch from {as_of}) - extract(epoch from occurred_at) as age_seconds
            from bench_floor.events
            where occurred_at <= {as_of}
        )
        select
            events.person,
            rules.product_id,
            sum(rules.points * exp(-ln(2) * events.age_seconds / 86400.0 / rules.half_life_days)) as score,
            count(*) as events
        from events
        inner join rules
            on events.product_id = rules.event_product_id and events.event_type = rules.event_type
        group by events.person, rules.product_id
    """


def duckdb_aggregate(db_path: str) -> int:
    import duckdb

    con = duckdb.connect(db_path)
    con.execute("set enable_progress_bar = false")  # DuckDB 2.0 draws one on stdout otherwise
    try:
        con.execute("drop table if exists bench_floor.decayed_scores")
        con.execute(aggregate_sql())
        return con.execute("select count(*) from bench_floor.decayed_scores").fetchall()[0][0]
    finally:
        con.close()


def postgres_aggregate(url: str) -> int:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("drop table if exists bench_floor.decayed_scores")
            cursor.execute(aggregate_sql())
            cursor.execute("select count(*) from bench_floor.decayed_scores")
            rows = cursor.fetchone()[0]
        conn.commit()
    finally:
        conn.close()
    return rows


# ------------------------------------------------------------------------------------- orchestration


def run_floors(ctx) -> None:
    """floor.duckdb.read_csv / read_parquet / aggregate and floor.postgres.copy / aggregate."""
    from bench.harness import step
    from bench.warehouses import create_database, drop_database, reset_dir

    workload = ctx.workload
    work = reset_dir(ctx.work / "floors")
    csv_files = {t: str(workload.csv_path(t)) for t in FLOOR_TABLES}
    parquet_files = {t: str(workload.parquet_path(t)) for t in FLOOR_TABLES}
    rows = workload.raw_rows
    events = workload.counts["events"]
    if "duckdb" in ctx.warehouses:
        csv_db = str(work / "floor-csv.duckdb")
        step(
            ctx,
            "floor.duckdb.read_csv",
            duckdb_load,
            csv_db,
            csv_files,
            "csv",
            repeats=ctx.repeats,
            rows=rows,
        )
        parquet_db = str(work / "floor-parquet.duckdb")
        step(
            ctx, "floor.duckdb.read_parquet", duckdb_load, parquet_db, parquet_files, "parquet",
            repeats=ctx.repeats, rows=rows,
        )  # fmt: skip
        Path(parquet_db).unlink(missing_ok=True)
        measurement, scores, _ = step(
            ctx, "floor.duckdb.aggregate", duckdb_aggregate, csv_db, repeats=ctx.repeats, rows=events
        )
        measurement.notes.append(f"{scores} (person, product) scores from {events} events")
        Path(csv_db).unlink(missing_ok=True)
    if "postgres" in ctx.warehouses and ctx.postgres_server_url:
        server = ctx.postgres_server_url
        databases: list[str] = []

        def fresh(_: int) -> tuple:
            for old in databases:
                drop_database(server, old)
            databases[:] = [create_database(server, "bench_floor")]
            return (databases[0], csv_files)

        step(ctx, "floor.postgres.copy", postgres_copy, repeats=ctx.repeats, rows=rows, prepare=fresh)
        measurement, scores, _ = step(
            ctx,
            "floor.postgres.aggregate",
            postgres_aggregate,
            databases[0],
            repeats=ctx.repeats,
            rows=events,
        )
        measurement.notes.append(f"{scores} (person, product) scores from {events} events")
        drop_database(server, databases[0])
