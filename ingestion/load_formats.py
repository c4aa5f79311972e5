"""Which file format dlt hands each warehouse, per pipeline (one place, read by the assets and the benchmark)."""

from __future__ import annotations


def crm_loader_file_format(warehouse_kind: str) -> str | None:
    """dlt's load file format for the CRM pipeline: parquet on DuckDB, dlt's default elsewhere.

    The CRM rows are dicts (dlt's row path), which dlt loads into DuckDB as `INSERT … VALUES` statements by
    default; DuckDB reads parquet files in bulk instead (the CRM load at 10k leads went from 29.7 s to 1.2 s
    in the benchmark). PostgreSQL keeps dlt's default (`insert_values`), already close to its COPY floor.

    Args:
        warehouse_kind: ``duckdb`` or ``postgres``.

    Returns:
        ``"parquet"`` for DuckDB, else None (dlt's default for the destination).
    """
    return "parquet" if warehouse_kind == "duckdb" else None
