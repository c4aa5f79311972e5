"""Shared e2e fixtures: provider stubs (one set per session) and a real n8n (one per module).

n8n reads its environment once at startup, so each module gets its own n8n: a module that needs different
settings (e.g. `LEADFLOW_DELIVERY_URL` pointing at the real intake API instead of the recording sink)
overrides the module-scoped `n8n_env` fixture. Startup is ~15 s per module; the first run also installs n8n
(~3 minutes) into `~/.cache/leadflow/n8n`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.n8n_server import N8nServer
from tests.support.provider_stubs import ProviderStubs

N8N_TOKEN = "e2e-webhook-token"
N8N_MAX_ATTEMPTS = 3  # provider attempts per route inside n8n (LEADFLOW_PROVIDER_MAX_ATTEMPTS)


@pytest.fixture(scope="session")
def stubs() -> Iterator[ProviderStubs]:
    with ProviderStubs() as started:
        yield started


@pytest.fixture(scope="module")
def n8n_env(stubs: ProviderStubs) -> dict[str, str]:
    """The environment n8n starts with; override in a module to point it elsewhere."""
    return {
        **stubs.env(),
        "LEADFLOW_PROVIDER_MAX_ATTEMPTS": str(N8N_MAX_ATTEMPTS),
        "LEADFLOW_PROVIDER_BACKOFF_MS": "20",  # keep retries fast; the production default is 500 ms
        "LEADFLOW_PROVIDER_MAX_WAIT_MS": "200",
    }


@pytest.fixture(scope="module")
def n8n(n8n_env: dict[str, str]) -> Iterator[N8nServer]:
    with N8nServer(env=n8n_env, webhook_token=N8N_TOKEN) as server:
        yield server
