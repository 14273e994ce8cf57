"""The hand-wired webhook receiver a benchmark compares extendq against: the floor of endTime -> result.

    .venv/bin/python bench/floor.py --port 8100 --redis-url redis://127.0.0.1:6379/5 --secret wss_...

What anyone would write by hand: verify the delivery with the SDK's check, then one Redis round trip that stores
the run under its id and publishes it (`floor:result:<run id>`, the channel `bench/latency.py` listens to), then
200. No dedupe, no job lookup, no lock, no broker. `FloorProcess` serves it in a child process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
import uvicorn
from extend_ai.wrapper.webhooks import Webhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.asgi import answers_health, free_port  # noqa: E402
from tests.support.groups import stop_group  # noqa: E402

CHANNEL = "floor:result:"
_HEADERS = ("x-extend-request-timestamp", "x-extend-request-signature")


def create_app(redis_url: str, secret: str) -> Starlette:
    """The hand-wired receiver: SDK verify, one Redis write (SET + PUBLISH in one round trip), 200."""
    client = aredis.Redis.from_url(redis_url)
    verifier = Webhooks()

    async def receive(request: Request) -> JSONResponse:
        text = (await request.body()).decode()
        headers = {name: request.headers.get(name, "") for name in _HEADERS}
        if not verifier.verify(text, headers, secret, max_age_seconds=300):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        event: dict[str, Any] = json.loads(text)
        run = event.get("payload") or {}
        key, value = f"{CHANNEL}{run.get('id')}", json.dumps(run)
        pipe = client.pipeline(transaction=False)
        pipe.set(key, value, ex=3600)
        pipe.publish(key, value)
        await pipe.execute()
        return JSONResponse({"status": "ok"})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/webhooks/extend", receive, methods=["POST"]), Route("/health", health)])


class FloorProcess:
    """The hand-wired receiver served by uvicorn in a child process."""

    def __init__(self, redis_url: str, secret: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [sys.executable, __file__, "--port", str(self.port), "--redis-url", redis_url, "--secret", secret]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FloorProcess:
        self.proc = subprocess.Popen(self._args, start_new_session=True)
        if answers_health(self.url):
            return self
        self.__exit__()
        raise RuntimeError("the hand-wired receiver did not start")

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    app = create_app(args.redis_url, args.secret)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
