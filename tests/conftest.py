"""Shared fixtures: one throwaway PostgreSQL server per test session, fresh databases per test.

Set LEADFLOW_TEST_POSTGRES_URL to use an existing server instead (its user must be allowed to create
databases). As root, initdb/pg_ctl refuse to run, so the server runs as the `postgres` OS user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_OWN_DBT_TARGET = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Give each test process (each pytest-xdist worker) its own dbt artifacts directory.

    `leadflow run` and the Dagster definitions parse dbt into the target path; two workers writing
    dbt_project/target at once could hand one of them a half-written manifest. DBT_TARGET_PATH is dbt's
    own setting and orchestration/definitions.py reads the manifest from it. A path set by the caller wins.
    """
    if not os.environ.get("DBT_TARGET_PATH"):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        os.environ["DBT_TARGET_PATH"] = tempfile.mkdtemp(prefix=f"leadflow-dbt-target-{worker}-")
        config.stash[_OWN_DBT_TARGET] = os.environ["DBT_TARGET_PATH"]


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_DBT_TARGET, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)
        os.environ.pop("DBT_TARGET_PATH", None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres_user(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temp dir, trust auth on 127.0.0.1."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="leadflow-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.log = self.base / "server.log"

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        subprocess.run(
            _as_postgres_user(
                ["initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        subprocess.run(
            _as_postgres_user(
                ["pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(
            _as_postgres_user(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def _wait_for(url: str, timeout: float = 30.0) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(url).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the session's PostgreSQL server (maintenance database)."""
    given = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
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


def create_database(server_url: str, prefix: str = "t") -> str:
    """Create a fresh database on the server and return its URL."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(server_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'create database "{name}"')
    finally:
        conn.close()
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """A URL to a fresh, empty database on the session's PostgreSQL server."""
    return create_database(postgres_server_url)
