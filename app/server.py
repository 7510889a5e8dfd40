"""Serving the web UI: queue with a concurrency limit, authentication, share link, warnings."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def parse_auth(auth: str | None, auth_file: str | None) -> list[tuple[str, str]] | None:
    """``user:password`` and/or a file with one ``user:password`` per line."""
    pairs: list[tuple[str, str]] = []
    lines = [auth] if auth else []
    if auth_file:
        path = Path(auth_file)
        if not path.is_file():
            raise SystemExit(f"--auth-file {auth_file}: no such file")
        lines += [l.strip() for l in path.read_text(encoding="utf-8").splitlines() if l.strip() and not l.startswith("#")]
    for line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"invalid credentials {line!r}: use user:password")
        pairs.append((user, password))
    return pairs or None


def is_local(host: str) -> bool:
    """Loopback addresses (and localhost), where browsers allow the microphone over plain http."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_warning(host: str, share: bool, tls: bool) -> str | None:
    """Browsers only allow the microphone on https or localhost."""
    if share or tls or is_local(host):
        return None
    return (f"serving on http://{host}: browsers block the microphone on plain http for non-local addresses. "
            "Use --share (an https link), put the app behind an https proxy, or open it via localhost (e.g. an SSH tunnel).")


def serve(engine, host: str, port: int, share: bool = False, auth=None, concurrency: int = 1, prevent_thread_lock: bool = False,
          ssl_keyfile: str | None = None, ssl_certfile: str | None = None):
    """Build the UI and launch it; returns the Blocks (running in the background when ``prevent_thread_lock``)."""
    from app.ui import build_demo

    warning = http_warning(host, share, bool(ssl_certfile))
    if warning:
        log.warning(warning)
    concurrency = max(1, int(concurrency))
    demo = build_demo(engine, concurrency=concurrency)
    demo.queue(default_concurrency_limit=concurrency)
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, prevent_thread_lock=prevent_thread_lock,
                ssl_keyfile=ssl_keyfile, ssl_certfile=ssl_certfile, show_error=True, quiet=prevent_thread_lock)
    return demo
