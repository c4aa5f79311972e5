"""dlt source for a CRM kept in a SQL database (PostgreSQL or DuckDB), read-only.

Built on dlt's ``sql_database`` (``sql_table``) with ``updated_at`` as the incremental cursor. Rows
are mapped to exactly the raw tables the HubSpot source produces (source name ``crm``): ``updated_at``
becomes ``lastmodifieddate`` / ``hs_lastmodifieddate``, contacts get ``phone_e164``, and deals get
``contact_ids`` from ``deal_contacts`` so the ``deals__contact_ids`` child table appears.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dlt
import sqlalchemy as sa
from dlt.sources import DltResource
from dlt.sources.sql_database import sql_table

from ingestion.hubspot.schema import COLUMNS, MODIFIED_PROPERTY, to_datetime, to_row

CRM_TABLES = ("contacts", "companies", "deals")


def read_only_engine(credentials: str | sa.Engine) -> sa.Engine:
    """Create a SQLAlchemy engine whose sessions cannot write.

    PostgreSQL sessions start with ``default_transaction_read_only=on``; DuckDB files are opened
    with ``read_only=True``. Any INSERT/UPDATE/DELETE/DDL through the engine raises.

    Args:
        credentials: SQLAlchemy URL (``postgresql://…`` or ``duckdb:///path``) or an existing engine
            (used as is: the caller vouches it is read-only).

    Returns:
        The engine.

    Raises:
        ValueError: The URL's dialect is neither PostgreSQL nor DuckDB.
    """
    if isinstance(credentials, sa.Engine):
        return credentials
    url = _url(credentials)
    backend = url.get_backend_name()
    if backend == "postgresql":
        return sa.create_engine(url, connect_args={"options": "-c default_transaction_read_only=on"})
    if backend == "duckdb":
        # NullPool: a pooled DuckDB connection would keep the file locked against the CRM's own writer.
        return sa.create_engine(url, connect_args={"read_only": True}, poolclass=sa.pool.NullPool)
    raise ValueError(f"sql_crm supports postgresql:// and duckdb:/// URLs, not {backend}://")


def _url(credentials: str | sa.URL) -> sa.URL:
    url = sa.make_url(str(credentials) if not isinstance(credentials, sa.URL) else credentials)
    if url.drivername == "postgresql":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project ships psycopg2.
        url = url.set(drivername="postgresql+psycopg2")
    return url


def _mapper(object_type: str, deal_contacts: Any) -> Any:
    modified = MODIFIED_PROPERTY[object_type]

    def to_raw(row: dict[str, Any]) -> dict[str, Any]:
        values = dict(row)
        values[modified] = values.pop("updated_at", None)
        out = to_row(object_type, values["id"], values, archived=bool(values.get("archived") or False))
        if object_type == "deals":
            # As HubSpot, which returns no associations for archived records.
            out["contact_ids"] = [] if out["archived"] else deal_contacts(out["id"])
        return out

    return to_raw


class _DealContacts:
    """deal id → contact ids, read once per extraction (keyed by the load id) from ``deal_contacts``."""

    def __init__(self, engine: sa.Engine, schema: str | None) -> None:
        self.engine, self.schema = engine, schema
        self._load_id: str | None = None
        self._mapping: dict[str, list[str]] = {}

    def __call__(self, deal_id: str) -> list[str]:
        try:
            # load_package_state, not load_package: dlt 1.x has no dlt.current.load_package, and the
            # AttributeError made every deal re-read the whole link table (quadratic: 4k deals took 13 min)
            load_id = dlt.current.load_package_state()["load_id"]
        except Exception:  # outside a pipeline run (e.g. iterating the source in a test)
            load_id = None
        if load_id is None or load_id != self._load_id:
            table = crm_metadata(self.schema).tables[_qualified("deal_contacts", self.schema)]
            mapping: dict[str, list[str]] = {}
            with self.engine.connect() as connection:
                for deal, contact in connection.execute(sa.select(table.c.deal_id, table.c.contact_id)):
                    mapping.setdefault(str(deal), []).append(str(contact))
            self._mapping = {k: sorted(set(v), key=lambda x: (len(x), x)) for k, v in mapping.items()}
            self._load_id = load_id
        return self._mapping.get(deal_id, [])


@dlt.source(name="crm", max_table_nesting=1)
def sql_crm_source(
    credentials: str = dlt.secrets.value, schema: str | None = None, chunk_size: int = 10_000
) -> list[DltResource]:
    """Contacts, companies and deals from a SQL CRM as the raw ``crm`` tables (see README).

    Args:
        credentials: SQLAlchemy URL of the CRM database (``CRM_DATABASE_URL``); opened read-only.
        schema: Database schema holding the CRM tables (default: the connection's default).
        chunk_size: Rows per page read from the database.

    Returns:
        The ``contacts``, ``companies`` and ``deals`` resources (merge on ``id``, incremental on
        ``updated_at``).
    """
    engine = read_only_engine(credentials)
    deal_contacts = _DealContacts(engine, schema)
    # The documented table layout is given to sql_table instead of reflected: reflection through
    # duckdb_engine with SQLAlchemy 2.1 queries pg_catalog.pg_collation, which DuckDB lacks.
    metadata = crm_metadata(schema)
    resources = []
    for object_type in CRM_TABLES:
        resource = sql_table(
            credentials=engine,
            table=object_type,
            schema=schema,
            metadata=metadata,
            incremental=dlt.sources.incremental("updated_at"),
            chunk_size=chunk_size,
            backend="sqlalchemy",
            reflection_level="minimal",
            primary_key="id",
            write_disposition="merge",
        )
        # Replace the table's columns (which include updated_at) with the raw table's columns.
        resource.apply_hints(columns={})
        resource.apply_hints(columns=COLUMNS[object_type])
        # The map must run after the incremental step, which filters on the database's updated_at;
        # add_map alone places maps before it (dlt's placement affinity), so insert at the end.
        resource.add_map(_mapper(object_type, deal_contacts), insert_at=len(resource._pipe))
        resources.append(resource)
    return resources


_CRM_SCHEMA_COLUMNS = {
    "contacts": [
        ("email", sa.Text),
        ("firstname", sa.Text),
        ("lastname", sa.Text),
        ("phone", sa.Text),
        ("mobilephone", sa.Text),
        ("country", sa.Text),
        ("hs_timezone", sa.Text),
        ("jobtitle", sa.Text),
        ("lifecyclestage", sa.Text),
        ("hs_email_optout", sa.Boolean),
        ("associatedcompanyid", sa.Text),
        ("createdate", sa.DateTime(timezone=True)),
    ],
    "companies": [
        ("name", sa.Text),
        ("domain", sa.Text),
        ("industry", sa.Text),
        ("numberofemployees", sa.BigInteger),
        ("country", sa.Text),
        ("createdate", sa.DateTime(timezone=True)),
    ],
    "deals": [
        ("dealname", sa.Text),
        ("amount", sa.Float),
        ("dealstage", sa.Text),
        ("pipeline", sa.Text),
        ("closedate", sa.DateTime(timezone=True)),
        ("createdate", sa.DateTime(timezone=True)),
        ("leadflow_product", sa.Text),
    ],
}


def crm_metadata(schema: str | None = None) -> sa.MetaData:
    """SQLAlchemy metadata of the SQL CRM tables documented in README.md."""
    metadata = sa.MetaData(schema=schema)
    for name, columns in _CRM_SCHEMA_COLUMNS.items():
        sa.Table(
            name,
            metadata,
            sa.Column("id", sa.Text, primary_key=True),
            *(sa.Column(c, t) for c, t in columns),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
        )
    sa.Table(
        "deal_contacts",
        metadata,
        sa.Column("deal_id", sa.Text, primary_key=True),
        sa.Column("contact_id", sa.Text, primary_key=True),
    )
    return metadata


def create_demo_sql_crm(url: str, crm: Any, schema: str | None = None) -> None:
    """Create the CRM tables in ``url`` and fill them from a generated :class:`DemoCrm`.

    For tests and demos only (this opens a writable connection).

    Args:
        url: SQLAlchemy URL (``duckdb:///file.duckdb`` or ``postgresql://…``).
        crm: A ``DemoCrm`` from ``ingestion.demo_crm.generate_crm``.
        schema: Target schema (created if missing); default the connection's default.
    """
    engine = sa.create_engine(_url(url))
    metadata = crm_metadata(schema)
    try:
        with engine.begin() as connection:
            if schema:
                connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            metadata.create_all(connection)
            for object_type in CRM_TABLES:
                rows = []
                for obj in crm.objects(object_type):
                    raw = to_row(object_type, obj["id"], obj["properties"], archived=obj["archived"])
                    row = {c: raw[c] for c, _ in _CRM_SCHEMA_COLUMNS[object_type]}
                    updated: datetime = raw[MODIFIED_PROPERTY[object_type]]
                    if obj.get("archivedAt"):  # archiving is an update: it moves updated_at
                        updated = max(updated, to_datetime(obj["archivedAt"]))
                    row.update(id=raw["id"], updated_at=updated, archived=raw["archived"])
                    rows.append(row)
                if rows:
                    connection.execute(metadata.tables[_qualified(object_type, schema)].insert(), rows)
            links = [{"deal_id": d, "contact_id": c} for d, cs in crm.deal_contacts.items() for c in cs]
            if links:
                connection.execute(metadata.tables[_qualified("deal_contacts", schema)].insert(), links)
    finally:
        engine.dispose()


def _qualified(table: str, schema: str | None) -> str:
    return f"{schema}.{table}" if schema else table


__all__ = ["COLUMNS", "create_demo_sql_crm", "crm_metadata", "read_only_engine", "sql_crm_source"]
