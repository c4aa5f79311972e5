"""A real n8n for tests: installed once (cache outside the checkout), configured in a temp user folder.

Use it as a session fixture — startup costs ~10-20 s, the first install ~3 minutes:

    @pytest.fixture(scope="session")
    def n8n(provider_stubs):
        with N8nServer(env=provider_stubs.env()) as server:
            yield server

`N8nServer.start()` installs n8n if needed (`n8n/install.sh`), imports the credential and workflows with the
n8n CLI into a fresh `N8N_USER_FOLDER`, activates the webhook workflow, starts `n8n start` on a free port
and waits until the webhook answers; `stop()` kills the process group and removes the folder.
Set `LEADFLOW_KEEP_N8N_FOLDER=1` to keep the folder (database, n8n.log) for debugging.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from orchestration import n8n_tools


class N8nServer:
    """One n8n process with leadflow's workflows, pointed at whatever `env` says (e.g. provider stubs)."""

    def __init__(self, env: Mapping[str, str] | None = None, webhook_token: str = "test-webhook-token"):
        self.env = dict(env or {})
        self.webhook_token = webhook_token
        self.user_folder = Path(tempfile.mkdtemp(prefix="leadflow-n8n-"))
        self.process: n8n_tools.N8nProcess | None = None
        self.timings: dict[str, float] = {}

    @property
    def webhook_url(self) -> str:
        assert self.process is not None, "n8n is not running"
        return self.process.webhook_url

    @property
    def base_url(self) -> str:
        assert self.process is not None, "n8n is not running"
        return self.process.base_url

    def wait_until_idle(self, timeout: float = 15.0) -> bool:
        """Wait until n8n runs no execution (work after the webhook answer, error workflows)."""
        return self.process.wait_until_idle(timeout) if self.process else True

    def log_tail(self, chars: int = 4000) -> str:
        return self.process.log_tail(chars) if self.process else ""

    def start(self) -> N8nServer:
        started = time.monotonic()
        n8n_tools.ensure_installed(quiet=True)
        self.timings["install_check"] = round(time.monotonic() - started, 1)

        started = time.monotonic()
        env = n8n_tools.n8n_env(self.user_folder, extra=self.env)
        n8n_tools.import_all(self.user_folder, webhook_token=self.webhook_token, env=env)
        self.timings["import"] = round(time.monotonic() - started, 1)

        started = time.monotonic()
        self.process = n8n_tools.N8nProcess(self.user_folder, env=self.env).start()
        self.timings["startup"] = round(time.monotonic() - started, 1)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if not os.environ.get("LEADFLOW_KEEP_N8N_FOLDER"):
            shutil.rmtree(self.user_folder, ignore_errors=True)

    def __enter__(self) -> N8nServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
