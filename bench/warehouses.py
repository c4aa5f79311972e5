"""Warehouses for the benchmark: a throwaway PostgreSQL server (the test suite's) and fresh databases.

The server is the one `tests/conftest.py` starts for the test suite (`PostgresServer`: initdb + pg_ctl
as the `postgres` OS user when run as root, trust auth on 127.0.0.1, fsync and synchronous_commit off),
imported rather than copied so the benchmark measures the server the tests use. Set
`LEADFLOW_BENCH_POSTGRES_URL` (or the suite's `LEADFLOW_TEST_POSTGRES_URL`) to use an existing server
whose user may create databases.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a PostgreSQL server's maintenance database; stop the server if started here."""
    from tests.conftest import PostgresServer, _wait_for

    given = os.environ.get("LEADFLOW_BENCH_POSTGRES_URL") or os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
    if given:
        _wait_for(given)
        yield given
        return
    server = PostgresServer()
    server.start()
    try:
        _wait_for(server.url)
        yield server.url
    finally:
        server.stop()


def create_database(server_url: str, prefix: str, template: str | None = None) -> str:
    """A fresh database (optionally a copy of `template`, a database URL) on the server; its URL."""
    from tests.conftest import create_database as create

    if template is None:
        return create(server_url, prefix)
    import uuid

    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(server_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'create database "{name}" template "{_database(template)}"')
    finally:
        conn.close()
    return urlparse(server_url)._replace(path=f"/{name}").geturl()


def drop_database(server_url: str, url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(server_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'drop database if exists "{_database(url)}" with (force)')
    finally:
        conn.close()


def _database(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def postgres_facts(server_url: str) -> dict[str, str]:
    """Server version and the settings that change load speed (the suite's server runs fsync=off)."""
    import psycopg2

    conn = psycopg2.connect(server_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("show server_version")
            facts = {"version": cursor.fetchone()[0]}
            for name in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "work_mem"):
                cursor.execute(f"show {name}")
                facts[name] = cursor.fetchone()[0]
    finally:
        conn.close()
    return facts


def duckdb_url(path: Path) -> str:
    """leadflow's URL form of a DuckDB file (absolute path: four slashes)."""
    return f"duckdb:///{Path(path).resolve()}"


def reset_dir(path: Path) -> Path:
    """Empty `path` (created if missing) and return it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def link_tree(source: Path, target: Path) -> int:
    """Hard-link every file under `source` into `target` (same layout); return the number of files.

    Landing files are immutable once complete, so links are as good as copies and take no space.
    """
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if not destination.exists():
                try:
                    os.link(path, destination)
                except OSError:  # another file system
                    shutil.copy2(path, destination)
            count += 1
    return count
