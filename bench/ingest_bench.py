"""dlt ingest, stage by stage: leadflow's own sources and pipelines into a fresh warehouse.

One measured process per warehouse does what `leadflow ingest` does for `LEADFLOW_CRM=sql`: the CRM
pipeline (`leadflow_crm` → `raw_crm`, `ingestion.sql_crm.sql_crm_source` reading the workload's SQL CRM)
and then the landing pipeline (`leadflow_events` → `raw_events`, `ingestion.events.landing_events_source`
on the workload's landing files), with the pipeline names, datasets, destinations and pipelines dir
`orchestration/definitions.py` uses (`make_pipeline`). dlt's public stage calls (`extract`, `normalize`,
`load`) replace `pipeline.run`, which is the same three calls in a row, and each stage ends with a
`bench.measure.lap`, so every stage gets its own seconds and peak RSS from the same process. `setup`
(imports, pipeline objects) is reported as its own stage and counted in the total.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.measure import lap

PIPELINES = (("crm", "leadflow_crm", "raw_crm"), ("events", "leadflow_events", "raw_events"))
STAGES = ("extract", "normalize", "load")


def destination(warehouse_url: str, home: Path) -> Any:
    """The dlt destination `orchestration.definitions._destination` builds for this warehouse URL."""
    import dlt

    from orchestration.settings import parse_warehouse_url

    warehouse = parse_warehouse_url(warehouse_url, home)
    if warehouse.kind == "duckdb":
        warehouse.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(str(warehouse.duckdb_path))
    return dlt.destinations.postgres(warehouse.dlt_credentials())


def pipeline(name: str, dataset: str, warehouse_url: str, home: Path) -> Any:
    """The pipeline `orchestration.definitions.make_pipeline` builds (without its progress logging)."""
    import dlt

    pipelines_dir = home / "dlt"
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    return dlt.pipeline(
        pipeline_name=name,
        destination=destination(warehouse_url, home),
        dataset_name=dataset,
        pipelines_dir=str(pipelines_dir),
    )


def source(which: str, crm_url: str, landing_dir: Path) -> Any:
    if which == "crm":
        from ingestion.sql_crm import sql_crm_source

        return sql_crm_source(credentials=crm_url)
    from ingestion.events import landing_events_source

    return landing_events_source(landing_dir=str(landing_dir))


def _rows(normalize_info: Any) -> int:
    counts = normalize_info.row_counts or {}
    return sum(n for table, n in counts.items() if not table.startswith("_dlt"))


def ingest(
    warehouse_url: str,
    home: str,
    crm_url: str,
    landing_dir: str,
    which: tuple[str, ...] = ("crm", "events"),
    file_format: str | None = None,
) -> dict[str, int]:
    """Run the selected pipelines stage by stage (in a measured child); return rows loaded per pipeline.

    file_format: dlt's `loader_file_format` for every extract; None = what leadflow's assets use
    (`ingestion.load_formats`: parquet for the CRM pipeline on DuckDB, dlt's default otherwise).
    """
    import dlt  # noqa: F401  (imports belong to `setup`)

    import ingestion.events  # noqa: F401
    import ingestion.sql_crm  # noqa: F401
    from ingestion.load_formats import crm_loader_file_format

    kind = "duckdb" if warehouse_url.startswith("duckdb:") else "postgres"
    formats = {"crm": crm_loader_file_format(kind), "events": None}

    home_path = Path(home)
    pipelines = {
        short: pipeline(name, dataset, warehouse_url, home_path) for short, name, dataset in PIPELINES
    }
    lap("setup")
    rows: dict[str, int] = {}
    for short, _, _ in PIPELINES:
        if short not in which:
            continue
        current = pipelines[short]
        current.extract(
            source(short, crm_url, Path(landing_dir)), loader_file_format=file_format or formats[short]
        )
        lap(f"{short}.extract")
        rows[short] = _rows(current.normalize())
        lap(f"{short}.normalize")
        current.load().raise_on_failed_jobs()
        lap(f"{short}.load")
    return rows


# ------------------------------------------------------------------------------------- orchestration


def run_ingest(ctx, record: bool = True) -> None:
    """ingest.<warehouse>.{setup, crm.*, events.*, total} into a fresh warehouse per run.

    Leaves ctx.raw[warehouse] = (URL, home) of the last run: the raw data the dbt steps start from.
    With record=False (dbt selected without ingest) it runs once and records nothing.
    """
    from bench.harness import laps_to_measurements
    from bench.measure import Measurement, measure
    from bench.warehouses import create_database, drop_database, duckdb_url, link_tree, reset_dir

    workload = ctx.workload
    repeats = ctx.heavy_repeats if record else 1
    for kind in ctx.warehouses:
        if kind == "postgres" and not ctx.postgres_server_url:
            continue
        work = ctx.work / f"ingest-{kind}"
        state: dict[str, str] = {}

        def fresh(_: int, kind=kind, work=work, state=state) -> tuple:
            if kind == "postgres":
                if state.get("url"):
                    drop_database(ctx.postgres_server_url, state["url"])
                state["url"] = create_database(ctx.postgres_server_url, "bench_raw")
            else:
                reset_dir(work)
                state["url"] = duckdb_url(work / "warehouse.duckdb")
            home = reset_dir(work / "home")
            # the landing zone as leadflow has it: $LEADFLOW_HOME/landing/<stream>/*.jsonl
            link_tree(workload.landing_dir, home / "landing")
            return (state["url"], str(home), workload.crm_url, str(home / "landing"))

        runs = [measure(ingest, *fresh(index)) for index in range(repeats)]
        if record:
            rows = runs[-1].value
            per_pipeline = {"crm": rows.get("crm"), "events": rows.get("events"), "setup": None}
            for measurement in laps_to_measurements(f"ingest.{kind}", runs, per_pipeline):
                ctx.add(measurement)
            total = Measurement(
                step=f"ingest.{kind}.total",
                runs=[r.seconds for r in runs],
                peak_rss_bytes=max(r.peak_rss_bytes for r in runs),
                rows=sum(rows.values()),
            )
            total.notes.append("setup + crm (extract, normalize, load) + events (extract, normalize, load)")
            ctx.add(total)
        ctx.raw[kind] = (state["url"], work / "home")


def run_whatif(ctx) -> None:
    """The CRM pipeline with dlt's parquet loader files instead of its default (INSERT statements).

    Since leadflow's CRM pipeline loads DuckDB through parquet itself (`ingestion/load_formats.py`), this
    measures the same thing as `ingest.duckdb.crm.*`; kept for the before/after record.

    dlt's DuckDB destination loads row-path (dict) data as `INSERT … VALUES` statements by default, which
    DuckDB parses slowly and with much memory at 100k rows; the events pipeline yields Arrow and already
    loads parquet. `ingest.duckdb.whatif_crm_parquet.*` measures what `loader_file_format="parquet"` on the
    CRM pipeline would change (compare with `ingest.duckdb.crm.*`).
    """
    from bench.harness import laps_to_measurements
    from bench.measure import measure
    from bench.warehouses import duckdb_url, reset_dir

    work = reset_dir(ctx.work / "whatif-duckdb")
    runs = []
    for _ in range(ctx.heavy_repeats):
        reset_dir(work)
        home = reset_dir(work / "home")
        runs.append(
            measure(
                ingest,
                duckdb_url(work / "warehouse.duckdb"),
                str(home),
                ctx.workload.crm_url,
                "",
                ("crm",),
                "parquet",
            )
        )
    rows = runs[-1].value
    for measurement in laps_to_measurements(
        "ingest.duckdb.whatif_crm_parquet", runs, {"crm": rows.get("crm")}
    ):
        if not measurement.step.endswith(".setup"):
            measurement.notes.append(
                "what-if: CRM pipeline with loader_file_format=parquet (what leadflow now does on DuckDB)"
            )
            ctx.add(measurement)
