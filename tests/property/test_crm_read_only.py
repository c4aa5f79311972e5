"""Property 10: ingestion never writes to the CRM.

For random sync sequences (CRM changes between syncs), page sizes and injected 429/5xx answers,
the demo CRM's request log holds only allow-listed HubSpot reads, and a SQL CRM's content checksum
is unchanged by ingestion.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid

import dlt
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.demo_crm import DemoCrmServer, generate_crm, is_read_request
from ingestion.hubspot import hubspot_source
from ingestion.sql_crm import create_demo_sql_crm, sql_crm_source

TABLES = ("contacts", "companies", "deals", "deal_contacts")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no network here; skip telemetry work


def content_checksum(url: str) -> str:
    """sha256 over every row of every CRM table, in a stable order (read-only connection)."""
    engine = sa.create_engine(url, connect_args={"read_only": True}, poolclass=sa.pool.NullPool)
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for table in TABLES:
            for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY ALL")):
                digest.update(repr(tuple(row)).encode())
        digest.update(
            repr(
                connection.execute(
                    sa.text(
                        "SELECT table_name, column_name, data_type "
                        "FROM information_schema.columns ORDER BY ALL"
                    )
                ).all()
            ).encode()
        )
    engine.dispose()
    return digest.hexdigest()


@pytest.fixture(scope="module")
def crm_server():
    with DemoCrmServer(seed=1, n_contacts=10) as server:
        yield server


@pytest.fixture(scope="module")
def sql_crm_url(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('sqlcrm')}/crm.duckdb"
    create_demo_sql_crm(url, generate_crm(2, 40))
    return url


@pytest.fixture(scope="module")
def sql_pipeline(tmp_path_factory):
    # One pipeline across examples, so later examples run incremental (updated_at) syncs.
    return dlt.pipeline(pipeline_name="p10_sql", pipelines_dir=str(tmp_path_factory.mktemp("p10sql")))


mutation = st.tuples(
    st.sampled_from(("contacts", "companies", "deals")),
    st.sampled_from(("update", "archive", "create")),
    st.integers(1, 3),
)
fault = st.tuples(st.sampled_from((429, 500, 502, 503, 504)), st.integers(1, 2))
sync_step = st.tuples(st.lists(mutation, max_size=3), st.lists(fault, max_size=2))


# dlt costs ~0.25 s per sync whatever the size, so examples stay small to keep this near a minute.
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    n_contacts=st.integers(0, 20),
    page_size=st.integers(5, 120),
    steps=st.lists(sync_step, min_size=1, max_size=2),
)
def test_hubspot_ingestion_only_reads(crm_server, seed, n_contacts, page_size, steps):
    crm_server.reset(generate_crm(seed, n_contacts))
    pipeline = dlt.pipeline(pipeline_name=f"p10_{uuid.uuid4().hex[:8]}", pipelines_dir=tempfile.mkdtemp())
    for mutations, faults in steps:
        for object_type, action, count in mutations:
            getattr(crm_server, f"{action}_records")(object_type, count=count)
        for status, count in faults:  # at most 4 in a row: fewer than max_attempts
            crm_server.inject_faults(status, count=count, retry_after=0)
        pipeline.extract(
            hubspot_source(
                crm_server.base_url, "demo-token", page_size=page_size, backoff_base=0, max_attempts=6
            )
        )
    log = crm_server.request_log
    assert log, "the syncs made requests"
    assert all(is_read_request(e["method"], e["path"]) for e in log), crm_server.writes()
    assert {e["method"] for e in log} <= {"GET", "POST"}
    assert all(e["status"] in (200, 207, 429, 500, 502, 503, 504) for e in log)


# A SQL sync costs ~1 s with the checksums (DuckDB file opens): 25 examples.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    touch=st.lists(st.sampled_from(("contacts", "companies", "deals")), max_size=3),
    chunk_size=st.integers(1, 50),
)
def test_sql_ingestion_leaves_crm_unchanged(sql_crm_url, sql_pipeline, touch, chunk_size):
    writer = sa.create_engine(sql_crm_url, poolclass=sa.pool.NullPool)
    with writer.begin() as connection:  # the CRM's own users change records between syncs
        for table in touch:
            connection.execute(
                sa.text(f"UPDATE {table} SET updated_at = now() WHERE id = (SELECT min(id) FROM {table})")
            )
    writer.dispose()
    before = content_checksum(sql_crm_url)
    sql_pipeline.extract(sql_crm_source(sql_crm_url, chunk_size=chunk_size))
    assert content_checksum(sql_crm_url) == before


@pytest.mark.postgres
def test_postgres_crm_unchanged_by_ingestion(postgres_url, tmp_path):
    create_demo_sql_crm(postgres_url, generate_crm(5, 60))
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg2://"))

    def checksum() -> str:
        digest = hashlib.sha256()
        with engine.connect() as connection:
            for table in TABLES:
                digest.update(
                    repr(connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2")).all()).encode()
                )
        return digest.hexdigest()

    before = checksum()
    pipeline = dlt.pipeline(pipeline_name="p10pg", pipelines_dir=str(tmp_path))
    for chunk in (7, 1000):
        pipeline.extract(sql_crm_source(postgres_url, chunk_size=chunk))
    assert checksum() == before
    engine.dispose()
