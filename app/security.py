"""What stands in front of the web app: request size limits, the login gate, login throttling.

``SecurityGate`` is plain ASGI middleware installed inside Gradio's FastAPI app:

* **Size.** A request whose ``Content-Length`` is over the limit is answered 413 before any of its
  body is read; a body without a length is counted as it streams and cut off at the limit. Uploads
  (``.../upload``) may be ``max_upload_bytes`` (plus multipart framing), everything else
  ``max_request_bytes``.
* **Login.** With auth on, a client without a valid session cookie reaches only ``/`` (a bare sign-in
  form that names nothing about the app) and ``POST /login``; every other route - config, API info,
  heartbeat, reset, cancel, files, uploads - answers 401 without running (the one exception is
  Gradio's start-up call to ``startup-events`` before the app has started; it answers ``true``).
  The session is Gradio's own (``app.tokens``), so the gate never keeps credentials.
* **Throttle.** After ``free_attempts`` failed logins from one client address, each further try
  must wait 1 s, 2 s, 4 s, ... (at most ``max_delay_s``); one that comes early is answered 429 with
  ``Retry-After`` - even with the right password. A success clears the count.
* **Bearer API.** Routes under ``bearer_prefix`` (the OpenAI-compatible API, ``/v1``) check their own
  ``Authorization: Bearer`` token instead of the browser login, so they pass the login gate; the size
  limits still apply (a multipart body there is an upload), and a request with a token the API
  refuses (401) counts as a failed login for the same throttle. Refusals there use OpenAI's error
  JSON shape. The server only sets a prefix when that API requires a token whenever auth is on.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

MULTIPART_SLACK = 64 * 1024  # multipart boundaries and part headers around an uploaded file

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title>
<style>body{font-family:system-ui,sans-serif;display:flex;justify-content:center;margin-top:12vh}
form{display:flex;flex-direction:column;gap:.6em;width:18em}input,button{font-size:1em;padding:.45em}
#msg{color:#b00;min-height:1.2em}</style></head>
<body><form id="f"><h2>Sign in</h2>
<input name="username" placeholder="User" autocomplete="username" required>
<input name="password" type="password" placeholder="Password" autocomplete="current-password" required>
<button type="submit">Sign in</button><div id="msg"></div></form>
<script>
document.getElementById("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  const msg = document.getElementById("msg");
  msg.textContent = "";
  const r = await fetch("login", {method: "POST", body: new URLSearchParams(new FormData(e.target)), credentials: "same-origin"});
  if (r.ok) { location.reload(); return; }
  const wait = r.headers.get("Retry-After");
  msg.textContent = r.status === 429 ? `Too many failed sign-ins; try again in ${wait} s.` : "Wrong user or password.";
});
</script></body></html>
"""


@dataclass
class SecuritySettings:
    """What the gate enforces (built from ``ServerConfig``)."""

    auth_required: bool = False
    max_upload_bytes: int = 50 * 2**20
    max_request_bytes: int = 2 * 2**20
    free_attempts: int = 3
    max_delay_s: float = 60.0
    bearer_prefix: str | None = None  # routes that check their own Bearer token (the API under /v1), or None

    @classmethod
    def from_config(cls, server, auth_required: bool, bearer_prefix: str | None = None) -> "SecuritySettings":
        return cls(
            auth_required=auth_required,
            bearer_prefix=bearer_prefix,
            max_upload_bytes=int(server.max_upload_mb * 2**20),
            max_request_bytes=int(server.max_request_mb * 2**20),
            free_attempts=int(server.login_free_attempts),
            max_delay_s=float(server.login_max_delay_s),
        )


@dataclass
class LoginThrottle:
    """Failed logins per client; exponential wait after ``free_attempts``. Thread-safe."""

    free_attempts: int = 3
    max_delay_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)  # client -> (count, time of last failure)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, client: str) -> float:
        """Seconds this client must still wait before its next try (0 = may try now)."""
        with self._lock:
            count, last = self._failures.get(client, (0, 0.0))
        if count < self.free_attempts:
            return 0.0
        delay = min(2.0 ** (count - self.free_attempts), self.max_delay_s)
        return max(0.0, last + delay - self.clock())

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            count, _ = self._failures.get(client, (0, 0.0))
            self._failures[client] = (count + 1, now)
            if len(self._failures) > 10000:  # forget clients idle for long (memory stays bounded)
                horizon = now - 2 * self.max_delay_s
                self._failures = {k: v for k, v in self._failures.items() if v[1] > horizon}

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


class _TooLarge(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _respond(send: Send, status: int, body: bytes, content_type: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), (b"connection", b"close"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    await _respond(send, status, json.dumps({"detail": detail}).encode(), "application/json", extra)


async def _api_error(send: Send, status: int, message: str, code: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    """A refusal in OpenAI's error shape, for the Bearer API's clients."""
    kind = "rate_limit_error" if status == 429 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    await _respond(send, status, json.dumps(body).encode(), "application/json", extra)


class SecurityGate:
    """ASGI middleware: size limits, then (with auth) the login gate and login throttling."""

    def __init__(self, app, settings: SecuritySettings, throttle: LoginThrottle | None = None):
        self.app = app
        self.settings = settings
        self.throttle = throttle or LoginThrottle(settings.free_attempts, settings.max_delay_s)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def authenticated(scope: Scope) -> bool:
        """A session cookie that Gradio's login issued (``app.tokens``)."""
        app = scope.get("app")
        tokens = getattr(app, "tokens", None)
        cookie_id = getattr(app, "cookie_id", None)
        raw = _header(scope, b"cookie")
        if not tokens or cookie_id is None or not raw:
            return False
        try:
            cookies = SimpleCookie(raw)
        except CookieError:
            return False
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            morsel = cookies.get(name)
            if morsel is not None and morsel.value in tokens:
                return True
        return False

    def is_bearer_route(self, path: str) -> bool:
        """A route of the Bearer API (``bearer_prefix``), which checks its own token."""
        prefix = self.settings.bearer_prefix
        return bool(prefix) and (path == prefix or path.startswith(prefix.rstrip("/") + "/"))

    def limit_for(self, path: str, content_type: str | None = None) -> int:
        upload = path.rstrip("/").endswith("/upload") or (
            self.is_bearer_route(path) and (content_type or "").lower().startswith("multipart/form-data"))
        if upload:
            return self.settings.max_upload_bytes + MULTIPART_SLACK
        return self.settings.max_request_bytes

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if self.settings.auth_required and not self.authenticated(scope):
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.limit_for(path, _header(scope, b"content-type"))
        bearer = self.is_bearer_route(path)
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await (_api_error(send, 400, "invalid Content-Length", "invalid_request") if bearer else _json(send, 400, "invalid Content-Length"))
                return
            if declared > limit:
                message = (f"the request is {declared / 2**20:.1f} MB; the limit is {limit / 2**20:.1f} MB "
                           "(server.max_upload_mb for uploads, server.max_request_mb otherwise)")
                await (_api_error(send, 413, message, "request_too_large") if bearer else _json(send, 413, message))
                return
        if bearer:  # its own Bearer check, not the browser login; wrong tokens throttled like logins
            await self._bearer(scope, self._counting(receive, limit), send)
            return
        if self.settings.auth_required and not self.authenticated(scope):
            method = scope.get("method", "GET")
            if path in ("/login", "/login/") and method == "POST":
                await self._login(scope, self._counting(receive, limit), send)
            elif path.rstrip("/").endswith("/startup-events") and not getattr(scope.get("app"), "startup_events_triggered", True):
                await self.app(scope, receive, send)  # Gradio's own start-up call, once; it answers only `true`
            elif path in ("", "/") and method in ("GET", "HEAD"):
                page = b"" if method == "HEAD" else LOGIN_PAGE.encode()
                await _respond(send, 200, page, "text/html; charset=utf-8", [(b"cache-control", b"no-store")])
            else:
                await _json(send, 401, "Not authenticated")
            return
        await self._guarded(scope, self._counting(receive, limit), send)

    def _counting(self, receive: Receive, limit: int) -> Receive:
        seen = 0

        async def wrapped() -> dict:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        return wrapped

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except _TooLarge:
            if not started:
                path = scope.get("path", "")
                message = f"the request body is over the limit of {self.limit_for(path, _header(scope, b'content-type')) / 2**20:.1f} MB"
                await (_api_error(send, 413, message, "request_too_large") if self.is_bearer_route(path) else _json(send, 413, message))

    async def _guarded_status(self, scope: Scope, receive: Receive, send: Send) -> int | None:
        """Serve the request through the size guard; the HTTP status it answered with (None if none)."""
        status: list[int] = []

        async def watching(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self._guarded(scope, receive, watching)
        return status[0] if status else None

    async def _bearer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A Bearer API request: refused 429 while its client must wait after failed tries; a
        token the API refuses (401) counts as a failure, an accepted one clears the count."""
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.wait(client)
        if wait > 0:
            seconds = int(wait) + 1
            await _api_error(send, 429, f"too many failed sign-ins or API keys; try again in {seconds} s", "rate_limit_exceeded",
                             [(b"retry-after", str(seconds).encode())])
            return
        status = await self._guarded_status(scope, receive, send)
        if _header(scope, b"authorization") is None or status is None:
            return  # no token given: nothing was guessed
        if status == 401:
            self.throttle.failed(client)
        else:
            self.throttle.succeeded(client)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.wait(client)
        if wait > 0:
            seconds = int(wait) + 1
            await _json(send, 429, f"too many failed sign-ins; try again in {seconds} s", [(b"retry-after", str(seconds).encode())])
            return
        status = await self._guarded_status(scope, receive, send)
        if status is not None and 200 <= status < 300:
            self.throttle.succeeded(client)
        else:
            self.throttle.failed(client)


def app_kwargs(settings: SecuritySettings) -> dict[str, Any]:
    """``app_kwargs`` for ``Blocks.launch`` / ``App.create_app`` that install the gate."""
    from starlette.middleware import Middleware

    return {"middleware": [Middleware(SecurityGate, settings=settings)]}
