"""A fault-injecting HTTP proxy for tests: on loopback, in front of a real OpenAI-compatible server.

The test scripts faults per request: a request whose body contains a rule's marker gets the rule's
faults on its successive attempts, in order, then the rule's `then` for every later attempt. Every
request the proxy answers is logged with the fault it got, so a test can count attempts per marker.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx

#: pass: forwarded untouched. 429: refused with Retry-After. 500: a server error. hang: no answer until
#: well past the client's timeout. cut: forwarded, then the connection closed halfway through the
#: answer. invalid_json: forwarded, then half the answer sent as a whole one (HTTP 200, not JSON).
#: strip_logprobs: forwarded, every choice's logprobs removed.
Fault = Literal["pass", "429", "500", "hang", "cut", "invalid_json", "strip_logprobs"]
#: Faults the proxy answers by itself; the others reach the server.
_NOT_FORWARDED = {"429", "500", "hang"}


@dataclass
class _Rule:
    marker: str
    faults: list[Fault]
    then: Fault


@dataclass(frozen=True)
class Event:
    """One request the proxy answered: the rule's marker (None: no rule matched), its fault, when."""

    marker: str | None
    fault: Fault
    at: float


@dataclass
class FaultProxy:
    """Forwards to `upstream` (a base URL ending in /v1) except where a scripted fault says otherwise."""

    upstream: str
    #: seconds the 429 answers ask the client to wait (their Retry-After header)
    retry_after_s: float = 0.5
    #: how long a hung request stays unanswered; longer than the client's timeout
    hang_s: float = 10.0
    url: str = ""
    events: list[Event] = field(default_factory=list)
    #: errors inside the proxy itself (tests assert there are none)
    errors: list[str] = field(default_factory=list)
    _rules: list[_Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)

    def script(self, marker: str, *faults: Fault, then: Fault = "pass") -> None:
        """Requests whose body contains `marker` get `faults` on their first attempts, then `then`."""
        with self._lock:
            self._rules.append(_Rule(marker, list(faults), then))

    def heal(self) -> None:
        """From now on every request passes; the log starts afresh (markers still name requests)."""
        with self._lock:
            for rule in self._rules:
                rule.faults, rule.then = [], "pass"
            self.events.clear()

    def attempts(self, marker: str) -> list[Fault]:
        """The faults that requests carrying `marker` got, in the order they came."""
        return [e.fault for e in self.events if e.marker == marker]

    def counts(self) -> Counter[Fault]:
        """How many requests got each fault."""
        return Counter(e.fault for e in self.events)

    def _next_fault(self, body: bytes) -> tuple[str | None, Fault]:
        text = body.decode("utf-8", "replace")
        with self._lock:
            rule = next((r for r in self._rules if r.marker in text), None)
            fault: Fault = "pass" if rule is None else (rule.faults.pop(0) if rule.faults else rule.then)
            marker = None if rule is None else rule.marker
            self.events.append(Event(marker, fault, time.monotonic()))
        return marker, fault


@contextmanager
def running_fault_proxy(upstream: str, **settings: float) -> Iterator[FaultProxy]:
    """A FaultProxy listening on a free loopback port; its `url` replaces `upstream` for the client."""
    proxy = FaultProxy(upstream.rstrip("/"), **settings)
    client = httpx.Client(timeout=300)
    handler = type("Handler", (_Handler,), {"proxy": proxy, "client": client})
    server = _Server(("127.0.0.1", 0), handler)
    server.proxy = proxy
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy._closing.set()  # hung handlers return at once
        server.shutdown()
        server.server_close()
        client.close()


class _Server(ThreadingHTTPServer):
    proxy: FaultProxy

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return  # the client gave up first (its timeout): nothing to answer
        self.proxy.errors.append(repr(error))  # a bug in the proxy: the test should see it


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    client: httpx.Client

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: pytest shows the test's own output

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _, fault = self.proxy._next_fault(body)
        if fault == "429":
            self._send(
                429, _error("rate limited (fault proxy)"), {"Retry-After": f"{self.proxy.retry_after_s:g}"}
            )
            return
        if fault == "500":
            self._send(500, _error("internal error (fault proxy)"))
            return
        if fault == "hang":
            self.proxy._closing.wait(self.proxy.hang_s)
            self.close_connection = True
            return
        upstream = self.client.request(
            self.command,
            self.proxy.upstream + self.path.removeprefix("/v1"),
            content=body or None,
            headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")},
        )
        content = upstream.content
        if fault == "strip_logprobs":
            data = json.loads(content)
            for choice in data.get("choices") or []:
                choice.pop("logprobs", None)
            content = json.dumps(data).encode()
        elif fault == "invalid_json":
            content = content[: len(content) // 2]
        if fault == "cut":
            # Announce the whole answer, send half of it, hang up.
            self.send_response(upstream.status_code)
            self.send_header("Content-Type", upstream.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content[: len(content) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(upstream.status_code, content, {"Content-Type": upstream.headers.get("content-type", "")})

    def _send(self, status: int, content: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            if value:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message}}).encode()
