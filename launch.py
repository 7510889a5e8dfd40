"""Start the SpeechGPT-Gen assistant: the web UI (default) or the desktop mode.

    python launch.py                          # http://127.0.0.1:7860 - the full models if they are on this
                                              #   machine, else the offline demo models (--profile auto)
    python launch.py --profile full           # the public checkpoints (alias of --profile default)
    python launch.py --profile demo           # the small models trained here (CPU, offline)
    python launch.py --share                  # plus a public https link
    SPEECHGPT_AUTH=user:password python launch.py   # require a login (or --auth-file FILE; --auth shows in `ps`)
    python launch.py --desktop --voice flite-slt   # local microphone and speakers
    python launch.py --profile tiny           # small random models: no downloads (tests, UI work)
    python launch.py --api-key KEY            # the OpenAI-compatible API under /v1 needs 'Bearer KEY'
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default=os.environ.get("SPEECHGPT_PROFILE", "auto"),
                   help="config profile: auto (default: full when its models are on this machine, else demo), "
                        "full (= default: the public checkpoints), demo (small offline models), tiny (random, tests)")
    p.add_argument("--config", default=None, help="YAML file merged over the profile")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable)")
    p.add_argument("--host", default=None, help="address to listen on (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default from config: 7860)")
    p.add_argument("--share", action="store_true", help="also create a public https share link")
    p.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                   help="require a login (visible to other users in `ps`: prefer --auth-file or $SPEECHGPT_AUTH)")
    p.add_argument("--auth-file", default=None, help="file with one user:password per line (or set $SPEECHGPT_AUTH)")
    p.add_argument("--api-key", default=os.environ.get("SPEECHGPT_API_KEY"), metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on the OpenAI-compatible API under /v1 "
                        "(visible in `ps`: prefer $SPEECHGPT_API_KEY)")
    p.add_argument("--no-api", action="store_true", help="do not serve the OpenAI-compatible API under /v1")
    p.add_argument("--concurrency", type=int, default=None, help="requests running on the models at once (default from config)")
    p.add_argument("--ssl-keyfile", default=None)
    p.add_argument("--ssl-certfile", default=None)
    p.add_argument("--preload", action="store_true", help="load all models before serving")
    p.add_argument("--desktop", action="store_true", help="talk through the local microphone and speakers")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--input-device", default=None, help="desktop: microphone (index or name)")
    p.add_argument("--output-device", default=None, help="desktop: speakers (index or name)")
    p.add_argument("--voice", default=None, help="desktop: reply voice (library name or audio file)")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from engine.config import load_config
    from engine.errors import EngineError

    try:
        cfg = load_config(args.profile, args.config, args.overrides)
        if args.list_devices:
            from app.desktop import list_devices

            print(list_devices())
            return 0
        from engine.pipeline import Engine

        engine = Engine(cfg)
        if args.desktop:
            from app.desktop import run_desktop

            from engine.cli._tasks import voice_arg

            return run_desktop(engine, voice=voice_arg(args.voice) if args.voice else None, input_device=args.input_device, output_device=args.output_device)
        from app.server import AUTH_ENV, parse_auth, serve

        auth = parse_auth(args.auth or cfg.server.auth, args.auth_file, os.environ.get(AUTH_ENV))
        if args.preload:
            for message in engine.load(progress=lambda f, m: print(f"[{f * 100:3.0f}%] {m}", flush=True), skip_missing=True):
                print(f"not loaded: {message}", flush=True)  # the app still serves what is there; the Status tab says this too
        serve(engine, host=args.host or cfg.server.host, port=args.port or cfg.server.port, share=args.share or cfg.server.share,
              auth=auth, concurrency=args.concurrency or cfg.server.concurrency, ssl_keyfile=args.ssl_keyfile, ssl_certfile=args.ssl_certfile,
              api=not args.no_api, api_key=args.api_key)
        return 0
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
