"""A minimal, fast HTTP sink for the activation and freshness benchmarks, in its own process.

One raw ASGI app on uvicorn (httptools + uvloop): it reads each POST body, counts requests and bytes,
answers 200 `{"ok": true}` (a plain 2xx: leadflow records every message of the batch as sent, drt counts the
batch as synced) and keeps nothing unless asked:

- `--capture DIR` writes each body to `DIR/<n>.json` with its headers in `DIR/<n>.headers.json`, so the raw
  floor can replay exactly the bytes leadflow sent;
- `--record` keeps (arrival time, body) in memory for `GET /received` (freshness: small payloads only).

`GET /stats` answers `{"requests", "bytes"}`, `POST /reset` zeroes the counters and the record.
The sink runs in its own process so that it never competes with the client for the client's GIL; the same
sink serves leadflow, the raw floor and drt.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

OK = b'{"ok": true}'


def make_app(capture_dir: Path | None = None, record: bool = False):
    """The ASGI app; state lives in the closure (one process, one event loop)."""
    stats = {"requests": 0, "bytes": 0}
    received: list[dict[str, Any]] = []

    async def answer(send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/stats":
            return await answer(send, 200, json.dumps(stats).encode())
        if method == "GET" and path == "/received":
            return await answer(send, 200, json.dumps(received).encode())
        if method == "POST" and path == "/reset":
            stats.update(requests=0, bytes=0)
            received.clear()
            return await answer(send, 200, OK)
        chunks = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if capture_dir is not None or record:
                chunks.append(chunk)
            if not message.get("more_body"):
                break
        arrived = time.time()
        stats["requests"] += 1
        stats["bytes"] += size
        if capture_dir is not None:
            number = stats["requests"]
            (capture_dir / f"{number:06d}.json").write_bytes(b"".join(chunks))
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            (capture_dir / f"{number:06d}.headers.json").write_text(json.dumps(headers))
        if record:
            received.append({"arrived": arrived, "path": path, "body": b"".join(chunks).decode("utf-8")})
        return await answer(send, 200, OK)

    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SinkProcess:
    """Start `python -m bench.sink` on a free port; stop it on exit."""

    def __init__(self, capture_dir: Path | None = None, record: bool = False):
        self.port = free_port()
        self.capture_dir = capture_dir
        self.record = record
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/webhook/leadflow-nurture"

    def start(self) -> SinkProcess:
        command = [sys.executable, "-m", "bench.sink", "--port", str(self.port)]
        if self.capture_dir is not None:
            command += ["--capture", str(self.capture_dir)]
        if self.record:
            command.append("--record")
        repo = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(command, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.stats()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the sink exited with code {self.process.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("the sink did not answer within 30 s")

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            self.base_url + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, int]:
        return self._call("GET", "/stats")

    def received(self) -> list[dict[str, Any]]:
        return self._call("GET", "/received")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> SinkProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--capture", type=Path)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    if args.capture is not None:
        args.capture.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        make_app(args.capture, args.record),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        timeout_keep_alive=60,
    )


if __name__ == "__main__":
    main()
