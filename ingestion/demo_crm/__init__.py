"""Synthetic HubSpot-compatible demo CRM: data generator, demo product events and HTTP server."""

from ingestion.demo_crm.generator import (
    DemoCrm,
    anchor_for_seed,
    demo_events,
    generate_crm,
    write_demo_events,
)
from ingestion.demo_crm.server import DemoCrmServer, is_read_request, main, run_demo_crm

__all__ = [
    "DemoCrm",
    "DemoCrmServer",
    "anchor_for_seed",
    "demo_events",
    "generate_crm",
    "is_read_request",
    "main",
    "run_demo_crm",
    "write_demo_events",
]
