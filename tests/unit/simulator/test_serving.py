"""The in-process transport (simulator/serving.py): an ASGI app answered on the calling
thread as a server on a socket answers it — the same requests and answers, errors included,
from many threads at once and from inside another app's handler."""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from simulator.serving import InProcessASGITransport, run_in_thread


def _app(relay: dict[str, httpx.Client] | None = None) -> FastAPI:
    app = FastAPI()

    @app.post("/echo/{name}")
    async def echo(name: str, request: Request) -> dict[str, object]:
        return {
            "name": name,
            "query": dict(request.query_params),
            "header": request.headers.get("x-test"),
            "body": (await request.body()).decode(),
            "thread": threading.get_ident(),
        }

    @app.get("/sync")
    def plain() -> dict[str, int]:  # a plain def: FastAPI runs it on a worker thread
        return {"thread": threading.get_ident()}

    @app.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"one ", b"two ", b"three"]), media_type="text/plain")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the handler failed")

    @app.get("/missing")
    async def missing() -> PlainTextResponse:
        return PlainTextResponse("no such thing", status_code=404, headers={"x-why": "gone"})

    @app.get("/relay")
    async def relayed() -> dict[str, object]:  # calls out, as a far side fetching media does
        assert relay is not None
        inner = relay["client"].post("/echo/inner?deep=1", content=b"from a handler")
        return {"inner": inner.json()["body"], "thread": threading.get_ident()}

    return app


def _client(app: FastAPI, **kw: bool) -> httpx.Client:
    return httpx.Client(
        transport=InProcessASGITransport(app, **kw), base_url="http://sim.test:8080"
    )


def test_a_request_is_answered_on_the_calling_thread_as_over_a_socket() -> None:
    """Path, query, headers and body reach the app; status, headers and body come back the
    same as from uvicorn on a socket; an async handler runs on the caller's thread."""
    app = _app()
    url, stop = run_in_thread(app)
    try:
        with httpx.Client(base_url=url) as wire, _client(app) as local:
            for client in (wire, local):
                r = client.post(
                    "/echo/a%20b?x=1&y=two", content=b"payload", headers={"X-Test": "yes"}
                )
                assert r.status_code == 200
                body = r.json()
                assert (body["name"], body["query"], body["header"], body["body"]) == (
                    "a b",
                    {"x": "1", "y": "two"},
                    "yes",
                    "payload",
                )
                missing = client.get("/missing")
                assert (missing.status_code, missing.text) == (404, "no such thing")
                assert missing.headers["x-why"] == "gone"
                assert client.get("/stream").text == "one two three"
            assert local.post("/echo/me").json()["thread"] == threading.get_ident()
            assert wire.post("/echo/me").json()["thread"] != threading.get_ident()
            assert local.get("/sync").status_code == 200  # the worker thread's answer
    finally:
        stop()


def test_an_app_error_is_raised_to_tests_and_answered_500_as_a_server_does() -> None:
    with _client(_app()) as client, pytest.raises(RuntimeError, match="the handler failed"):
        client.get("/boom")
    with _client(_app(), raise_app_exceptions=False) as client:
        r = client.get("/boom")
        assert r.status_code == 500
        assert client.get("/missing").status_code == 404  # the next request is served


def test_a_request_made_from_inside_a_handler_is_answered_too() -> None:
    """The caller's loop is busy: the inner request is answered on a helper thread."""
    relay: dict[str, httpx.Client] = {}
    app = _app(relay)
    with _client(app) as client:
        relay["client"] = client
        r = client.get("/relay")
        assert r.json() == {"inner": "from a handler", "thread": threading.get_ident()}
        assert client.get("/relay").status_code == 200  # again, on the same loops


def test_many_threads_at_once_each_get_their_own_answers() -> None:
    app = _app()
    with _client(app) as client:

        def ask(k: int) -> tuple[str, str]:
            r = client.post(f"/echo/n{k}?k={k}", content=str(k).encode())
            return r.json()["name"], r.json()["body"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(400)))
    assert answers == [(f"n{k}", str(k)) for k in range(400)]


def test_closing_the_client_closes_the_loops() -> None:
    relay: dict[str, httpx.Client] = {}
    transport = InProcessASGITransport(_app(relay))
    client = relay["client"] = httpx.Client(transport=transport, base_url="http://sim.test")
    assert client.get("/relay").status_code == 200  # this thread's loop and a helper's
    loops = list(transport._loops)
    assert len(loops) == 2 and not any(loop.is_closed() for loop in loops)
    client.close()
    assert all(loop.is_closed() for loop in loops)


def test_a_transport_dropped_unclosed_closes_its_loops() -> None:
    """Tests drop clients without closing them: their loops' sockets must not be left open
    (a ResourceWarning each, which pytest reports as an error)."""
    transport = InProcessASGITransport(_app())
    assert httpx.Client(transport=transport).get("http://x/missing").status_code == 404
    loops = list(transport._loops)
    del transport
    gc.collect()
    assert loops and all(loop.is_closed() for loop in loops)
