"""Read-only SQL CRM source (PostgreSQL or DuckDB) producing the same raw tables as HubSpot."""

from ingestion.sql_crm.source import create_demo_sql_crm, crm_metadata, read_only_engine, sql_crm_source

__all__ = ["create_demo_sql_crm", "crm_metadata", "read_only_engine", "sql_crm_source"]
