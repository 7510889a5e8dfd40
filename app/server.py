"""Serving the web UI and the OpenAI-compatible API beside it: one concurrency limit for both,
authentication, share link, warnings, size limits and the login gate (``app.security``), and a
private temporary folder per process."""

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
    from app.stale import remove_dead_folders

    base = Path(base or tempfile.gettempdir())
    remove_dead_folders(base, TEMP_PREFIX)
    folder = base / f"{TEMP_PREFIX}{os.getpid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    atexit.register(shutil.rmtree, folder, True)
    return folder



def api_routes(engine, api_key: str | None, auth, max_upload_bytes: int | None = None) -> list:
    """The OpenAI-compatible routes (app/openai_api.py) over ``engine``; uploads up to
    ``max_upload_bytes`` (``server.max_upload_mb``, the web UI's limit)."""
    from app.openai_api import SpeechApi, build_router, settings_from

    settings = settings_from(api_key, auth)
    if max_upload_bytes is not None:
        settings.max_upload_bytes = int(max_upload_bytes)
    return list(build_router(SpeechApi(engine, settings)).routes)


def serve(engine, host: str, port: int, share: bool = False, auth=None, concurrency: int = 1, prevent_thread_lock: bool = False,
          ssl_keyfile: str | None = None, ssl_certfile: str | None = None, api: bool = True, api_key: str | None = None):
    """Build the UI (and, with ``api``, the OpenAI-compatible API under /v1 on the same server and
    models) and launch it; returns the Blocks (running in the background when ``prevent_thread_lock``).
    The UI and the API share one limit of ``concurrency`` model requests at once.

    Uploads are limited to ``server.max_upload_mb`` and other requests to ``server.max_request_mb``
    (refused before the body is stored), the API's included; with ``auth`` nothing but a sign-in
    form is served before login, and failed logins are throttled per client (see ``app.security``).
    The API under /v1 checks its own Bearer token (``api_key``, and the ``auth`` users as
    ``user:password``) instead of the browser login; wrong tokens are throttled like logins."""
    from app.gate import GatedEngine
    from app.security import SecuritySettings, app_kwargs
    from app.ui import CSS, build_demo

    warning = http_warning(host, share, bool(ssl_certfile))
    if warning:
        log.warning(warning)
    if not os.environ.get("GRADIO_TEMP_DIR"):  # one private folder: removed on exit, stale ones at start
        os.environ["GRADIO_TEMP_DIR"] = str(private_temp_dir())
    server = engine.config.server
    settings = SecuritySettings.from_config(server, auth_required=bool(auth), bearer_prefix="/v1" if api else None)
    kwargs = app_kwargs(settings)
    concurrency = max(1, int(concurrency))
    shared = GatedEngine(engine, concurrency)
    demo = build_demo(shared, concurrency=concurrency)
    demo.queue(default_concurrency_limit=concurrency)
    if api:
        # routes given to the FastAPI app Gradio creates, so they exist before the server accepts requests
        kwargs["routes"] = api_routes(shared, api_key, auth, settings.max_upload_bytes)
    if not prevent_thread_lock and threading.current_thread() is threading.main_thread():
        # SIGTERM stops the server like Ctrl+C, so exit handlers remove the temporary files
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, prevent_thread_lock=True,
                ssl_keyfile=ssl_keyfile, ssl_certfile=ssl_certfile, show_error=True, quiet=True,
                max_file_size=settings.max_upload_bytes, app_kwargs=kwargs, css=CSS)
    if not prevent_thread_lock:
        print(serving_message(demo, engine, api, api_key, auth, share), flush=True)
        demo.block_thread()
    return demo


def profile_switch_hint(profile: str) -> str:
    """How to start the other profile (empty for a profile of its own, e.g. uslm)."""
    from app.status import PROFILE_SWITCH

    return PROFILE_SWITCH.get(profile, "")


def serving_message(demo, engine, api: bool, api_key: str | None, auth, share: bool) -> str:
    """What the console says once the server is up: where, which profile and models, the API, share hints."""
    cfg = engine.config
    perceptual = getattr(cfg.perceptual, cfg.perceptual.kind)
    lines = [f"SpeechGPT-Gen assistant: profile {cfg.profile!r}" + (f" ({cfg.profile_reason})" if cfg.profile_reason else ""),
             f"  codec      {cfg.codec.name} ({'random' if getattr(cfg.codec, 'random_init', False) else cfg.codec.path})",
             f"  semantic   {cfg.semantic.family} ({'random' if cfg.semantic.random_init else cfg.semantic.path})",
             f"  perceptual {cfg.perceptual.kind} ({f'random {perceptual.size}' if perceptual.random_init else perceptual.path})"]
    if cfg.semantic.reply_writer:
        from engine.semantic.reply_writer import writer_name

        lines.append(f"  chat reply text written by {writer_name(cfg.semantic.reply_writer)}")
    switch = profile_switch_hint(cfg.profile)
    if switch:
        lines.append(switch)
    lines.append(f"web UI:      {demo.local_url}")
    if getattr(demo, "share_url", None):
        lines.append(f"public link: {demo.share_url}")
    if api:
        guard = "Bearer token required (--api-key / --auth)" if (api_key or auth) else "no key required (set one with --api-key)"
        lines.append(f"OpenAI API:  {demo.local_url.rstrip('/')}/v1  ({guard})")
    if not share:
        lines.append("For a public https link (and the microphone on other machines) start with --share.")
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)
