"""Threads for the simulator: an ASGI app (the simulator, the API) served by uvicorn on a
background thread, an in-process sync transport to an ASGI app, and a function repeated on a
thread (the real-time simulator's firing loop). For the demo and tests; nothing starts at
import."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import uvicorn

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
    """A *synchronous* httpx transport that calls an ASGI app in-process, on the calling
    thread: no socket, no HTTP parsing, no hand-over to a server's thread.

    ``httpx.ASGITransport`` is async-only, and ``starlette.testclient.TestClient`` is moving off
    httpx (Starlette 1.x warns "install httpx2"), so connectors, which take a sync
    ``httpx.Client``, get this instead. Each thread runs the app on an event loop of its own,
    kept between requests. A request made from inside a running loop (a handler calling out
    through this transport, as a far side fetching our media does) cannot run another loop on
    that thread: it is answered on a helper thread while its caller waits, as it would wait
    for a server. Thread-safe: threads share only the app, as a server's connections do.
    :meth:`close` closes the loops (so does the garbage collector, for a client dropped open).

    Measured against uvicorn on a socket (sync client, 4 threads, a small JSON endpoint):
    0.21 against 0.63 ms of CPU a request for an ``async def`` endpoint, 0.64 against 0.72 ms
    for a plain ``def`` one (which FastAPI still hands to a worker thread).

    ``raise_app_exceptions``: an exception the app raises reaches the caller (tests, as
    ``httpx.ASGITransport``); False answers it as a server does, with what the app sent
    before raising (its error middleware's 500) or a bare 500.
    """

    def __init__(self, app: Any, *, raise_app_exceptions: bool = True) -> None:
        self.app = app
        self.raise_app_exceptions = raise_app_exceptions
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._helpers: ThreadPoolExecutor | None = None
        # a client dropped without close() (a test's) must not leave its loops' sockets open
        weakref.finalize(self, _close_loops, self._loops)

    def _loop(self) -> asyncio.AbstractEventLoop:
        """This thread's loop, made on its first request."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._local.loop = asyncio.new_event_loop()
            with self._lock:
                self._loops.append(loop)
        return loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the common case: no loop runs on this thread
            return self._exchange(request)
        with self._lock:  # called from a handler: its loop runs here
            if self._helpers is None:
                self._helpers = ThreadPoolExecutor(4, thread_name_prefix="asgi-nested")
            helpers = self._helpers
        return helpers.submit(self._exchange, request).result()

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        url = request.url
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": url.scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?", 1)[0],
            "query_string": url.query,
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": ("127.0.0.1", 123),
            "server": (url.host, url.port or (443 if url.scheme == "https" else 80)),
        }
        delivered = False
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect: the app ends the exchange
            return {"type": "http.disconnect"}  # pragma: no cover - never reached

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            self._loop().run_until_complete(self.app(scope, receive, send))
        except Exception:
            if self.raise_app_exceptions:
                raise
            if status is None:
                status, headers, chunks = 500, [], [b"Internal Server Error"]
        if status is None:
            raise RuntimeError("the ASGI app returned without sending a response")
        return httpx.Response(status, headers=headers, content=b"".join(chunks), request=request)

    def close(self) -> None:
        with self._lock:
            helpers, self._helpers = self._helpers, None
        if helpers is not None:
            helpers.shutdown(wait=True)
        _close_loops(self._loops)


def _close_loops(loops: list[asyncio.AbstractEventLoop]) -> None:
    """Close the loops not running now, and forget them."""
    for loop in list(loops):
        if not loop.is_running():
            loop.close()
            loops.remove(loop)


def asgi_client(app: Any, base_url: str = "http://testserver") -> httpx.Client:
    """A sync ``httpx.Client`` talking to ``app`` in-process (tests): :class:`InProcessASGITransport`.

    Close it (or use it as a context manager) to close its event loops.
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
