"""Freshness: a signed webhook event POSTed to the intake → its message payload at the webhook sink (issue 8).

    python -m bench.freshness_bench --size S        # prints the result dict as JSON

The product as it runs: the intake API (`leadflow serve`) with signing keys, the Dagster daemon
(`dagster-daemon run -m orchestration.definitions`) whose landing-zone sensor starts the pipeline job when a
file lands, and the bench sink as `N8N_WEBHOOK_URL`. The warehouse is first built once (untimed, reported)
by `leadflow run` on the bench workload of the size (bench/workload.py: a SQL CRM and product events).

The event: Meta's signed WhatsApp webhook (`X-Hub-Signature-256`) with a `START` message from a lead whose
nurture message is held because no route is usable and the route it would take, WhatsApp, lacks an opt-in
(fct_message_exclusions: scope `message`, channel `whatsapp`, reason `whatsapp_no_opt_in`), whose number
is its own (`address_status = 'ok'`), whose local time is outside quiet hours and who has no message yet
(so no contact cap). The opt-in makes WhatsApp usable, the next build puts the message in
send_list_messages, and activation hands it to the sink. Product events and SendGrid events do not do it:
product events arrive with a bearer token, not a signature, and no SendGrid event creates a message.

Each sample is timed from the POST to the sink's arrival time of a batch carrying the lead's message, and
split with the Dagster run's own records: landing (intake answer), sensor pick-up (landed → run created),
launch (created → started), each step of the run, and what the run still did after the payload left.
Peak memory is the daemon's process tree (daemon, code server, run worker, dbt) during the sample.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import Measurement, measure

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
APP_SECRET = "bench-meta-app-secret"
VERIFY_TOKEN = "bench-verify-token"
INTAKE_TOKEN = "bench-intake-token"
WEBHOOK_TOKEN = "bench-token"
TARGET_SECONDS = 20.0
QUIET_START, QUIET_END = 21, 8  # dbt vars activation_quiet_hours_start_hour / _end_hour
SAMPLE_TIMEOUT = 1800.0  # seconds one event may take to reach the sink before the sample counts as lost


# ---------------------------------------------------------------------------------------------- processes


def _env(home: Path, crm_url: str, sink_url: str) -> dict[str, str]:
    """The environment of every leadflow process of the bench: only the bench's settings, nothing inherited."""
    prefixes = ("LEADFLOW_", "N8N_", "HUBSPOT_", "DAGSTER_", "DBT_", "CRM_", "SENDGRID_", "WHATSAPP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        LEADFLOW_HOME=str(home),
        LEADFLOW_CRM="sql",
        CRM_DATABASE_URL=crm_url,
        N8N_WEBHOOK_URL=sink_url,
        N8N_WEBHOOK_TOKEN=WEBHOOK_TOKEN,
        DAGSTER_HOME=str(home / "dagster"),
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        LEADFLOW_INTAKE_TOKEN=INTAKE_TOKEN,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        DO_NOT_TRACK="1",
        PYTHONPATH=str(REPO),
    )
    return env


def _leadflow_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run `leadflow ARGS` to completion (inside a measured child, so its process tree is measured)."""
    result = subprocess.run([str(BIN / "leadflow"), *args], env=env, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"leadflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return {"stdout_tail": result.stdout[-1500:]}


class Background:
    """A long-running process of the bench in its own process group, stopped by its group id."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path):
        self.command, self.env, self.log = command, env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> Background:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _wait_http(url: str, timeout: float, process: Background) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.command[0]} exited:\n{process.tail()}")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except urllib.error.HTTPError:
            return  # it answers (e.g. /health 503 while the warehouse is busy)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{process.tail()}")


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


# ---------------------------------------------------------------------------------------------- warehouse


def find_candidates(warehouse_path: str, count: int) -> list[dict[str, Any]]:
    """Leads whose message waits only for a WhatsApp opt-in, in daytime now, never messaged (no cap hit)."""
    from zoneinfo import ZoneInfo

    import duckdb

    connection = duckdb.connect(warehouse_path, read_only=True)
    try:
        rows = connection.execute(
            """
            with held as (
                -- message-level: no route usable, and the route it would take is WhatsApp, held for opt-in
                select lead_id, product_id, workflow, step, idempotency_key
                from analytics.fct_message_exclusions
                where exclusion_scope = 'message' and channel = 'whatsapp' and reason = 'whatsapp_no_opt_in'
            ),
            numbers as (
                select lead_id, recipient
                from analytics.int_lead_addresses_resolved
                where channel = 'whatsapp' and address_status = 'ok'
            ),
            messaged as (
                select distinct lead_id from leadflow_activation.delivery_ledger
            )
            select held.lead_id, held.product_id, held.workflow, held.step, held.idempotency_key,
                numbers.recipient, zones.time_zone
            from held
            inner join numbers on held.lead_id = numbers.lead_id
            inner join analytics.int_lead_time_zones_resolved as zones on held.lead_id = zones.lead_id
            where held.lead_id not in (select lead_id from messaged)
            order by held.idempotency_key
            """
        ).fetchall()
    finally:
        connection.close()
    now = datetime.now(UTC)
    chosen, seen = [], set()
    for lead_id, product_id, workflow, step, key, recipient, time_zone in rows:
        try:
            local_hour = now.astimezone(ZoneInfo(time_zone or "UTC")).hour
        except (KeyError, ValueError):
            continue
        # an hour of margin before quiet hours begin: a slow sample must not end in the quiet window
        if not QUIET_END <= local_hour < QUIET_START - 1 or lead_id in seen:
            continue
        seen.add(lead_id)
        chosen.append(
            {
                "lead_id": lead_id,
                "product_id": product_id,
                "workflow": workflow,
                "step": step,
                "idempotency_key": key,
                "phone": recipient,
                "time_zone": time_zone,
                "local_hour": local_hour,
            }
        )
        if len(chosen) == count:
            break
    return chosen


def dagster_runs(dagster_home: str, since: float) -> list[dict[str, Any]]:
    """Runs created after `since` (epoch s), oldest first, with run and step timings (in a throwaway child)."""
    os.environ["DAGSTER_HOME"] = dagster_home
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        runs = []
        for record in instance.get_run_records(limit=20):
            created = record.create_timestamp.timestamp()
            if created < since:
                continue
            run = record.dagster_run
            stats = instance.get_run_stats(run.run_id)
            steps = [
                {"step": s.step_key, "start": s.start_time, "end": s.end_time, "status": str(s.status)}
                for s in instance.get_run_step_stats(run.run_id)
            ]
            runs.append(
                {
                    "run_id": run.run_id,
                    "job": run.job_name,
                    "status": run.status.value,
                    "tags": dict(run.tags),
                    "created": created,
                    "enqueued": stats.enqueued_time,
                    "launched": stats.launch_time,
                    "start": stats.start_time,
                    "end": stats.end_time,
                    "steps": sorted(steps, key=lambda s: s["start"] or 0),
                }
            )
    return sorted(runs, key=lambda r: r["created"])


FAST_PATH_SELECTIONS = {
    # every model on a path from the landed events to the send list (what any new event can change)
    "events_to_send_list": "source:events.events+,+send_list_messages",
    # the models a WhatsApp opt-in can change on its way to the send list
    "whatsapp_to_send_list": "stg_engagement__whatsapp_events+,+send_list_messages",
}


def dbt_probe(env: dict[str, str], root: str, command: str, select: str | None) -> dict[str, Any]:
    """`dbt COMMAND [--select SELECT]` on the bench warehouse, with its own target and log folders."""
    args = [str(BIN / "dbt"), command, "--project-dir", str(REPO / "dbt_project")]
    args += ["--profiles-dir", str(REPO / "dbt_project"), "--target", "duckdb"]
    args += ["--target-path", f"{root}/dbt-target", "--log-path", f"{root}/dbt-logs"]
    if select:
        args += ["--select", select]
    probe_env = {
        **env,
        "LEADFLOW_DBT_TARGET": "duckdb",
        "LEADFLOW_DUCKDB_PATH": f"{env['LEADFLOW_HOME']}/warehouse.duckdb",
    }
    result = subprocess.run(args, env=probe_env, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}")
    summary = [line for line in result.stdout.splitlines() if "Done. PASS=" in line]
    return {"summary": summary[-1].split("Done. ", 1)[1] if summary else ""}


def fast_path_probes(env: dict[str, str], root: Path) -> list[Measurement]:
    """What an event-triggered fast path would cost in dbt: the path to the send list only, vs the full build."""
    measurements = []
    measure(dbt_probe, env, str(root), "parse", None)  # a warm partial-parse cache, as the product has
    for name, select in FAST_PATH_SELECTIONS.items():
        for command in ("run", "build"):
            run = measure(dbt_probe, env, str(root), command, select)
            measurements.append(
                Measurement(
                    f"freshness.probe.dbt_{command}.{name}",
                    [round(run.seconds, 2)],
                    run.peak_rss_bytes,
                    notes=[f"dbt {command} --select '{select}': {run.value['summary']} (daemon stopped)"],
                )
            )
    run = measure(dbt_probe, env, str(root), "build", None)
    measurements.append(
        Measurement(
            "freshness.probe.dbt_build.full",
            [round(run.seconds, 2)],
            run.peak_rss_bytes,
            notes=[f"dbt build (everything, as the pipeline job runs it): {run.value['summary']}"],
        )
    )
    return measurements


def _child(fn, *args) -> Any:
    """Call fn in a throwaway forked child (keeps Dagster and DuckDB imports out of this process)."""
    return measure(fn, *args).value


# ---------------------------------------------------------------------------------------------- one sample


def whatsapp_start(phone: str, sequence: int) -> bytes:
    """Meta's webhook body for an inbound `START` text from `phone` (E.164), in Meta's compact JSON."""
    number = phone.lstrip("+")
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "bench-waba",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "bench"},
                            "contacts": [{"profile": {"name": "Bench"}, "wa_id": number}],
                            "messages": [
                                {
                                    "from": number,
                                    "id": f"wamid.bench.{sequence}.{int(time.time() * 1000)}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": "START"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def sample(
    intake_url: str, sink_base: str, candidate: dict[str, Any], sequence: int, daemon_pid: int
) -> dict[str, Any]:
    """POST the signed event, wait for the lead's message at the sink; sample the daemon tree's memory."""
    body = whatsapp_start(candidate["phone"], sequence)
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{intake_url}/webhooks/whatsapp",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )
    posted = time.time()
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    landed = time.time()
    if answer.get("accepted") != 1:
        raise RuntimeError(f"the intake did not land the event: {answer}")
    peak, deadline = 0, time.monotonic() + SAMPLE_TIMEOUT
    needle = candidate["lead_id"]
    while time.monotonic() < deadline:
        peak = max(peak, _tree_rss(daemon_pid))
        with urllib.request.urlopen(f"{sink_base}/received", timeout=30) as response:
            received = json.loads(response.read())
        for item in received:
            if needle in item["body"]:
                message = next(m for m in json.loads(item["body"])["messages"] if m.get("lead_id") == needle)
                return {
                    "posted": posted,
                    "landed": landed,
                    "arrived": item["arrived"],
                    "channel": message.get("channel"),
                    "message_type": message.get("message_type"),
                    "idempotency_key": message.get("idempotency_key"),
                    "batches_at_sink": len(received),
                    "peak_daemon_rss": peak,
                }
        time.sleep(0.25)
    raise RuntimeError(f"no payload for lead {needle} within {SAMPLE_TIMEOUT:.0f} s")


def _wait_for_log(path: Path, needle: str, process: Background, timeout: float = 300) -> None:
    """Wait until `needle` appears in the log at `path` (then give the tick a moment to finish)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"the process exited:\n{process.tail()}")
        if path.exists() and needle in path.read_text(errors="replace"):
            time.sleep(2)
            return
        time.sleep(0.5)
    raise RuntimeError(f"{needle!r} not in {path} after {timeout:.0f} s:\n{process.tail()}")


def _wait_for_runs(dagster_home: str, since: float, daemon: Background, timeout: float = 3600) -> list[dict]:
    """Wait until at least one run created after `since` exists and none is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError(f"the Dagster daemon exited:\n{daemon.tail()}")
        runs = _child(dagster_runs, dagster_home, since)
        if runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            return runs
        time.sleep(3)
    raise RuntimeError(f"runs after {since} did not finish in {timeout:.0f} s:\n{daemon.tail()}")


def _breakdown(result: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the seconds from POST to payload went, from the sample's clock and the run's records."""
    landing_runs = [r for r in runs if r["tags"].get("leadflow/trigger") == "landing"]
    run = next((r for r in landing_runs if r["created"] >= result["landed"] - 1), landing_runs[0])
    enqueued = run["enqueued"] or run["created"]
    launched = run["launched"] or enqueued
    parts: dict[str, float] = {
        "intake_landing": result["landed"] - result["posted"],
        # the sensor's minimum interval (30 s) and its tick: the run record is written at the tick
        "sensor_pickup": run["created"] - result["landed"],
        # the sensor daemon builds the run (job snapshot and plan from the code server) before it queues it
        "run_submit": enqueued - run["created"],
        "queue_to_launch": launched - enqueued,
        # the run worker process starts and loads the definitions (Dagster, dlt, the dbt manifest)
        "worker_start": (run["start"] or launched) - launched,
    }
    for step in run["steps"]:
        if step["start"] is None or step["end"] is None:
            continue
        if step["start"] >= result["arrived"]:
            break
        parts[f"step:{step['step']}"] = min(step["end"], result["arrived"]) - step["start"]
    parts["other (gaps between steps, sink)"] = result["arrived"] - result["posted"] - sum(parts.values())
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "freshness_seconds": round(result["arrived"] - result["posted"], 2),
        "parts_seconds": {k: round(v, 2) for k, v in parts.items()},
        "run_seconds_after_payload": round((run["end"] or result["arrived"]) - result["arrived"], 2),
        "later_steps": {
            s["step"]: round(s["end"] - s["start"], 2)
            for s in run["steps"]
            if s["start"] is not None and s["end"] is not None and s["start"] >= result["arrived"]
        },
        "runs_started": len(runs),
        "payload": {k: result[k] for k in ("channel", "message_type", "idempotency_key")},
    }


# ---------------------------------------------------------------------------------------------- running


def _prepare(
    size: str, root: Path, work_dir: Path, reuse: bool = False, built_home: Path | None = None
) -> tuple[Path, str, Any]:
    """The home (landing zone linked from the workload) and a private copy of the workload's SQL CRM.

    `built_home`: a LEADFLOW_HOME that `leadflow run` already built on this workload (the run group's); it is
    used where it is (moving it would change the dbt profile's DuckDB path, and dbt would re-parse the whole
    project in every run) and becomes the baseline, instead of a second `leadflow run`.
    """
    from bench.workload import DEFAULT_SEED, ensure_workload

    # generated in a throwaway child: this process stays small, since every measured child inherits its memory
    workload = _child(ensure_workload, size, DEFAULT_SEED, work_dir)
    home = root / "home"
    crm = root / "crm.duckdb"
    if reuse:
        return home, f"duckdb:///{crm}", workload
    if built_home is not None:
        shutil.copyfile(workload.crm_path, crm)
        return built_home, f"duckdb:///{crm}", workload
    landing = home / "landing"
    for source in sorted(workload.landing_dir.rglob("*.jsonl")):
        target = landing / source.relative_to(workload.landing_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    shutil.copyfile(workload.crm_path, crm)  # its own copy: DuckDB lets one process at a time open a file
    return home, f"duckdb:///{crm}", workload


def run_freshness(
    size: str, work_dir: Path, repeats: int = 3, built_home: Path | None = None
) -> dict[str, Any]:
    """Time signed webhook event → payload at the sink `repeats` times through the running product.

    `built_home`: the home of a `leadflow run` on the same workload (the run group's): the baseline.
    """
    from bench.sink import SinkProcess, free_port
    from orchestration.settings import Settings

    work_dir = Path(work_dir)
    root = work_dir / f"freshness-{size}"
    reuse = (
        bool(os.environ.get("LEADFLOW_BENCH_REUSE_BASELINE"))
        and (root / "home" / "warehouse.duckdb").exists()
    )
    adopt = not reuse and built_home is not None and (Path(built_home) / "warehouse.duckdb").exists()
    if not reuse:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    home, crm_url, workload = _prepare(size, root, work_dir, reuse, Path(built_home) if adopt else None)
    interval = Settings.from_env({}).freshness_min_interval_seconds
    notes = [
        f"workload {size}: {workload.leads:,} CRM leads, {workload.events:,} product events (bench/workload.py), "
        f"SQL CRM; DuckDB warehouse; LEADFLOW_FRESHNESS_MIN_INTERVAL_SECONDS at its default ({interval} s)",
    ]
    measurements: list[Measurement] = []
    ratios: dict[str, Any] = {}
    with SinkProcess(record=True) as sink:
        env = _env(home, crm_url, sink.url)
        if reuse:
            notes.append(
                "the warehouse of an earlier run was reused (LEADFLOW_BENCH_REUSE_BASELINE): no baseline"
            )
        elif adopt:
            notes.append(
                "baseline: the warehouse the run group's `leadflow run` built on the same workload (used in "
                "place, not rebuilt); its messages went to the file outbox"
            )
        else:
            baseline = measure(_leadflow_cli, env, "run")
            measurements.append(
                Measurement(
                    "freshness.baseline_pipeline_run",
                    [round(baseline.seconds, 2)],
                    baseline.peak_rss_bytes,
                    rows=workload.leads,
                    notes=["`leadflow run` once on the workload before the samples (setup, not a sample)"],
                )
            )
        sent_at_baseline = sink.stats()["requests"]
        warehouse = str(home / "warehouse.duckdb")
        candidates = _child(find_candidates, warehouse, repeats)
        notes.append(
            f"baseline run handed {sent_at_baseline} batches to the sink; {len(candidates)} candidate leads "
            "(held only for a WhatsApp opt-in, daytime locally, never messaged)"
        )
        if not candidates:
            notes.append("no lead qualifies for the signed opt-in event at this size now: no samples")
            return {"measurements": [m.as_dict() for m in measurements], "ratios": ratios, "notes": notes}

        intake_port = free_port()
        intake = Background(
            [str(BIN / "leadflow"), "serve", "--host", "127.0.0.1", "--port", str(intake_port)],
            env,
            root / "intake.log",
        ).start()
        daemon = Background(
            [str(BIN / "dagster-daemon"), "run", "-m", "orchestration.definitions"], env, root / "daemon.log"
        ).start()
        try:
            intake_url = f"http://127.0.0.1:{intake_port}"
            _wait_http(f"{intake_url}/health", 120, intake)
            # the sensor's first tick finds every landing file loaded by the baseline and starts nothing
            # (orchestration/definitions.py: landing_zone_sensor); wait for it, so no sample pays daemon start-up
            started = time.time()
            _wait_for_log(
                root / "daemon.log", "Checking for new runs for sensor: landing_zone_sensor", daemon
            )
            notes.append(
                f"the landing sensor's first tick came {time.time() - started:.1f} s after the daemon started"
            )
            idle = _child(dagster_runs, str(home / "dagster"), started - 5)
            if idle:
                notes.append(f"the first tick started {len(idle)} run(s) with nothing new landed")
                _wait_for_runs(str(home / "dagster"), started - 5, daemon)
            samples, runs_seconds, peak = [], [], 0
            for sequence, candidate in enumerate(candidates):
                sink.reset()
                result = measure(sample, intake_url, sink.base_url, candidate, sequence, daemon.pid)
                value = result.value
                runs = _wait_for_runs(str(home / "dagster"), value["landed"] - 1, daemon)
                samples.append(_breakdown(value, runs))
                runs_seconds.append(value["arrived"] - value["posted"])
                peak = max(peak, value["peak_daemon_rss"], result.peak_rss_bytes)
        finally:
            daemon.stop()
            intake.stop()
        probes = os.environ.get("LEADFLOW_BENCH_PROBES") or ("1" if size in ("XS", "S") else "")
        if probes == "1" and not os.environ.get("LEADFLOW_BENCH_SKIP_PROBES"):
            measurements += fast_path_probes(env, root)
        else:
            notes.append(
                "dbt fast-path probes not run (they run at XS and S, or with LEADFLOW_BENCH_PROBES=1)"
            )

    p50 = statistics.median(runs_seconds)
    measurements.append(
        Measurement(
            "freshness.webhook_to_sink",
            [round(s, 2) for s in runs_seconds],
            peak,
            rows=len(runs_seconds),
            notes=[
                "signed WhatsApp START → intake → landing sensor → pipeline run → payload at the sink; peak RSS "
                "is the Dagster daemon's process tree (daemon, code server, run worker, dbt)",
                *[json.dumps(s, sort_keys=True) for s in samples],
            ],
        )
    )
    mean_parts: dict[str, float] = {}
    for s in samples:
        for name, seconds in s["parts_seconds"].items():
            mean_parts[name] = mean_parts.get(name, 0.0) + seconds / len(samples)
    ratios["freshness_p50_seconds"] = {
        "value": round(p50, 2),
        "target": f"<= {TARGET_SECONDS:g} s (at M)",
        "holds": p50 <= TARGET_SECONDS,
        "note": "mean split: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(mean_parts.items(), key=lambda kv: -kv[1])),
    }
    ratios["freshness_peak_rss_gib"] = {
        "value": round(peak / 2**30, 3),
        "target": "<= 1 GiB",
        "holds": peak <= 2**30,
        "note": "the Dagster daemon's process tree during the samples",
    }
    return {"measurements": [m.as_dict() for m in measurements], "ratios": ratios, "notes": notes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="freshness benchmark: signed webhook event → payload at sink"
    )
    parser.add_argument("--size", choices=["XS", "S", "M", "L"], default="S")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path(".leadflow") / "bench")
    args = parser.parse_args(argv)
    result = run_freshness(args.size, args.work_dir.resolve(), args.repeats)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
