"""Property 1 (CRM part, raw level): after any sequence of syncs with updates, archives and creates
in between, every non-archived CRM record appears exactly once in the raw table (archived = false)
with its latest values, and every archived record that was loaded is marked archived.
"""

from __future__ import annotations

import os
import tempfile
import uuid

import dlt
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.demo_crm import DemoCrmServer, generate_crm
from ingestion.hubspot import hubspot_source
from ingestion.hubspot.schema import COLUMNS, to_row
from ingestion.load_formats import crm_loader_file_format

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

mutation = st.tuples(
    st.sampled_from(("contacts", "companies", "deals")),
    st.sampled_from(("update", "archive", "create")),
    st.integers(1, 4),
)


# A dlt run into DuckDB costs ~0.6-1 s; 100 examples (the specification's minimum) of up to 3 syncs each.
@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_contacts=st.integers(1, 40),
    page_size=st.integers(3, 100),
    between=st.lists(st.lists(mutation, max_size=4), min_size=1, max_size=2),
)
def test_raw_tables_hold_latest_state_once(seed, n_contacts, page_size, between):
    crm = generate_crm(seed, n_contacts)
    workdir = tempfile.mkdtemp()
    pipeline = dlt.pipeline(
        pipeline_name=f"p1_{uuid.uuid4().hex[:8]}",
        pipelines_dir=workdir,
        destination=dlt.destinations.duckdb(os.path.join(workdir, "wh.duckdb")),
        dataset_name="raw_crm",
    )
    file_format = crm_loader_file_format("duckdb")  # what leadflow loads DuckDB with
    with DemoCrmServer(crm) as server:
        pipeline.run(
            hubspot_source(server.base_url, "demo-token", page_size=page_size, backoff_base=0),
            loader_file_format=file_format,
        )
        for mutations in between:
            for object_type, action, count in mutations:
                getattr(server, f"{action}_records")(object_type, count=count)
            pipeline.run(
                hubspot_source(server.base_url, "demo-token", page_size=page_size, backoff_base=0),
                loader_file_format=file_format,
            )
        store = server.store

        with pipeline.sql_client() as client:
            for object_type in ("contacts", "companies", "deals"):
                names = list(COLUMNS[object_type])
                rows = client.execute_sql(f"SELECT {', '.join(names)} FROM {object_type}")
                loaded = [dict(zip(names, row, strict=True)) for row in rows]
                ids = [r["id"] for r in loaded]
                assert len(ids) == len(set(ids)), f"{object_type}: a record loaded twice"
                by_id = {r["id"]: r for r in loaded}
                for object_id, obj in store.objects[object_type].items():
                    if obj["archived"]:
                        if object_id in by_id:
                            assert by_id[object_id]["archived"] is True
                        continue
                    expected = to_row(object_type, object_id, obj["properties"], archived=False)
                    assert by_id.get(object_id) == expected, (object_type, object_id)
                live_rows = {r["id"] for r in loaded if not r["archived"]}
                assert live_rows == {i for i, o in store.objects[object_type].items() if not o["archived"]}
            links = client.execute_sql(
                "SELECT d.id, c.value FROM deals d JOIN deals__contact_ids c ON c._dlt_parent_id = d._dlt_id "
                "WHERE NOT d.archived"
            )
            got: dict[str, set[str]] = {}
            for deal_id, contact_id in links:
                got.setdefault(deal_id, set()).add(contact_id)
            expected_links = {
                d: set(cs)
                for d, cs in store.deal_contacts.items()
                if cs and d in store.objects["deals"] and not store.objects["deals"][d]["archived"]
            }
            assert got == expected_links
