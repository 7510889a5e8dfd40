"""Which profile a plain ``python launch.py`` serves: the full models when their files are here, else the demo.

``auto`` picks ``default`` (the public checkpoints, also called ``full``) when every model that
profile uses is on this machine - in the local Hugging Face cache or the folders the settings name -
and ``demo`` (small models trained here, shipped in ``assets/models/demo/``) otherwise. The check only
looks at files: it never opens a network connection, never downloads. The ``tiny`` profile (random
test models) is never chosen automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

AUTO = "auto"
FULL = "default"  # the public-checkpoint profile
FALLBACK = "demo"
ALIASES = {"full": FULL}  # another name for a profile (`--profile full` = `--profile default`)


@dataclass
class ProfileChoice:
    """The profile ``auto`` resolved to, and why."""

    name: str
    reason: str
    missing: list[str] = field(default_factory=list)  # what the full profile lacks here (empty when it was chosen)


def full_profile_missing(config_file: str | Path | None = None, overrides: Iterable[str] = ()) -> list[str]:
    """The models of the full profile (with the same ``--config`` / ``--set``) that are not on this
    machine; empty when all are. Looks at files only."""
    from engine.cli.info import model_availability
    from engine.config import load_config

    cfg = load_config(FULL, config_file, overrides)
    used = {"codec", cfg.perceptual.kind, "reply-writer"}
    return [role for role, ok, _msg in model_availability(cfg) if (role in used or role.startswith("semantic")) and not ok]


def choose_profile(config_file: str | Path | None = None, overrides: Iterable[str] = ()) -> ProfileChoice:
    """``default`` when its models are all here, else ``demo``; the reason says why (how to switch:
    ``app.status.PROFILE_SWITCH``)."""
    missing = full_profile_missing(config_file, overrides)
    if not missing:
        return ProfileChoice(FULL, "chosen automatically: the full models' files are on this machine")
    return ProfileChoice(FALLBACK, f"chosen automatically: the full models' files are not on this machine ({', '.join(missing)} missing)", missing)
