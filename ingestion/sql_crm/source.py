"""dlt source for a CRM kept in a SQL database (PostgreSQL or DuckDB), read-only.

Built on dlt's ``sql_database`` (``sql_table``) with ``updated_at`` as the incremental cursor. Rows
are mapped to exactly the raw tables the HubSpot source produces (source name ``crm``): ``updated_at``
becomes ``lastmodifieddate`` / ``hs_lastmodifieddate``, contacts get ``phone_e164``, and deals get
``contact_ids`` from ``deal_contacts`` so the ``deals__contact_ids`` child table appears.

Pages arrive as Arrow tables (``backend="pyarrow"``) and are mapped column-wise, exactly as ``to_row``
maps a row; contacts and companies stay Arrow (dlt's Arrow path, no Python normalizer), deals become
rows for their child table. See README "Arrow path".
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from dlt.common.normalizers.utils import generate_dlt_ids
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource
from dlt.sources.sql_database import sql_table

from ingestion.hubspot.schema import COLUMNS, MODIFIED_PROPERTY, to_datetime, to_e164, to_row

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


#: Arrow type of each raw column type (``COLUMNS``); timestamps are UTC, as ``to_datetime`` makes them.
_ARROW_TYPES = {
    "text": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "bool": pa.bool_(),
    "bigint": pa.int64(),
    "double": pa.float64(),
}
#: dlt's own columns, as its row normalizer adds them to a root table (the Arrow path adds none itself).
_DLT_COLUMNS: TTableSchemaColumns = {
    "_dlt_load_id": {"name": "_dlt_load_id", "data_type": "text", "nullable": False},
    "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": False, "unique": True, "row_key": True},
}


@functools.lru_cache(maxsize=1 << 16)
def _e164(phone: str | None, country: str | None) -> str | None:
    # CRMs repeat numbers (shared switchboards, placeholders); phonenumbers is the costly part per row.
    return to_e164(phone, country)


def _arrow_column(values: pa.ChunkedArray, data_type: str) -> pa.ChunkedArray:
    """One database column converted as ``to_row`` converts it (``_CONVERTERS`` in hubspot.schema)."""
    if data_type == "text":
        values = values.cast(pa.string())
        return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)  # "" → None
    if data_type == "bigint":
        # to_row's int(float(value)): the double round trip is part of the conversion (values beyond 2^53 round).
        return values.cast(pa.float64(), safe=False).cast(pa.int64(), safe=False)
    return values.cast(_ARROW_TYPES[data_type])


def _to_arrow(object_type: str, table: pa.Table) -> pa.Table:
    """A page of database rows → the raw table's columns, typed and converted exactly as ``to_row``."""
    modified = MODIFIED_PROPERTY[object_type]
    columns: dict[str, pa.ChunkedArray] = {}
    for name, column in COLUMNS[object_type].items():
        if name == "phone_e164":
            continue
        if name == "id":
            columns[name] = table["id"].cast(pa.string())
        elif name == "archived":
            columns[name] = pc.fill_null(table["archived"].cast(pa.bool_()), False)
        else:
            source = "updated_at" if name == modified else name
            if source in table.column_names:
                columns[name] = _arrow_column(table[source], column["data_type"])
            else:  # not selected (cannot happen with crm_metadata's layout): None as in to_row
                columns[name] = pa.chunked_array(
                    [pa.nulls(table.num_rows, _ARROW_TYPES[column["data_type"]])]
                )
    if object_type == "contacts":
        phones = zip(
            columns["phone"].to_pylist(),
            columns["mobilephone"].to_pylist(),
            columns["country"].to_pylist(),
            strict=True,
        )
        e164 = [(_e164(p, c) or _e164(m, c)) if (p or m) else None for p, m, c in phones]
        columns["phone_e164"] = pa.chunked_array([pa.array(e164, pa.string())])
    fields = [
        pa.field(name, _ARROW_TYPES[column["data_type"]], nullable=column.get("nullable", True))
        for name, column in COLUMNS[object_type].items()
    ]
    return pa.Table.from_arrays([columns[f.name] for f in fields], schema=pa.schema(fields))


def _mapper(object_type: str, deal_contacts: Any) -> Any:
    def to_raw(table: pa.Table) -> Any:
        out = _to_arrow(object_type, table)
        if object_type == "deals":
            # Rows (dlt's row path), so that contact_ids becomes the deals__contact_ids child table; the
            # Arrow path would load the list as one json column.
            rows = out.to_pylist()
            links = deal_contacts.links()
            for row in rows:
                # As HubSpot, which returns no associations for archived records.
                row["contact_ids"] = [] if row["archived"] else links.get(row["id"], [])
            return rows
        load_id = _load_id()
        if load_id is None:  # iterated outside a pipeline: no load package
            return out
        # The columns dlt's row normalizer would add (the Arrow path skips it): same layout as before.
        out = out.append_column(
            pa.field("_dlt_load_id", pa.string(), nullable=False),
            pa.chunked_array([pa.nulls(out.num_rows, pa.string()).fill_null(load_id)]),
        )
        return out.append_column(
            pa.field("_dlt_id", pa.string(), nullable=False),
            pa.chunked_array([pa.array(generate_dlt_ids(out.num_rows), pa.string())]),
        )

    return to_raw


def _load_id() -> str | None:
    try:
        # load_package_state, not load_package: dlt 1.x has no dlt.current.load_package
        return dlt.current.load_package_state()["load_id"]
    except Exception:  # outside a pipeline run (e.g. iterating the source in a test)
        return None


class _DealContacts:
    """deal id → contact ids, read once per extraction (keyed by the load id) from ``deal_contacts``."""

    def __init__(self, engine: sa.Engine, schema: str | None) -> None:
        self.engine, self.schema = engine, schema
        self._load_id: str | None = None
        self._mapping: dict[str, list[str]] = {}

    def __call__(self, deal_id: str) -> list[str]:
        return self.links().get(deal_id, [])

    def links(self) -> dict[str, list[str]]:
        """The whole mapping (fetch it once per page: the load id lookup costs per call)."""
        # dlt.current.load_package (absent in dlt 1.x) raised here once, and every deal re-read the
        # whole link table (quadratic: 4k deals took 13 min)
        load_id = _load_id()
        if load_id is None or load_id != self._load_id:
            table = crm_metadata(self.schema).tables[_qualified("deal_contacts", self.schema)]
            mapping: dict[str, list[str]] = {}
            with self.engine.connect() as connection:
                for deal, contact in connection.execute(sa.select(table.c.deal_id, table.c.contact_id)):
                    mapping.setdefault(str(deal), []).append(str(contact))
            self._mapping = {k: sorted(set(v), key=lambda x: (len(x), x)) for k, v in mapping.items()}
            self._load_id = load_id
        return self._mapping


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
            # Pages arrive as Arrow tables; _mapper converts them column-wise (pyarrow.compute).
            backend="pyarrow",
            reflection_level="minimal",
            primary_key="id",
            write_disposition="merge",
        )
        # Replace the table's columns (which include updated_at) with the raw table's columns.
        resource.apply_hints(columns={})
        resource.apply_hints(
            columns=COLUMNS[object_type]
            if object_type == "deals"
            else {**COLUMNS[object_type], **_DLT_COLUMNS}
        )
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
