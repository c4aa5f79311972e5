"""Intake settings: read once from the environment (see README.md in this folder for the table)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.settings import Settings, SettingsError, WarehouseTarget, parse_warehouse_url

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024  # 5 MiB: a SendGrid batch is at most ~1 MB; leaves headroom
DEFAULT_TOLERANCE_SECONDS = 300  # SendGrid/Twilio's own recommendation for replay protection
DEFAULT_SEEN_RETENTION_DAYS = 30  # SendGrid retries for 72 h, Meta for 7 days; keep well past both


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number: set it to a positive integer") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class IntakeConfig:
    """Everything the intake app needs; build with `IntakeConfig.from_env()` or directly in tests.

    A secret left as None makes the endpoints that need it fail closed (503 naming the setting).
    """

    home: Path
    warehouse_url: str
    sendgrid_public_key: str | None = field(default=None, repr=False)
    whatsapp_verify_token: str | None = field(default=None, repr=False)
    whatsapp_app_secret: str | None = field(default=None, repr=False)
    intake_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    seen_retention_days: int = DEFAULT_SEEN_RETENTION_DAYS

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def intake_dir(self) -> Path:
        """Intake's own state: the seen-index and quarantined events (outside the loader's landing dir)."""
        return self.home / "intake"

    @property
    def quarantine_dir(self) -> Path:
        return self.intake_dir / "quarantine"

    @property
    def last_run_path(self) -> Path:
        return self.home / "last_run.json"

    @classmethod
    def from_settings(cls, settings: Settings, environ: dict[str, str] | None = None) -> IntakeConfig:
        env = dict(os.environ if environ is None else environ)
        return cls(
            home=settings.home,
            warehouse_url=settings.warehouse.url,
            sendgrid_public_key=(env.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or "").strip() or None,
            whatsapp_verify_token=env.get("WHATSAPP_VERIFY_TOKEN") or None,
            whatsapp_app_secret=env.get("WHATSAPP_APP_SECRET") or None,
            intake_token=env.get("LEADFLOW_INTAKE_TOKEN") or None,
            max_body_bytes=_positive_int(env, "LEADFLOW_INTAKE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            tolerance_seconds=_positive_int(
                env, "LEADFLOW_WEBHOOK_TOLERANCE_SECONDS", DEFAULT_TOLERANCE_SECONDS
            ),
            seen_retention_days=_positive_int(
                env, "LEADFLOW_INTAKE_SEEN_RETENTION_DAYS", DEFAULT_SEEN_RETENTION_DAYS
            ),
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> IntakeConfig:
        """Read LEADFLOW_HOME, LEADFLOW_WAREHOUSE_URL (parsed like `Settings`) and the intake settings.

        Raises:
            SettingsError: a setting is malformed; the message names it.
        """
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("LEADFLOW_HOME") or ".leadflow").expanduser()
        if not home.is_absolute():
            home = (Path.cwd() / home).resolve()
        url = env.get("LEADFLOW_WAREHOUSE_URL") or f"duckdb:///{home / 'warehouse.duckdb'}"
        return cls.from_settings(_settings_stub(home, parse_warehouse_url(url, home)), env)


def _settings_stub(home: Path, warehouse: WarehouseTarget) -> Settings:
    # Settings.from_env validates CRM/n8n settings the API does not need; only home and warehouse matter.
    return Settings(
        home=home,
        warehouse=warehouse,
        crm="demo",
        hubspot_base_url=None,
        hubspot_access_token=None,
        crm_database_url=None,
        n8n_webhook_url=None,
        n8n_webhook_token=None,
    )
