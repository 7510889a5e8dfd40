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


def api_routes(engine, api_key: str | None, auth) -> list:
    """The OpenAI-compatible routes (app/openai_api.py) over ``engine``."""
    from app.openai_api import SpeechApi, build_router, settings_from

    return list(build_router(SpeechApi(engine, settings_from(api_key, auth))).routes)


def serve(engine, host: str, port: int, share: bool = False, auth=None, concurrency: int = 1, prevent_thread_lock: bool = False,
          ssl_keyfile: str | None = None, ssl_certfile: str | None = None, api: bool = True, api_key: str | None = None):
    """Build the UI (and, with ``api``, the OpenAI-compatible API under /v1 on the same server and
    models) and launch it; returns the Blocks (running in the background when ``prevent_thread_lock``).
    The UI and the API share one limit of ``concurrency`` model requests at once."""
    from app.gate import GatedEngine
    from app.ui import CSS, build_demo

    warning = http_warning(host, share, bool(ssl_certfile))
    if warning:
        log.warning(warning)
    concurrency = max(1, int(concurrency))
    shared = GatedEngine(engine, concurrency)
    demo = build_demo(shared, concurrency=concurrency)
    demo.queue(default_concurrency_limit=concurrency)
    # routes given to the FastAPI app Gradio creates, so they exist before the server accepts requests
    app_kwargs = {"routes": api_routes(shared, api_key, auth)} if api else None
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, prevent_thread_lock=True,
                ssl_keyfile=ssl_keyfile, ssl_certfile=ssl_certfile, show_error=True, quiet=True, app_kwargs=app_kwargs, css=CSS)
    if not prevent_thread_lock:
        print(serving_message(demo, engine, api, api_key, auth, share), flush=True)
        demo.block_thread()
    return demo


def serving_message(demo, engine, api: bool, api_key: str | None, auth, share: bool) -> str:
    """What the console says once the server is up: where, which profile and models, the API, share hints."""
    cfg = engine.config
    perceptual = getattr(cfg.perceptual, cfg.perceptual.kind)
    lines = [f"SpeechGPT-Gen assistant: profile {cfg.profile!r}",
             f"  codec      {cfg.codec.name} ({'random' if getattr(cfg.codec, 'random_init', False) else cfg.codec.path})",
             f"  semantic   {cfg.semantic.family} ({'random' if cfg.semantic.random_init else cfg.semantic.path})",
             f"  perceptual {cfg.perceptual.kind} ({f'random {perceptual.size}' if perceptual.random_init else perceptual.path})",
             f"web UI:      {demo.local_url}"]
    if getattr(demo, "share_url", None):
        lines.append(f"public link: {demo.share_url}")
    if api:
        guard = "Bearer token required (--api-key / --auth)" if (api_key or auth) else "no key required (set one with --api-key)"
        lines.append(f"OpenAI API:  {demo.local_url.rstrip('/')}/v1  ({guard})")
    if not share:
        lines.append("For a public https link (and the microphone on other machines) start with --share.")
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)
