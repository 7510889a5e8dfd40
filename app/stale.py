"""Folders named after the process that made them (``PREFIX<pid>[-...]``), cleaned up once that process is gone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def remove_dead_folders(base: Path, prefix: str) -> None:
    """Remove ``base/PREFIX<pid>...`` folders whose process has died (a crash or kill skipped their cleanup)."""
    for folder in base.glob(f"{prefix}*"):
        pid = folder.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
