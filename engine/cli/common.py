"""Helpers shared by the command-line commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from engine.errors import EngineError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--profile``, ``--config`` and repeatable ``--set section.key=value``."""
    group = parser.add_argument_group("configuration")
    group.add_argument("--profile", default=os.environ.get("SPEECHGPT_PROFILE", "default"),
                       help="config profile in assets/configs (default: %(default)s = full, the public checkpoints; 'demo' = the "
                            "small offline models; 'auto' = full when its files are on this machine, else demo, as launch.py "
                            "does; 'tiny' = random test models)")
    group.add_argument("--config", default=None, help="YAML file merged over the profile")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one setting, e.g. --set perceptual.flow.steps=8 (repeatable)")
    group.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: the config's pipeline.device)")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def config_from_args(args: argparse.Namespace):
    """Resolve the AppConfig from the parsed ``add_config_args`` options."""
    from engine.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "device", None):
        overrides.append(f"pipeline.device={args.device}")
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return load_config(args.profile, args.config, overrides)


def run_cli(fn: Callable[[], int]) -> int:
    """Run a CLI entry; user-facing errors become one readable line and exit code 1."""
    try:
        return fn()
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
