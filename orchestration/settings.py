"""leadflow settings: read once from the environment, validated early, with messages that name the fix.

Every setting is documented in the README's settings table. Nothing here imports Dagster, so the CLI
can fail fast on a bad setting before any heavy import.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

CRM_KINDS = ("demo", "hubspot", "sql")
# batches in flight to the n8n webhook at once. 1 by default: n8n 1.123's Remove Duplicates node loses keys
# recorded by concurrent executions (5 of 60 with 4 in flight, tests/e2e/test_n8n_delivery.py), and that node
# is what drops a re-sent key after a crash or a lost answer. Above 16 one n8n instance only queues them.
DEFAULT_DELIVERY_CONCURRENCY = 1
MAX_DELIVERY_CONCURRENCY = 16
DEMO_HUBSPOT_TOKEN = "demo-token"  # the bundled demo CRM's bearer token; not a secret


#: DuckDB's own default. A cap holds a build's memory down (512MB: M's full refresh peaked at 787 MiB instead of
#: 2.4 GiB, 6 % slower) but the stage walk, a recursive CTE that DuckDB cannot spill, then ran out of memory after
#: 10 % new events at M: a cap is the user's call for their data, not a default.
DEFAULT_DUCKDB_MEMORY_LIMIT = "80%"
_MEMORY_LIMIT_RE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB|%)$", re.IGNORECASE)


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the setting and the fix."""


@dataclass(frozen=True)
class WarehouseTarget:
    """Where the warehouse is, parsed from LEADFLOW_WAREHOUSE_URL."""

    url: str
    kind: str  # "duckdb" or "postgres"
    duckdb_path: Path | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    #: DuckDB's memory_limit for dbt builds (profiles.yml): a size such as 1GB or a share of RAM such as 80%
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT

    @property
    def dbt_target(self) -> str:
        return self.kind

    def redacted_url(self) -> str:
        """The URL with any password replaced, safe to print."""
        if self.kind == "duckdb":
            return self.url
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        return f"postgresql://{auth}{self.host}:{self.port}/{self.database}"

    def dlt_credentials(self):
        """Credentials in the form dlt destinations accept."""
        if self.kind == "duckdb":
            return str(self.duckdb_path)
        if self.password:
            return self.url.replace("postgres://", "postgresql://", 1)
        # dlt's PostgreSQL credentials refuse an empty password; a server using trust auth ignores this one.
        return f"postgresql://{quote(self.user or 'postgres', safe='')}:unused@{self.host}:{self.port}/{self.database}"

    def dbt_env(self) -> dict[str, str]:
        """Environment variables profiles.yml reads (dbt cannot parse a URL itself)."""
        env = {"LEADFLOW_DBT_TARGET": self.kind}
        if self.kind == "duckdb":
            env["LEADFLOW_DUCKDB_PATH"] = str(self.duckdb_path)
            env["LEADFLOW_DUCKDB_MEMORY_LIMIT"] = self.duckdb_memory_limit
        else:
            env.update(
                LEADFLOW_PG_HOST=self.host or "localhost",
                LEADFLOW_PG_PORT=str(self.port or 5432),
                LEADFLOW_PG_USER=self.user or "postgres",
                LEADFLOW_PG_PASSWORD=self.password or "",
                LEADFLOW_PG_DATABASE=self.database or "postgres",
            )
        return env


def parse_warehouse_url(
    url: str, home: Path, duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
) -> WarehouseTarget:
    """Parse `duckdb:///path` or `postgresql://user:pass@host:port/db`."""
    fix = (
        "set LEADFLOW_WAREHOUSE_URL to duckdb:////ABSOLUTE/PATH.duckdb (or duckdb:///RELATIVE/PATH.duckdb) or "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or unset it for the embedded default)"
    )
    parsed = urlparse(url)
    if parsed.scheme == "duckdb":
        # SQLAlchemy's convention: duckdb:///relative/file.duckdb, duckdb:////absolute/file.duckdb
        raw_path = unquote(url[len("duckdb:///") :]) if url.startswith("duckdb:///") else ""
        path = Path(raw_path)
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
        if not raw_path or path.is_dir():
            raise SettingsError(f"LEADFLOW_WAREHOUSE_URL={url!r} names no DuckDB file: {fix}")
        return WarehouseTarget(
            url=f"duckdb:///{path}", kind="duckdb", duckdb_path=path, duckdb_memory_limit=duckdb_memory_limit
        )
    if parsed.scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
        if not parsed.hostname or not parsed.path.strip("/"):
            raise SettingsError(f"LEADFLOW_WAREHOUSE_URL={_redact(url)!r} lacks a host or database: {fix}")
        return WarehouseTarget(
            url=url.replace("postgresql+psycopg2://", "postgresql://", 1),
            kind="postgres",
            host=parsed.hostname,
            port=parsed.port or 5432,
            user=unquote(parsed.username) if parsed.username else "postgres",
            password=unquote(parsed.password) if parsed.password else None,
            database=parsed.path.strip("/"),
        )
    raise SettingsError(
        f"LEADFLOW_WAREHOUSE_URL={_redact(url)!r} has an unknown scheme {parsed.scheme!r}: {fix}"
    )


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


@dataclass(frozen=True)
class Settings:
    """All leadflow settings. Build with `Settings.from_env()`."""

    home: Path
    warehouse: WarehouseTarget
    crm: str
    hubspot_base_url: str | None
    hubspot_access_token: str | None = field(repr=False)
    crm_database_url: str | None = field(repr=False)
    n8n_webhook_url: str | None
    n8n_webhook_token: str | None = field(repr=False)
    email_from: str = "nurture@leadflow.example"
    alert_url: str | None = None
    freshness_min_interval_seconds: int = 5
    report_cron: str = "0 6 * * *"
    sendgrid_unsubscribe_group_id: int | None = None
    delivery_concurrency: int = DEFAULT_DELIVERY_CONCURRENCY

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("LEADFLOW_HOME") or ".leadflow").expanduser()
        if not home.is_absolute():
            home = (Path.cwd() / home).resolve()
        if home.exists() and not home.is_dir():
            raise SettingsError(f"LEADFLOW_HOME={home} is a file: point LEADFLOW_HOME at a directory")

        warehouse_url = env.get("LEADFLOW_WAREHOUSE_URL") or f"duckdb:///{home / 'warehouse.duckdb'}"
        memory_limit = (env.get("LEADFLOW_DUCKDB_MEMORY_LIMIT") or DEFAULT_DUCKDB_MEMORY_LIMIT).strip()
        if not _MEMORY_LIMIT_RE.match(memory_limit):
            raise SettingsError(
                f"LEADFLOW_DUCKDB_MEMORY_LIMIT={memory_limit!r} is not a DuckDB memory limit: set a size such as "
                f"512MB or 2GB, or a share of RAM such as 50% (unset it for the default, {DEFAULT_DUCKDB_MEMORY_LIMIT})"
            )
        warehouse = parse_warehouse_url(warehouse_url, home, memory_limit)

        crm = (env.get("LEADFLOW_CRM") or "demo").strip().lower()
        if crm not in CRM_KINDS:
            raise SettingsError(
                f"LEADFLOW_CRM={crm!r} is not one of {', '.join(CRM_KINDS)}: set LEADFLOW_CRM=demo for the "
                "bundled demo CRM, hubspot (with HUBSPOT_ACCESS_TOKEN) or sql (with CRM_DATABASE_URL)"
            )
        hubspot_base_url = env.get("HUBSPOT_BASE_URL") or None
        hubspot_token = env.get("HUBSPOT_ACCESS_TOKEN") or None
        crm_database_url = env.get("CRM_DATABASE_URL") or None
        if crm == "hubspot":
            hubspot_base_url = hubspot_base_url or "https://api.hubapi.com"
            if not hubspot_token:
                raise SettingsError(
                    "LEADFLOW_CRM=hubspot needs HUBSPOT_ACCESS_TOKEN: create a HubSpot private app with the "
                    "crm.objects.contacts/companies/deals.read scopes and export its token "
                    "(or put it in .dlt/secrets.toml)"
                )
        if crm == "sql" and not crm_database_url:
            raise SettingsError(
                "LEADFLOW_CRM=sql needs CRM_DATABASE_URL: set it to a SQLAlchemy URL such as "
                "postgresql://USER:PASSWORD@HOST/DB or duckdb:////PATH/crm.duckdb"
            )
        if hubspot_base_url and not hubspot_base_url.startswith(("http://", "https://")):
            raise SettingsError(f"HUBSPOT_BASE_URL={hubspot_base_url!r} must start with http:// or https://")

        n8n_url = env.get("N8N_WEBHOOK_URL") or None
        n8n_token = env.get("N8N_WEBHOOK_TOKEN") or None
        if n8n_url and not n8n_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"N8N_WEBHOOK_URL={n8n_url!r} must be an http(s) URL such as "
                "http://localhost:5678/webhook/leadflow-nurture (or unset it to write to the file outbox)"
            )
        if n8n_url and not n8n_token:
            raise SettingsError(
                "N8N_WEBHOOK_URL is set but N8N_WEBHOOK_TOKEN is not: set N8N_WEBHOOK_TOKEN to the value of the "
                "n8n webhook's header credential (X-Leadflow-Token)"
            )
        email_from = (env.get("LEADFLOW_EMAIL_FROM") or "nurture@leadflow.example").strip()
        if "@" not in email_from:
            raise SettingsError(
                f"LEADFLOW_EMAIL_FROM={email_from!r} is not an email address: set it to the sender address "
                "verified in your SendGrid account"
            )
        alert_url = env.get("LEADFLOW_ALERT_URL") or None
        if alert_url and not alert_url.startswith(("http://", "https://")):
            raise SettingsError(f"LEADFLOW_ALERT_URL={alert_url!r} must be an http(s) URL (or unset it)")
        raw_interval = env.get("LEADFLOW_FRESHNESS_MIN_INTERVAL_SECONDS") or "5"
        try:
            min_interval = int(raw_interval)
            if min_interval < 1:
                raise ValueError
        except ValueError as error:
            raise SettingsError(
                f"LEADFLOW_FRESHNESS_MIN_INTERVAL_SECONDS={raw_interval!r} must be a whole number of seconds >= 1"
            ) from error
        report_cron = (env.get("LEADFLOW_REPORT_CRON") or "0 6 * * *").strip()
        if len(report_cron.split()) != 5:
            raise SettingsError(
                f"LEADFLOW_REPORT_CRON={report_cron!r} is not a 5-field cron expression such as '0 6 * * *'"
            )
        raw_group = (env.get("SENDGRID_UNSUBSCRIBE_GROUP_ID") or "").strip()
        try:
            unsubscribe_group = int(raw_group) if raw_group else None
        except ValueError as error:
            raise SettingsError(
                f"SENDGRID_UNSUBSCRIBE_GROUP_ID={raw_group!r} must be the numeric id of a SendGrid unsubscribe "
                "group (Marketing → Unsubscribe Groups)"
            ) from error
        raw_concurrency = (
            env.get("LEADFLOW_DELIVERY_CONCURRENCY") or str(DEFAULT_DELIVERY_CONCURRENCY)
        ).strip()
        try:
            delivery_concurrency = int(raw_concurrency)
            if not 1 <= delivery_concurrency <= MAX_DELIVERY_CONCURRENCY:
                raise ValueError
        except ValueError as error:
            raise SettingsError(
                f"LEADFLOW_DELIVERY_CONCURRENCY={raw_concurrency!r} must be a whole number from 1 to "
                f"{MAX_DELIVERY_CONCURRENCY}: the number of batches in flight to the n8n webhook at once "
                f"(unset it for the default, {DEFAULT_DELIVERY_CONCURRENCY}: more than 1 only for a receiver whose "
                "duplicate guard holds under concurrent requests)"
            ) from error
        return cls(
            home=home,
            warehouse=warehouse,
            crm=crm,
            hubspot_base_url=hubspot_base_url,
            hubspot_access_token=hubspot_token,
            crm_database_url=crm_database_url,
            n8n_webhook_url=n8n_url,
            n8n_webhook_token=n8n_token,
            email_from=email_from,
            alert_url=alert_url,
            freshness_min_interval_seconds=min_interval,
            report_cron=report_cron,
            sendgrid_unsubscribe_group_id=unsubscribe_group,
            delivery_concurrency=delivery_concurrency,
        )

    def export_dbt_env(self) -> None:
        """Put the variables profiles.yml reads into this process's environment."""
        os.environ.update(self.warehouse.dbt_env())
