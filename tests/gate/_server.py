"""A real uvicorn on a free loopback port, for the gate's HTTP tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import anyio
import uvicorn
from starlette.types import ASGIApp


@asynccontextmanager
async def serving(
    app: ASGIApp, *, lifespan: Literal["auto", "on", "off"] = "off"
) -> AsyncIterator[str]:
    """Run ``app`` on a real uvicorn bound to a free loopback port; yield its base URL."""
    config = uvicorn.Config(
        app, lifespan=lifespan, log_level="warning", access_log=False, ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            for _ in range(1000):  # readiness, not timing: give up after ~10 s
                if server.started:
                    break
                await anyio.sleep(0.01)
            assert server.started, "uvicorn did not start"
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
