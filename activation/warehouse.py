"""Short-lived connections to the warehouse (DuckDB file or PostgreSQL), one SQL dialect for callers.

DuckDB allows one writer process per file and a reader cannot open the file while a writer holds it,
so connections are opened per unit of work and closed right after; read-only opens retry briefly on a
lock error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlparse

_LOCK_RETRY_SECONDS = 10.0  # how long a reader waits for a DuckDB writer to finish a step
_WRITER_LOCK_RETRY_SECONDS = 60.0  # a writer waits longer: readers hold the file only briefly


class Warehouse:
    """A DB-API connection with `?` placeholders on both warehouses."""

    def __init__(self, connection: Any, kind: str):
        self.connection = connection
        self.kind = kind

    def _sql(self, sql: str) -> str:
        if self.kind == "postgres":
            # psycopg2 uses %s; escape literal percent signs first.
            return re.sub(r"\?", "%s", sql.replace("%", "%%"))
        return sql

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql(sql), tuple(params) if params else None)
        finally:
            cursor.close()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cursor = self.connection.cursor()
        try:
            cursor.executemany(self._sql(sql), [tuple(r) for r in rows])
        finally:
            cursor.close()

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], on_conflict: str = ""
    ) -> None:
        """Bulk insert (row-by-row executemany is ~10 ms a row on DuckDB; Arrow and execute_values are not)."""
        if not rows:
            return
        column_list = ", ".join(columns)
        if self.kind == "duckdb":
            import pyarrow as pa

            arrays = {
                name: list(values) for name, values in zip(columns, zip(*rows, strict=True), strict=False)
            }
            staged = pa.table(arrays)
            self.connection.register("_leadflow_rows", staged)
            try:
                self.connection.execute(
                    f"insert into {table} ({column_list}) select {column_list} from _leadflow_rows {on_conflict}"
                )
            finally:
                self.connection.unregister("_leadflow_rows")
            return
        from psycopg2.extras import execute_values

        cursor = self.connection.cursor()
        try:
            execute_values(
                cursor,
                f"insert into {table} ({column_list}) values %s {on_conflict.replace('%', '%%')}",
                [tuple(r) for r in rows],
                page_size=1000,
            )
        finally:
            cursor.close()

    def update_rows(
        self, table: str, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], assignments: str
    ) -> int:
        """Bulk `update table as t set <assignments> from <rows> as s where t.key = s.key`; rows updated.

        `rows` hold `columns` (which include `key`); `assignments` refer to the new values as `s.<column>` and
        to the current ones as `t.<column>`, with explicit casts (PostgreSQL types VALUES columns as text).
        """
        if not rows:
            return 0
        column_list = ", ".join(columns)
        if self.kind == "duckdb":
            import pyarrow as pa

            arrays = {
                name: list(values) for name, values in zip(columns, zip(*rows, strict=True), strict=False)
            }
            self.connection.register("_leadflow_rows", pa.table(arrays))
            try:
                result = self.connection.execute(
                    f"update {table} as t set {assignments} from _leadflow_rows as s where t.{key} = s.{key}"
                ).fetchone()
            finally:
                self.connection.unregister("_leadflow_rows")
            return int(result[0]) if result else 0
        from psycopg2.extras import execute_values

        cursor = self.connection.cursor()
        try:
            updated = 0
            for start in range(0, len(rows), 1000):  # execute_values' rowcount covers its last page only
                execute_values(
                    cursor,
                    f"update {table} as t set {assignments.replace('%', '%%')} from (values %s) "
                    f"as s ({column_list}) where t.{key} = s.{key}",
                    [tuple(r) for r in rows[start : start + 1000]],
                    page_size=1000,
                )
                updated += max(0, cursor.rowcount)
            return updated
        finally:
            cursor.close()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql(sql), tuple(params) if params else None)
            if cursor.description is None:
                return []
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def table_exists(self, schema: str, table: str) -> bool:
        return bool(
            self.scalar(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, table],
            )
        )

    def commit(self) -> None:
        """Commit and start the next transaction, so one connection can record many units of work."""
        self.connection.commit()
        if self.kind == "duckdb":
            self.connection.begin()

    def rollback(self, restart: bool = False) -> None:
        """Roll back; with `restart`, start the next transaction as `commit` does (to go on on this connection)."""
        self.connection.rollback()
        if restart and self.kind == "duckdb":
            self.connection.begin()


@contextmanager
def connect(url: str, read_only: bool = False) -> Iterator[Warehouse]:
    """Open the warehouse named by a leadflow warehouse URL; commit on success, roll back on error."""
    parsed = urlparse(url)
    if parsed.scheme == "duckdb":
        import duckdb

        path = unquote(url[len("duckdb:///") :])
        path = "/" + path.lstrip("/")
        deadline = time.monotonic() + (_LOCK_RETRY_SECONDS if read_only else _WRITER_LOCK_RETRY_SECONDS)
        while True:
            try:
                raw = duckdb.connect(path, read_only=read_only)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        raw.begin()
        warehouse = Warehouse(raw, "duckdb")
    else:
        import psycopg2

        dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1).replace(
            "postgres://", "postgresql://", 1
        )
        raw = psycopg2.connect(dsn)
        if read_only:
            raw.set_session(readonly=True)
        warehouse = Warehouse(raw, "postgres")
    try:
        yield warehouse
        warehouse.commit()
    except BaseException:
        warehouse.rollback()
        raise
    finally:
        raw.close()
