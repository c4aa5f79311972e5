"""SQL CRM source: same raw tables as HubSpot, incremental on updated_at, read-only engine."""

from __future__ import annotations

import tempfile
import uuid

import dlt
import pyarrow as pa
import pytest
import sqlalchemy as sa

from ingestion.demo_crm import DemoCrmServer, generate_crm
from ingestion.hubspot import hubspot_source
from ingestion.sql_crm import create_demo_sql_crm, read_only_engine, sql_crm_source


@pytest.fixture
def duckdb_crm(tmp_path):
    url = f"duckdb:///{tmp_path}/crm.duckdb"
    crm = generate_crm(9, 80)
    create_demo_sql_crm(url, crm)
    return url, crm


def _rows(source) -> dict[str, list[dict]]:
    """Iterate a source with fresh incremental state (iterating outside a pipeline shares state).

    Contacts and companies arrive as Arrow tables (one per page), deals as dicts: all become dicts.
    """
    pipeline = dlt.pipeline(pipeline_name=f"rows_{uuid.uuid4().hex[:8]}", pipelines_dir=tempfile.mkdtemp())
    pipeline.activate()
    try:
        return {
            name: [
                row
                for item in resource
                for row in (item.to_pylist() if isinstance(item, pa.Table) else [item])
            ]
            for name, resource in source.resources.items()
        }
    finally:
        pipeline.deactivate()


def _by_id(rows):
    return {r["id"]: r for r in rows}


def test_same_rows_as_hubspot_source(duckdb_crm):
    url, crm = duckdb_crm
    sql_rows = _rows(sql_crm_source(url))
    with DemoCrmServer(crm) as server:
        hs_rows = _rows(hubspot_source(server.base_url, "demo-token", backoff_base=0))
    for table in ("contacts", "companies", "deals"):
        sql, hs = _by_id(sql_rows[table]), _by_id(hs_rows[table])
        assert sql.keys() == hs.keys()
        for object_id, row in sql.items():
            assert set(row) == set(hs[object_id])
            assert row == hs[object_id], (table, object_id)


def test_write_through_source_engine_fails_loudly(duckdb_crm):
    url, _ = duckdb_crm
    engine = read_only_engine(url)
    with pytest.raises(sa.exc.DBAPIError, match="read-only"), engine.begin() as connection:
        connection.execute(sa.text("UPDATE contacts SET jobtitle = 'x'"))
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE pwned (x int)"))


def test_incremental_on_updated_at(duckdb_crm, tmp_path):
    url, _ = duckdb_crm
    pipeline = dlt.pipeline(
        pipeline_name="sql_incr",
        pipelines_dir=str(tmp_path / "p"),
        destination=dlt.destinations.duckdb(str(tmp_path / "wh.duckdb")),
        dataset_name="raw_crm",
    )
    pipeline.run(sql_crm_source(url))
    writer = sa.create_engine(url)
    with writer.begin() as connection:
        connection.execute(
            sa.text("UPDATE contacts SET jobtitle = 'Changed', updated_at = now() WHERE id = '2'")
        )
        connection.execute(
            sa.text("UPDATE deals SET archived = true, updated_at = now() WHERE id = '9000001'")
        )
    writer.dispose()
    pipeline.run(sql_crm_source(url))
    counts = pipeline.last_trace.last_normalize_info.row_counts
    assert counts.get("contacts") == 1 and counts.get("deals") == 1
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT jobtitle FROM contacts WHERE id = '2'") == [("Changed",)]
        assert client.execute_sql("SELECT archived FROM deals WHERE id = '9000001'") == [(True,)]
        assert client.execute_sql(
            "SELECT count(*) FROM deals__contact_ids d JOIN deals p "
            "ON d._dlt_parent_id = p._dlt_id WHERE p.id = '9000001'"
        ) == [(0,)]


@pytest.mark.postgres
def test_postgres_session_is_read_only(postgres_url):
    crm = generate_crm(4, 30)
    create_demo_sql_crm(postgres_url, crm)
    rows = _rows(sql_crm_source(postgres_url))
    assert {r["id"] for r in rows["contacts"]} == {c["id"] for c in crm.contacts}
    engine = read_only_engine(postgres_url)
    with pytest.raises(sa.exc.DBAPIError, match="read-only"), engine.begin() as connection:
        connection.execute(sa.text("UPDATE contacts SET jobtitle = 'x'"))
    engine.dispose()


def test_deal_links_are_read_once_per_extraction(duckdb_crm, tmp_path, monkeypatch):
    # Reading the link table per deal made extraction quadratic (4k deals took 13 minutes).
    from ingestion.sql_crm import source as source_module

    url, crm = duckdb_crm
    reads = []
    real_metadata = source_module.crm_metadata

    def counting_metadata(schema=None):
        reads.append(schema)
        return real_metadata(schema)

    pipeline = dlt.pipeline(
        pipeline_name=f"links_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=dlt.destinations.duckdb(str(tmp_path / "raw.duckdb")),
    )
    source = sql_crm_source(url)
    monkeypatch.setattr(source_module, "crm_metadata", counting_metadata)
    pipeline.extract(source)
    assert len(crm.deals) > 1
    assert len(reads) == 1, f"the deal_contacts table was read {len(reads)} times for {len(crm.deals)} deals"
