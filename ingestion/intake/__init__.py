"""Intake API (webhooks, event batches, Lead Tracker) writing to the landing zone: see README.md here."""

from ingestion.intake.app import create_app, serve
from ingestion.intake.config import IntakeConfig

__all__ = ["IntakeConfig", "create_app", "serve"]
