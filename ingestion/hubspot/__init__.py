"""Read-only HubSpot CRM source (contacts, companies, deals) for dlt."""

from ingestion.hubspot.client import CrmWriteBlocked, HubSpotApiError, HubSpotAuthError, HubSpotClient
from ingestion.hubspot.source import hubspot_source

__all__ = ["CrmWriteBlocked", "HubSpotApiError", "HubSpotAuthError", "HubSpotClient", "hubspot_source"]
