"""Run bookkeeping shared by the CLI and Dagster sensors: last successful run, failure alerts."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger("leadflow.orchestration")


def write_last_run(home: Path, run_id: str) -> None:
    """Record the last successful pipeline run in `$LEADFLOW_HOME/last_run.json` (read by the API's /health)."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "last_run.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps({"finished_at": datetime.now(UTC).isoformat(), "status": "success", "run_id": run_id})
    )
    os.replace(tmp, target)


def post_alert(url: str, alert: dict[str, Any], timeout: float = 10.0) -> bool:
    """POST a compact alert; never raises (an alert must not fail the sensor that sends it)."""
    try:
        response = requests.post(url, json=alert, timeout=timeout)
        response.raise_for_status()
        return True
    except requests.RequestException as error:
        log.warning("could not post alert to %s: %s", url, error)
        return False
