"""SQL CRM source on dlt's Arrow path: every value as ``to_row`` maps it (the former per-row mapper).

Edge values the demo CRM never produces (empty and blank strings, columns NULL for a whole page, archived
NULL-free defaults, non-UTC session time zones) are written into the CRM database, and the source's
output is compared with ``to_row`` applied to the same database rows.
"""

from __future__ import annotations

import tempfile
import uuid

import dlt
import pyarrow as pa
import pytest
import sqlalchemy as sa

from ingestion.demo_crm import generate_crm
from ingestion.hubspot.schema import COLUMNS, MODIFIED_PROPERTY, to_row
from ingestion.sql_crm import create_demo_sql_crm, sql_crm_source
from ingestion.sql_crm.source import _url

EDGES = [
    # empty strings become NULL, blank ones stay; NULL mobile phones in whole pages
    "UPDATE contacts SET email = '', jobtitle = '  ', mobilephone = NULL WHERE CAST(id AS INT) % 3 = 0",
    "UPDATE contacts SET phone = '', mobilephone = '+44 20 7946 0018' WHERE CAST(id AS INT) % 5 = 1",
    "UPDATE contacts SET country = '', phone = '030 901820' WHERE CAST(id AS INT) % 7 = 2",
    "UPDATE contacts SET country = 'de', phone = '030 901820' WHERE CAST(id AS INT) % 7 = 3",
    "UPDATE contacts SET phone = 'not a number', hs_email_optout = NULL WHERE CAST(id AS INT) % 11 = 4",
    "UPDATE contacts SET archived = true, associatedcompanyid = '' WHERE CAST(id AS INT) % 13 = 5",
    "UPDATE companies SET numberofemployees = NULL, domain = '' WHERE CAST(id AS BIGINT) % 2 = 0",
    "UPDATE companies SET numberofemployees = 9007199254740993 WHERE CAST(id AS BIGINT) % 3 = 1",
    "UPDATE deals SET amount = NULL, closedate = NULL, dealstage = '' WHERE CAST(id AS BIGINT) % 2 = 0",
    "UPDATE deals SET archived = true WHERE CAST(id AS BIGINT) % 5 = 1",
]


def _source_rows(source) -> dict[str, list[dict]]:
    pipeline = dlt.pipeline(pipeline_name=f"arrow_{uuid.uuid4().hex[:8]}", pipelines_dir=tempfile.mkdtemp())
    pipeline.activate()
    try:
        out: dict[str, list[dict]] = {}
        for name, resource in source.resources.items():
            items = list(resource)
            if name == "deals":
                assert all(isinstance(i, dict) for i in items)  # rows: contact_ids → child table
                out[name] = items
            else:
                assert items and all(isinstance(i, pa.Table) for i in items)
                out[name] = [row for item in items for row in item.to_pylist()]
        return out
    finally:
        pipeline.deactivate()


def _expected_rows(url: str) -> dict[str, list[dict]]:
    """What the per-row mapper made of the database rows: ``to_row`` with updated_at as modified date."""
    engine = sa.create_engine(_url(url), poolclass=sa.pool.NullPool)
    out: dict[str, list[dict]] = {}
    with engine.connect() as connection:
        links: dict[str, list[str]] = {}
        for deal, contact in connection.execute(sa.text("SELECT deal_id, contact_id FROM deal_contacts")):
            links.setdefault(str(deal), []).append(str(contact))
        for object_type in ("contacts", "companies", "deals"):
            rows = []
            for db_row in connection.execute(sa.text(f"SELECT * FROM {object_type}")).mappings():
                values = dict(db_row)
                values[MODIFIED_PROPERTY[object_type]] = values.pop("updated_at")
                row = to_row(object_type, values["id"], values, archived=bool(values["archived"] or False))
                if object_type == "deals":
                    contacts = sorted(set(links.get(row["id"], [])), key=lambda x: (len(x), x))
                    row["contact_ids"] = [] if row["archived"] else contacts
                rows.append(row)
            out[object_type] = rows
    engine.dispose()
    return out


def _assert_same(got: dict[str, list[dict]], expected: dict[str, list[dict]]) -> None:
    for object_type, rows in expected.items():
        by_id = {r["id"]: r for r in got[object_type]}
        assert len(by_id) == len(got[object_type]) == len(rows), object_type
        for row in rows:
            loaded = by_id[row["id"]]
            assert set(loaded) == set(row), object_type  # order: the schema's, see the layout test
            for column, value in row.items():
                assert loaded[column] == value, (object_type, row["id"], column, loaded[column], value)
                assert type(loaded[column]) is type(value), (object_type, column)


def _write_edges(url: str, statements: list[str]) -> None:
    writer = sa.create_engine(_url(url), poolclass=sa.pool.NullPool)
    with writer.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    writer.dispose()


@pytest.mark.parametrize("chunk_size", [7, 10_000])
def test_arrow_mapping_equals_to_row_duckdb(tmp_path, chunk_size):
    url = f"duckdb:///{tmp_path}/crm.duckdb"
    create_demo_sql_crm(url, generate_crm(21, 90))
    _write_edges(url, EDGES)
    expected = _expected_rows(url)
    assert any(r["email"] is None for r in expected["contacts"])
    assert any(r["phone_e164"] for r in expected["contacts"])
    _assert_same(_source_rows(sql_crm_source(url, chunk_size=chunk_size)), expected)


@pytest.mark.postgres
def test_arrow_mapping_equals_to_row_postgres_non_utc_session(postgres_url):
    create_demo_sql_crm(postgres_url, generate_crm(22, 70))
    database = postgres_url.rsplit("/", 1)[1]
    _write_edges(
        postgres_url,
        [s.replace("CAST(id AS INT)", "CAST(id AS BIGINT)") for s in EDGES]
        + [f"ALTER DATABASE \"{database}\" SET timezone = 'America/Sao_Paulo'"],
    )
    expected = _expected_rows(postgres_url)
    _assert_same(_source_rows(sql_crm_source(postgres_url, chunk_size=9)), expected)


def test_loaded_layout_keeps_dlt_columns(tmp_path):
    url = f"duckdb:///{tmp_path}/crm.duckdb"
    create_demo_sql_crm(url, generate_crm(23, 40))
    pipeline = dlt.pipeline(
        pipeline_name=f"layout_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=dlt.destinations.duckdb(str(tmp_path / "wh.duckdb")),
        dataset_name="raw_crm",
    )
    pipeline.run(sql_crm_source(url), loader_file_format="parquet")
    schema = pipeline.default_schema
    for object_type in ("contacts", "companies", "deals"):
        columns = schema.get_table_columns(object_type)
        materialized = [n for n, c in columns.items() if c.get("data_type")]
        assert materialized == [*COLUMNS[object_type], "_dlt_load_id", "_dlt_id"], object_type
        for name, hints in COLUMNS[object_type].items():
            for key, value in hints.items():
                assert columns[name].get(key) == value, (object_type, name, key)
        assert columns["_dlt_load_id"]["nullable"] is False
        assert columns["_dlt_id"].get("row_key") and columns["_dlt_id"].get("unique")
    with pipeline.sql_client() as client:
        for object_type in ("contacts", "companies", "deals"):
            load_ids = client.execute_sql(f"SELECT DISTINCT _dlt_load_id FROM {object_type}")
            assert load_ids == [(pipeline.last_trace.last_normalize_info.loads_ids[0],)]
            assert client.execute_sql(f"SELECT count(*) = count(DISTINCT _dlt_id) FROM {object_type}") == [
                (True,)
            ]
