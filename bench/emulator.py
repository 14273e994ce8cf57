"""Benchmark: how many `GET /workflow_runs/{id}` per second one emulator process serves.

    .venv/bin/python bench/emulator.py [--duration 10] [--connections 32] [--runs 200] [--min-rps 1000]

Starts the emulator (`emulator.server.serve`, one uvicorn process) on a free loopback port,
creates runs, then drives polls from a separate load process (asyncio, raw keep-alive HTTP/1.1
connections, so the client is not the bottleneck), prints the figures and stops the server.
Exits 1 when the rate is below --min-rps or any poll failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
HEADERS = {"Authorization": "Bearer bench", "x-extend-api-version": "2026-02-09"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(port: int, profile: str) -> subprocess.Popen[bytes]:
    code = (
        "from extendq.emulator.server import serve; "
        f"serve(host='127.0.0.1', port={port}, profile={profile!r}, webhook_url=None, webhook_secret=None, api_keys=[])"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.DEVNULL)


def _wait_ready(url: str, server: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"emulator exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/_emulator/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("emulator did not start")


def _create_runs(url: str, count: int) -> list[str]:
    body = {"workflow": {"id": "workflow_invoice"}, "file": {"text": "Acme\nInvoice #: 1\nTotal: $10.00"}}
    with httpx.Client(base_url=url, headers=HEADERS) as client:
        return [client.post("/workflow_runs", json=body).json()["id"] for _ in range(count)]


async def _poller(
    host: str, port: int, paths: list[str], start: float, end: float, out: dict[str, list[float]]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head_tpl = (
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer bench\r\nx-extend-api-version: 2026-02-09\r\n\r\n"
    )
    try:
        while (now := time.perf_counter()) < end:
            writer.write(head_tpl.format(random.choice(paths), host, port).encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            if now >= start:
                out["ok" if head[9:12] == b"200" else "bad"].append(time.perf_counter() - now)
    finally:
        writer.close()


async def _load(
    host: str, port: int, paths: list[str], connections: int, warmup_s: float, duration_s: float
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ok": [], "bad": []}
    start = time.perf_counter() + warmup_s
    end = start + duration_s
    await asyncio.gather(*(_poller(host, port, paths, start, end, out) for _ in range(connections)))
    return out


def load_main(args: argparse.Namespace) -> None:
    """The load process: polls for the given duration and prints a JSON summary."""
    paths = [f"/workflow_runs/{run_id}" for run_id in json.loads(sys.stdin.read())]
    out = asyncio.run(_load(args.host, args.port, paths, args.connections, args.warmup, args.duration))
    latencies = sorted(out["ok"])

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    summary = {"ok": len(latencies), "bad": len(out["bad"]), "p50_ms": pct(0.5), "p99_ms": pct(0.99)}
    print(json.dumps(summary))


def bench_main(args: argparse.Namespace) -> int:
    """Start the server, create runs, run the load process, print the figures."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(port, args.profile)
    try:
        _wait_ready(url, server)
        run_ids = _create_runs(url, args.runs)
        cmd = [sys.executable, __file__, "--load", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--connections", str(args.connections), "--duration", str(args.duration), "--warmup", str(args.warmup)]
        result = subprocess.run(cmd, input=json.dumps(run_ids), capture_output=True, text=True, check=True)
        summary = json.loads(result.stdout)
        stats = httpx.get(f"{url}/_emulator/stats", timeout=10).json()
    finally:
        server.terminate()
        server.wait(timeout=10)
    rate = summary["ok"] / args.duration
    print(f"emulator bench: GET /workflow_runs/{{id}} on one uvicorn process, {os.cpu_count()} cores")
    print(f"  connections={args.connections} duration={args.duration}s runs={args.runs} profile={args.profile}")
    print(f"  served {summary['ok']} polls ({summary['bad']} not 200) -> {rate:,.0f} requests/s")
    print(f"  latency p50={summary['p50_ms']:.2f} ms p99={summary['p99_ms']:.2f} ms")
    print(f"  emulator counted {stats['requests'].get('GET /workflow_runs/{id}', {})} for the route")
    ok = rate >= args.min_rps and summary["bad"] == 0
    print(f"  {'PASS' if ok else 'FAIL'}: target >= {args.min_rps:,} requests/s")
    return 0 if ok else 1


def main() -> None:
    """Parse options; `--load` runs the load-generating side."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=200, help="runs created and polled at random")
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--min-rps", type=int, default=1000)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args)
    else:
        sys.exit(bench_main(args))


if __name__ == "__main__":
    main()
