"""`leadflow` — the command line: run the pipeline (through Dagster, in-process), serve the demo CRM, open the UI."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestration.runs import write_last_run
from orchestration.settings import Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
SEND_LIST = "send_list_messages"  # the send-list model activation reads

DAGSTER_YAML_HEADER = "# Written by leadflow"
DAGSTER_YAML = f"""\
{DAGSTER_YAML_HEADER}: local instance for `leadflow run` and `leadflow ui` (runs are shared between them).
# Delete this header line to keep your own edits: leadflow rewrites a file that starts with it.
telemetry:
  enabled: false
# Queued runs (the sensor's and the schedules') start one at a time, as the embedded DuckDB warehouse
# allows one writer, and are picked up within a second of being queued (Dagster's default is 5 s).
run_queue:
  max_concurrent_runs: 1
  dequeue_interval_seconds: 1
"""


def _load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        print(f"leadflow: setting error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


def _prepare_environment(settings: Settings) -> None:
    """Make dbt, Dagster and dlt find their places without an activated venv or extra setup."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    settings.home.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_yaml = dagster_home / "dagster.yaml"
    if not instance_yaml.exists() or (
        instance_yaml.read_text().startswith(DAGSTER_YAML_HEADER)
        and instance_yaml.read_text() != DAGSTER_YAML
    ):
        instance_yaml.write_text(DAGSTER_YAML)
    os.environ.setdefault("DBT_LOG_PATH", str(settings.home / "dbt-logs"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    settings.export_dbt_env()


def _validate_lead_config() -> None:
    """Stop before any work when a seed or rule is wrong, naming the file, row and fix."""
    from orchestration.lead_config import validate_seeds

    issues = validate_seeds()
    if issues:
        print("leadflow: the product configuration in dbt_project/seeds is invalid:", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        raise SystemExit(2)


def _parse_dbt_project(settings: Settings) -> None:
    """Write dbt's manifest, which Dagster reads to build the asset graph (partial parse keeps it quick)."""
    _validate_lead_config()
    dbt = str(Path(sys.executable).parent / "dbt")
    command = [
        dbt,
        "parse",
        "--quiet",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    command += ["--target", settings.warehouse.dbt_target]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"leadflow: dbt parse failed (exit {result.returncode}); see the messages above")


def _execute(job_name: str, settings: Settings, run_config: dict[str, Any] | None = None):
    from dagster import DagsterInstance

    from orchestration.definitions import defs

    config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    config.update(run_config or {})
    job = defs.resolve_job_def(job_name)
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    if not result.success:
        failures = [
            f"{event.step_key}: {event.event_specific_data.error.message.strip()}"
            for event in result.all_events
            if event.is_step_failure and event.event_specific_data and event.event_specific_data.error
        ]
        print("\nleadflow: the run failed.", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        raise SystemExit(1)
    return result


def _delivery_metadata(result) -> dict[str, Any]:
    """Delivery figures summed over the run's activation assets (one per workflow)."""
    totals: dict[str, Any] = {}
    for event in result.all_events:
        if not event.is_step_materialization:
            continue
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.path[0] != "activation":
            continue
        for name, value in materialization.metadata.items():
            if isinstance(value.value, int | float) and not isinstance(value.value, bool):
                totals[name] = totals.get(name, 0) + value.value
            elif name == "destination":
                totals[name] = value.value
    return totals


def print_summary(settings: Settings, delivery: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print what the warehouse holds after a run; return the figures."""
    from activation.warehouse import connect

    figures: dict[str, Any] = {}
    queries = {
        "leads": "select count(*) from analytics.dim_leads",
        "events": "select count(*) from analytics.fct_engagement_events",
        "quarantined events": "select count(*) from raw_events.quarantine",
        "lead scores": "select count(*) from analytics.fct_lead_scores",
        "send list (send_list_messages)": "select count(*) from analytics.send_list_messages",
        "excluded candidates (fct_message_exclusions)": "select count(*) from analytics.fct_message_exclusions",
        "messages handed over, all runs": (
            "select count(*) from leadflow_activation.delivery_ledger where status = 'sent'"
        ),
    }
    with connect(settings.warehouse.url, read_only=True) as warehouse:
        for label, sql in queries.items():
            schema, table = sql.rsplit(" from ", 1)[1].split(" ")[0].split(".")
            figures[label] = warehouse.scalar(sql) if warehouse.table_exists(schema, table) else 0
        mqls = []
        if warehouse.table_exists("analytics", "fct_lead_scores"):
            mqls = warehouse.query(
                "select product_id, count(*) as leads, sum(case when is_mql then 1 else 0 end) as mqls "
                "from analytics.fct_lead_scores group by product_id order by product_id"
            )
        stages: dict[str, dict[str, int]] = {}
        if warehouse.table_exists("analytics", "fct_lead_stages"):
            for row in warehouse.query(
                "select product_id, stage, count(*) as leads from analytics.fct_lead_stages "
                "group by product_id, stage order by product_id, stage"
            ):
                stages.setdefault(row["product_id"], {})[row["stage"]] = int(row["leads"])
    figures["stages"] = stages
    print("\nleadflow summary")
    print(f"  warehouse: {settings.warehouse.redacted_url()}")
    for label, value in figures.items():
        if label != "stages":
            print(f"  {label}: {value}")
    for row in mqls:
        print(
            f"  product {row['product_id']}: {row['leads']} scored leads, {row['mqls']} scoring at or above MQL now"
        )
        by_stage = stages.get(row["product_id"], {})
        if by_stage:
            order = [
                "new",
                "engaged",
                "mql",
                "sql",
                "opportunity",
                "customer",
                "recycled",
                "dormant",
                "disqualified",
            ]
            ranked = sorted(by_stage, key=lambda stage: order.index(stage) if stage in order else len(order))
            print("    by stage: " + ", ".join(f"{stage} {by_stage[stage]}" for stage in ranked))
    if delivery:
        print(
            f"  this run: {delivery.get('sent', 0)} messages handed over, "
            f"{delivery.get('already_sent', 0)} already sent before, {delivery.get('failed', 0)} failed, "
            f"{delivery.get('quarantined', 0)} quarantined, {delivery.get('not_yet_due', 0)} due later"
        )
        print(f"  payloads went to: {delivery.get('destination')}")
    figures["delivery"] = delivery or {}
    return figures


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load_settings()
    _prepare_environment(settings)
    _parse_dbt_project(settings)
    run_config = {}
    if args.full_refresh:
        run_config = {"ops": {"dbt_models": {"config": {"full_refresh": True}}}}
    result = _execute("leadflow_pipeline", settings, run_config)
    write_last_run(settings.home, result.run_id)
    print_summary(settings, _delivery_metadata(result))
    report = _report_path(result)
    if report:
        print(f"  report: {report}")
    return 0


def _report_path(result) -> str | None:
    for event in result.all_events:
        if event.is_step_materialization:
            materialization = event.event_specific_data.materialization
            if materialization.asset_key.path == ["analytics", "report"]:
                path = materialization.metadata.get("path")
                return str(path.value) if path is not None else None
    return None


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _load_settings()
    _prepare_environment(settings)
    _parse_dbt_project(settings)
    _execute("leadflow_ingest", settings)
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    settings = _load_settings()
    _prepare_environment(settings)
    _parse_dbt_project(settings)
    run_config = {"ops": {"dbt_models": {"config": {"full_refresh": bool(args.full_refresh)}}}}
    _execute("leadflow_transform", settings, run_config)
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    settings = _load_settings()
    if args.dry_run:
        from activation.delivery import DeliveryError
        from activation.dry_run import dry_run

        try:
            report = dry_run(
                settings.warehouse.url,
                SEND_LIST,
                from_email=settings.email_from,
                unsubscribe_group_id=settings.sendgrid_unsubscribe_group_id,
            )
        except DeliveryError as error:
            print(f"leadflow: {error}", file=sys.stderr)
            return 2
        print(report.render())
        return 0
    _prepare_environment(settings)
    _parse_dbt_project(settings)
    result = _execute("leadflow_activate", settings)
    delivery = _delivery_metadata(result)
    print(
        f"\nhanded over {delivery.get('sent', 0)} messages "
        f"({delivery.get('already_sent', 0)} already sent) to {delivery.get('destination')}"
    )
    return 0


def cmd_demo_crm(args: argparse.Namespace) -> int:
    from ingestion.demo_crm.server import DemoCrmServer
    from orchestration.settings import DEMO_HUBSPOT_TOKEN

    server = DemoCrmServer(
        seed=args.seed, n_contacts=args.contacts, token=args.token or DEMO_HUBSPOT_TOKEN, port=args.port
    )
    server.start()
    print(f"demo CRM (HubSpot CRM v3 API) serving {args.contacts} contacts at {server.base_url}")
    print(f"  bearer token: {args.token or DEMO_HUBSPOT_TOKEN}   stop with Ctrl-C")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    settings = _load_settings()
    _prepare_environment(settings)
    _parse_dbt_project(settings)
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-m", "orchestration.definitions", "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI at http://{args.host}:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    return subprocess.call(command, cwd=REPO_ROOT)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load_settings()
    from ingestion.intake import IntakeConfig, serve

    try:
        config = IntakeConfig.from_settings(settings)
    except SettingsError as error:
        print(f"leadflow: setting error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    serve(args.host, args.port, config)
    return 0


def cmd_n8n(args: argparse.Namespace) -> int:
    from orchestration import n8n_tools

    if args.n8n_command == "install":
        print(n8n_tools.ensure_installed())
        return 0
    if args.n8n_command == "import":
        n8n_tools.ensure_installed()
        print("imported and activated:", ", ".join(n8n_tools.import_all()))
        print("restart n8n so the activation takes effect")
        return 0
    return n8n_tools.serve(port=args.port) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadflow",
        description=(
            "Warehouse-native lead nurturing: copy the CRM (read-only) and product events into the warehouse "
            "with dlt, score and stage leads with dbt, and hand send lists to n8n exactly once — all "
            "orchestrated by Dagster. Settings come from the environment (see README)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the whole pipeline once (ingest → transform → activate) and summarize",
        description="Run every asset once, in-process through Dagster (the run shows in "
        "`leadflow ui`), then print a summary of leads, events, scores and deliveries.",
    )
    run.add_argument(
        "--full-refresh", action="store_true", help="rebuild incremental dbt models from scratch"
    )
    run.set_defaults(func=cmd_run)

    ingest = sub.add_parser(
        "ingest",
        help="copy the CRM and landed events into the warehouse",
        description="Run the dlt assets only: CRM (read-only) and the landing zone.",
    )
    ingest.set_defaults(func=cmd_ingest)

    transform = sub.add_parser(
        "transform",
        help="dbt build of the lead model",
        description="Run `dbt build` (models, seeds, tests) through Dagster.",
    )
    transform.add_argument(
        "--full-refresh", action="store_true", help="rebuild incremental models from scratch"
    )
    transform.set_defaults(func=cmd_transform)

    activate = sub.add_parser(
        "activate",
        help="hand due messages to n8n (or the file outbox), once per key",
        description="Deliver the send lists: messages already recorded as sent in the "
        "ledger are skipped; without N8N_WEBHOOK_URL batches go to $LEADFLOW_HOME/outbox.",
    )
    activate.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be sent per product and channel, suppressions by reason, cap hits and sample "
        "payloads; send and record nothing",
    )
    activate.set_defaults(func=cmd_activate)

    demo = sub.add_parser(
        "demo-crm",
        help="serve the bundled demo CRM (a HubSpot CRM v3-compatible API)",
        description="Serve a deterministic synthetic CRM on 127.0.0.1 with HubSpot's CRM v3 "
        "shapes: paging, search, associations, bearer auth, injectable 429/5xx.",
    )
    demo.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    demo.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    demo.add_argument("--contacts", type=int, default=500, help="number of contacts (default 500)")
    demo.add_argument("--token", default=None, help="bearer token to require (default demo-token)")
    demo.set_defaults(func=cmd_demo_crm)

    serve = sub.add_parser(
        "serve",
        help="intake and Lead Tracker API: signed webhooks, events, lead endpoints",
        description="Serve the HTTP API (FastAPI on uvicorn): SendGrid/WhatsApp/chatbot webhooks with signature "
        "checks, product and delivery events, the Lead Tracker endpoints and /health. Everything received is "
        "fsynced to the landing zone before the answer. OpenAPI at /openapi.json.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.set_defaults(func=cmd_serve)

    from orchestration.lead_config import add_cli_commands as add_lead_config_commands

    add_lead_config_commands(sub)

    from orchestration import reporting

    reporting.add_cli_commands(sub)

    n8n = sub.add_parser(
        "n8n",
        help="install, import and run the bundled n8n workflows",
        description="install: n8n 1.123 and Node 22 into ~/.cache/leadflow/n8n (reused when present); "
        "import: import and activate n8n/workflows/*.json with the webhook credential from N8N_WEBHOOK_TOKEN; "
        "start: run that n8n on 127.0.0.1. See n8n/README.md to import into an existing n8n instead.",
    )
    n8n.add_argument("n8n_command", choices=["install", "import", "start"], help="what to do")
    n8n.add_argument("--port", type=int, default=5678, help="port for `start` (default 5678)")
    n8n.set_defaults(func=cmd_n8n)

    ui = sub.add_parser(
        "ui",
        help="open the Dagster UI on the same definitions",
        description="Start `dagster dev` on leadflow's definitions with the same instance as "
        "`leadflow run`, so earlier runs show up.",
    )
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    # leadflow's own progress at INFO; libraries (alembic, dagster's python loggers) only when they warn —
    # Dagster's console logger already prints the run's events once.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("leadflow").setLevel(logging.INFO)
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
