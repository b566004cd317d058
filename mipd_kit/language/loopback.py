"""A small OpenAI-compatible chat-completions server on loopback, for tests and benchmarks of the HTTP backend.

``LoopbackServer(responder)`` serves ``POST /v1/chat/completions`` on ``127.0.0.1`` (a free port) from a
``ThreadingHTTPServer`` in a background thread. ``responder(body) -> str`` makes the reply text from the request
body (tests route generator and judge prompts to canned replies). Faults are scripted: ``faults`` is a FIFO of
actions consumed one per request (``"429"`` with ``Retry-After``, ``"500"``, ``"503"``, ``"malformed"`` (not
JSON), ``"nochoices"`` (JSON without ``choices``), ``"empty"`` (empty content), ``"close"`` (drop the
connection), ``("delay", seconds)``); ``delay_s`` delays every request; ``api_key`` makes it answer 401 to any
other bearer token. ``stats`` records requests, the maximum number in flight at once, and bodies received.
``GET /v1/models`` lists ``models`` (not counted as a request).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Optional

Responder = Callable[[dict[str, Any]], str]


def echo_responder(body: dict[str, Any]) -> str:
    """Reply with the length of the last user message (a trivial default)."""
    msgs = body.get("messages", [])
    last = msgs[-1]["content"] if msgs else ""
    return f"received {len(last) if isinstance(last, str) else len(json.dumps(last))} characters"


class LoopbackServer:
    """See module docstring. Use as a context manager; ``base_url`` ends with ``/v1``."""

    def __init__(self, responder: Responder = echo_responder, *, delay_s: float = 0.0,
                 faults: Iterable[Any] = (), api_key: Optional[str] = None, retry_after: str = "0",
                 models: Iterable[str] = ("loopback",)) -> None:
        self.responder = responder
        self.models = list(models)
        self.delay_s = delay_s
        self.faults: deque = deque(faults)
        self.api_key = api_key
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.stats: dict[str, Any] = {"requests": 0, "in_flight": 0, "max_in_flight": 0, "bodies": [], "faults": 0}
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _done(self) -> None:
                # a request stops counting as in flight before its reply is written: the client may send its
                # next request as soon as it has read the reply, before this thread returns
                if getattr(self, "_in_flight", False):
                    self._in_flight = False
                    with server.lock:
                        server.stats["in_flight"] -= 1

            def _send(self, code: int, payload: bytes, headers: Optional[dict[str, str]] = None) -> None:
                self._done()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/v1/models":
                    self._send(404, b'{"error": "not found"}')
                elif server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, b'{"error": {"message": "invalid api key"}}')
                else:
                    self._send(200, json.dumps({"object": "list", "data": [
                        {"id": m, "object": "model", "owned_by": "loopback"} for m in server.models]}).encode())

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                with server.lock:
                    server.stats["requests"] += 1
                    server.stats["in_flight"] += 1
                    server.stats["max_in_flight"] = max(server.stats["max_in_flight"], server.stats["in_flight"])
                    fault = server.faults.popleft() if server.faults else None
                self._in_flight = True
                try:
                    server._handle(self, raw, fault)
                finally:
                    self._done()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "LoopbackServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------- behaviour
    def _handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: Any) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if fault is not None:
            with self.lock:
                self.stats["faults"] += 1
        if isinstance(fault, tuple) and fault[0] == "delay":
            time.sleep(float(fault[1]))
            fault = None
        if h.path.rstrip("/") != "/v1/chat/completions":
            h._send(404, b'{"error": "not found"}')
            return
        if self.api_key is not None and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            h._send(401, b'{"error": {"message": "invalid api key"}}')
            return
        if fault in ("429",):
            h._send(429, b'{"error": "rate limited"}', {"Retry-After": self.retry_after})
            return
        if fault in ("500", "503"):
            h._send(int(fault), b'{"error": "server error"}')
            return
        if fault == "close":
            h._done()
            h.close_connection = True
            h.wfile.flush()
            h.connection.shutdown(2)
            return
        if fault == "malformed":
            h._send(200, b"<html>this is not json")
            return
        if fault == "nochoices":
            h._send(200, b'{"object": "chat.completion", "choices": []}')
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            h._send(400, b'{"error": "bad json"}')
            return
        with self.lock:
            self.stats["bodies"].append(body)
        text = "" if fault == "empty" else self.responder(body)
        payload = {"id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()),
                   "model": body.get("model", ""),
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": 0}}
        h._send(200, json.dumps(payload).encode())


def embedded_responder(seed: int = 0, threshold: float = 7.0) -> Responder:
    """Canned LLM replies for the JRG over HTTP: judge prompts go to the embedded judge, the rest to the
    embedded generator (so the HTTP loop can be compared with the in-process one)."""
    from mipd_kit.language.embedded import EmbeddedGenerator, EmbeddedJudge

    gen, judge = EmbeddedGenerator(seed=seed), EmbeddedJudge(seed=seed, threshold=threshold)

    def respond(body: dict[str, Any]) -> str:
        msgs = body.get("messages", [])
        text = "\n".join(m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
                         for m in msgs)
        return (judge if "Task: judge rationale" in text else gen)(msgs).text

    return respond
