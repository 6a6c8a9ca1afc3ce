"""Threads for the simulator: an ASGI app (the simulator, the API) served by uvicorn on a
background thread, an in-process sync transport to an ASGI app, and a function repeated on a
thread (the real-time simulator's firing loop). For the demo and tests; nothing starts at
import."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from anyio.from_thread import BlockingPortal, start_blocking_portal

__all__ = [
    "InProcessASGITransport",
    "asgi_client",
    "free_port",
    "repeat_in_thread",
    "run_in_thread",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now, for a server started next (simulator, API)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 10.0
) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` on ``host:port`` (``port=0``: a free port) in a daemon thread.

    Returns ``(base_url, stop)`` once the server accepts connections; ``stop()`` shuts it down
    and waits for the thread. ``startup_timeout`` is in seconds.
    """
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; with proto 0 every keep-alive response stalls ~40 ms
    # (Nagle + delayed ACK), measured 44 ms → 1 ms per request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"uvicorn did not start on {host}:{bound_port}")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()

    return f"http://{host}:{bound_port}", stop


class InProcessASGITransport(httpx.BaseTransport):
    """A *synchronous* httpx transport that calls an ASGI app in-process.

    ``httpx.ASGITransport`` is async-only, and ``starlette.testclient.TestClient`` is moving off
    httpx (Starlette 1.x warns "install httpx2"), so connectors, which take a sync
    ``httpx.Client``, get this instead: the app runs on an event loop in one helper thread (an
    anyio blocking portal, started on first use, stopped by ``close()``). Thread-safe.
    """

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._lock = threading.Lock()
        self._portal_cm: Any = None
        self._portal: BlockingPortal | None = None

    def _get_portal(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                self._portal_cm = start_blocking_portal()
                self._portal = self._portal_cm.__enter__()
            return self._portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def exchange() -> tuple[int, httpx.Headers, bytes]:
            inner_request = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._inner.handle_async_request(inner_request)
            content = await response.aread()
            return response.status_code, response.headers, content

        status, headers, content = self._get_portal().call(exchange)
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        with self._lock:
            if self._portal_cm is not None:
                self._portal_cm.__exit__(None, None, None)
            self._portal_cm = self._portal = None


def asgi_client(app: Any, base_url: str = "http://testserver") -> httpx.Client:
    """A sync ``httpx.Client`` talking to ``app`` in-process (tests, time-compressed runs).

    Close it (or use it as a context manager) to stop its event-loop thread.
    """
    return httpx.Client(transport=InProcessASGITransport(app), base_url=base_url)


def repeat_in_thread(
    fn: Callable[[], object], interval_s: float, *, name: str
) -> Callable[[], None]:
    """Call ``fn`` now and then every ``interval_s`` seconds (wall time) on a daemon thread named
    ``name``. Returns ``stop()``, which ends the loop and waits for the thread (up to 10 s).
    ``fn`` should not raise: an exception ends the loop."""
    stopping = threading.Event()

    def loop() -> None:
        while not stopping.is_set():
            fn()
            stopping.wait(interval_s)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=10)

    return stop
