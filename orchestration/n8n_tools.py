"""Install, configure and run a local n8n for leadflow — plain Python, no Dagster.

The CLI (`leadflow n8n …`) and the end-to-end tests call these functions:

- `ensure_installed()` runs `n8n/install.sh` (idempotent; n8n 1.123.81 on Node 22 in a cache outside the
  checkout, `$LEADFLOW_N8N_HOME`, default `~/.cache/leadflow/n8n`).
- `import_all()` imports the header-auth credential (built from `N8N_WEBHOOK_TOKEN`) and every workflow in
  `n8n/workflows/` into an n8n user folder with the n8n CLI, then activates the webhook workflow.
- `N8nProcess` starts `n8n start` on a port, waits until the webhook answers, and stops the process group.

Why the CLI and not the REST API: the public API needs an API key that only the UI can create; the CLI
works on a fresh user folder with no owner account. Activation changes made with the CLI take effect at the
next `n8n start`, so import before starting.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
N8N_DIR = REPO_ROOT / "n8n"
WORKFLOWS_DIR = N8N_DIR / "workflows"
INSTALL_SCRIPT = N8N_DIR / "install.sh"
N8N_VERSION = "1.123.81"

WEBHOOK_PATH = "leadflow-nurture"
TOKEN_HEADER = "X-Leadflow-Token"
# Ids fixed in the workflow JSON so the webhook node finds its credential after import.
WEBHOOK_CREDENTIAL_ID = "lfWebhookToken01"
WEBHOOK_CREDENTIAL_NAME = "leadflow webhook token"
# The error workflow runs through the delivery workflow's settings.errorWorkflow; it is never activated.
ACTIVE_WORKFLOW_IDS = ("lfNurtureDeliver",)

# Environment for every n8n process: quiet, local, and Code nodes may read provider URLs/keys from env.
BASE_ENV = {
    "N8N_LISTEN_ADDRESS": "127.0.0.1",
    "N8N_DIAGNOSTICS_ENABLED": "false",
    "N8N_PERSONALIZATION_ENABLED": "false",
    "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
    "N8N_TEMPLATES_ENABLED": "false",
    "N8N_SECURE_COOKIE": "false",
    "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",
    "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
    "N8N_HIRING_BANNER_ENABLED": "false",
    "N8N_RUNNERS_ENABLED": "true",  # Code nodes in the task runner: the default from n8n 2.0 on
    "N8N_GIT_NODE_DISABLE_BARE_REPOS": "true",  # quiets a deprecation notice at every start
    "DB_SQLITE_POOL_SIZE": "2",
}

# Settings passed through from leadflow's environment to n8n (read by the workflows via $env).
PASSTHROUGH_ENV = (
    "SENDGRID_BASE_URL",
    "SENDGRID_API_KEY",
    "WHATSAPP_BASE_URL",
    "WHATSAPP_API_VERSION",
    "WHATSAPP_PHONE_NUMBER_ID",
    "WHATSAPP_ACCESS_TOKEN",
    "CHATBOT_WEBHOOK_URL",
    "CHATBOT_WEBHOOK_TOKEN",
    "LEADFLOW_DELIVERY_URL",
    "LEADFLOW_INTAKE_TOKEN",
    "LEADFLOW_ALERT_URL",
    "LEADFLOW_PROVIDER_MAX_ATTEMPTS",
    "LEADFLOW_PROVIDER_BACKOFF_MS",
    "LEADFLOW_PROVIDER_MAX_WAIT_MS",
    "LEADFLOW_PROVIDER_TIMEOUT_MS",
    "LEADFLOW_PROVIDER_CONCURRENCY",
)


class N8nError(RuntimeError):
    """n8n could not be installed, configured or started; the message says which step and why."""


def n8n_home() -> Path:
    """The install cache (`$LEADFLOW_N8N_HOME`, default `~/.cache/leadflow/n8n`)."""
    return Path(os.environ.get("LEADFLOW_N8N_HOME") or Path.home() / ".cache" / "leadflow" / "n8n")


def n8n_binary(home: Path | None = None) -> Path:
    return (home or n8n_home()) / "app" / "node_modules" / ".bin" / "n8n"


def node_bin_dir(home: Path | None = None) -> Path:
    return (home or n8n_home()) / "runtime" / "node_modules" / ".bin"


def is_installed() -> bool:
    """True when the pinned n8n version is installed in the cache."""
    result = subprocess.run(["bash", str(INSTALL_SCRIPT), "--check"], capture_output=True, text=True)
    return result.returncode == 0


def ensure_installed(*, quiet: bool = False) -> Path:
    """Install n8n into the cache unless present; return the n8n binary (~3 minutes the first time)."""
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
    )
    if result.returncode != 0:
        detail = (result.stderr or "")[-2000:] if quiet else "see the output above"
        raise N8nError(f"n8n install failed ({INSTALL_SCRIPT}): {detail}")
    return Path(result.stdout.strip().splitlines()[-1])


def default_user_folder() -> Path:
    """Where leadflow's own n8n keeps its database: `$N8N_USER_FOLDER`, else `$LEADFLOW_HOME/n8n`."""
    if os.environ.get("N8N_USER_FOLDER"):
        return Path(os.environ["N8N_USER_FOLDER"])
    return Path(os.environ.get("LEADFLOW_HOME", ".leadflow")).resolve() / "n8n"


def n8n_env(
    user_folder: Path,
    *,
    port: int | None = None,
    extra: Mapping[str, str] | None = None,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for an n8n process: PATH with Node 22 first, BASE_ENV, passthrough settings, extra."""
    source = os.environ if source is None else source
    # leadflow's own N8N_WEBHOOK_* settings mean nothing to n8n; other N8N_* (e.g. an encryption key) pass.
    env = {k: v for k, v in os.environ.items() if k not in ("N8N_WEBHOOK_URL", "N8N_WEBHOOK_TOKEN")}
    env["PATH"] = f"{node_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env.update(BASE_ENV)
    env.update({k: source[k] for k in PASSTHROUGH_ENV if source.get(k)})
    env["N8N_USER_FOLDER"] = str(user_folder)
    if port is not None:
        env["N8N_PORT"] = str(port)
        # The task runner broker listens on its own port; keep parallel n8n processes apart.
        env["N8N_RUNNERS_BROKER_PORT"] = str(free_port())
    env.update(extra or {})
    return env


def _run_cli(args: list[str], env: Mapping[str, str], what: str, timeout: float = 180) -> str:
    result = subprocess.run(
        [str(n8n_binary()), *args], env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise N8nError(f"n8n {what} failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    return result.stdout


def credentials_document(webhook_token: str) -> list[dict]:
    """The credentials n8n imports: the header-auth credential the webhook node checks."""
    if not webhook_token:
        raise N8nError("N8N_WEBHOOK_TOKEN is empty: the webhook would accept nothing (or anything)")
    return [
        {
            "id": WEBHOOK_CREDENTIAL_ID,
            "name": WEBHOOK_CREDENTIAL_NAME,
            "type": "httpHeaderAuth",
            "data": {"name": TOKEN_HEADER, "value": webhook_token},
        }
    ]


def import_all(
    user_folder: Path | None = None,
    *,
    webhook_token: str | None = None,
    workflows_dir: Path = WORKFLOWS_DIR,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Import the webhook credential and all workflows into `user_folder`, then activate the webhook workflow.

    Re-running it overwrites the same ids (credential and workflows), so it is safe after a workflow change.
    Restart n8n afterwards: activation changes take effect at `n8n start`.

    Args:
        user_folder: n8n user folder (default: `default_user_folder()`).
        webhook_token: the token activation sends in `X-Leadflow-Token` (default `$N8N_WEBHOOK_TOKEN`).
        workflows_dir: folder of workflow JSON files.
        env: environment for the n8n CLI (default `n8n_env(user_folder)`).

    Returns:
        The imported workflow file names.
    """
    user_folder = Path(user_folder or default_user_folder())
    user_folder.mkdir(parents=True, exist_ok=True)
    token = webhook_token if webhook_token is not None else os.environ.get("N8N_WEBHOOK_TOKEN", "")
    env = dict(env or n8n_env(user_folder))
    # The credential file holds the token in clear: write it private, delete it right after the import.
    with tempfile.TemporaryDirectory(prefix="leadflow-n8n-cred-") as tmp:
        cred_file = Path(tmp) / "credentials.json"
        fd = os.open(cred_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(credentials_document(token), handle)
        _run_cli(["import:credentials", f"--input={cred_file}"], env, "import:credentials")
    files = sorted(p.name for p in workflows_dir.glob("*.json"))
    if not files:
        raise N8nError(f"no workflow JSON in {workflows_dir}")
    _run_cli(["import:workflow", "--separate", f"--input={workflows_dir}"], env, "import:workflow")
    for workflow_id in ACTIVE_WORKFLOW_IDS:
        _run_cli(["update:workflow", f"--id={workflow_id}", "--active=true"], env, "update:workflow")
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http_status(url: str, method: str = "GET", timeout: float = 2.0) -> int | None:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class N8nProcess:
    """A running `n8n start` in its own process group (so stop() also ends its task runner).

    Use as a context manager, or call start()/stop(). Output goes to `<user_folder>/n8n.log`.
    """

    user_folder: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhook/{WEBHOOK_PATH}"

    @property
    def log_path(self) -> Path:
        return Path(self.user_folder) / "n8n.log"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self, timeout: float = 90.0) -> N8nProcess:
        """Start n8n and wait until the leadflow webhook is registered (an unauthenticated POST gets 403)."""
        env = n8n_env(Path(self.user_folder), port=self.port, extra=self.env)
        started = time.monotonic()
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process in stop()
        self.process = subprocess.Popen(
            [str(n8n_binary()), "start"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._log = log
        deadline = started + timeout
        # An active webhook answers 403 to a POST without the token; before registration it answers 404.
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise N8nError(
                    f"n8n exited with {self.process.returncode} while starting:\n{self.log_tail()}"
                )
            if _http_status(self.webhook_url, "POST") == 403:
                self.startup_seconds = round(time.monotonic() - started, 1)
                return self
            time.sleep(0.5)
        self.stop()
        raise N8nError(f"n8n webhook {self.webhook_url} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def running_executions(self) -> int:
        """Executions n8n has not finished, read from its SQLite database (0 when unreadable)."""
        database = Path(self.user_folder) / ".n8n" / "database.sqlite"
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2)) as db:
                (count,) = db.execute(
                    "select count(*) from execution_entity where status in ('new', 'running', 'waiting')"
                ).fetchone()
                return int(count)
        except sqlite3.Error:
            return 0

    def wait_until_idle(self, timeout: float = 15.0) -> bool:
        """Wait until no execution runs (e.g. the report step after the answer); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.running_executions() > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def stop(self, timeout: float = 35.0) -> None:
        """Stop n8n gracefully, then make sure nothing of its process group is left.

        n8n 1.123 stops its task runner as soon as it gets SIGTERM, before waiting for running executions,
        so a Code node still running then fails ("Node execution failed" from the task-runner disconnect
        analyzer; seen with the report step that runs after the webhook answered). So: wait until no
        execution runs, SIGTERM the main process, then SIGKILL whatever is left of the process group.
        """
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                self.wait_until_idle()
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=timeout)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # the runner or anything else left behind
            self.process.wait(timeout=5)
        finally:
            self._log.close()
            self.process = None

    def __enter__(self) -> N8nProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(user_folder: Path | None = None, port: int = 5678) -> int:
    """Run n8n in the foreground on `port` until interrupted (for `leadflow n8n start`)."""
    user_folder = Path(user_folder or default_user_folder())
    env = n8n_env(user_folder, port=port)
    print(f"n8n on http://127.0.0.1:{port} (webhook /webhook/{WEBHOOK_PATH}), data in {user_folder}")
    return subprocess.call([str(n8n_binary()), "start"], env=env)


def clear_user_folder(user_folder: Path) -> None:
    shutil.rmtree(user_folder, ignore_errors=True)
