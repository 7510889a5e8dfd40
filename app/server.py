"""Serving the web UI: queue with a concurrency limit, authentication, share link, warnings,
size limits and the login gate (``app.security``), and a private temporary folder per process."""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)


AUTH_ENV = "SPEECHGPT_AUTH"  # user:password (one per line): credentials that stay out of `ps`
TEMP_PREFIX = "speechgpt-gen-web-"  # <prefix><pid>: Gradio's uploads and our outputs for one process


def parse_auth(auth: str | None, auth_file: str | None, env: str | None = None) -> list[tuple[str, str]] | None:
    """``user:password`` (a flag, visible in ``ps``), a file with one ``user:password`` per line,
    and/or the ``$SPEECHGPT_AUTH`` value (one ``user:password`` per line)."""
    pairs: list[tuple[str, str]] = []
    lines = [auth] if auth else []
    if env:
        lines += [l.strip() for l in env.splitlines() if l.strip()]
    if auth_file:
        path = Path(auth_file)
        if not path.is_file():
            raise SystemExit(f"--auth-file {auth_file}: no such file")
        lines += [l.strip() for l in path.read_text(encoding="utf-8").splitlines() if l.strip() and not l.startswith("#")]
    for line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"invalid credentials for user {user!r}: use user:password" if user else "invalid credentials: use user:password")
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


def private_temp_dir(base: str | Path | None = None) -> Path:
    """A temporary folder for this process (Gradio's uploads and cache, our outputs), removed at
    exit; folders left by processes that died are removed now."""
    base = Path(base or tempfile.gettempdir())
    for old in base.glob(f"{TEMP_PREFIX}*"):
        pid = old.name[len(TEMP_PREFIX):]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    folder = base / f"{TEMP_PREFIX}{os.getpid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def serve(engine, host: str, port: int, share: bool = False, auth=None, concurrency: int = 1, prevent_thread_lock: bool = False,
          ssl_keyfile: str | None = None, ssl_certfile: str | None = None):
    """Build the UI and launch it; returns the Blocks (running in the background when ``prevent_thread_lock``).

    Uploads are limited to ``server.max_upload_mb`` and other requests to ``server.max_request_mb``
    (refused before the body is stored); with ``auth`` nothing but a sign-in form is served before
    login, and failed logins are throttled per client (see ``app.security``)."""
    from app.security import SecuritySettings, app_kwargs
    from app.ui import build_demo

    warning = http_warning(host, share, bool(ssl_certfile))
    if warning:
        log.warning(warning)
    if not os.environ.get("GRADIO_TEMP_DIR"):  # one private folder: removed on exit, stale ones at start
        os.environ["GRADIO_TEMP_DIR"] = str(private_temp_dir())
    server = engine.config.server
    settings = SecuritySettings.from_config(server, auth_required=bool(auth))
    concurrency = max(1, int(concurrency))
    demo = build_demo(engine, concurrency=concurrency)
    demo.queue(default_concurrency_limit=concurrency)
    if not prevent_thread_lock and threading.current_thread() is threading.main_thread():
        # SIGTERM stops the server like Ctrl+C, so exit handlers remove the temporary files
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, prevent_thread_lock=prevent_thread_lock,
                ssl_keyfile=ssl_keyfile, ssl_certfile=ssl_certfile, show_error=True, quiet=prevent_thread_lock,
                max_file_size=settings.max_upload_bytes, app_kwargs=app_kwargs(settings))
    return demo
