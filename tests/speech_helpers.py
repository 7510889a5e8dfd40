"""Real synthetic speech from Debian's flite / espeak-ng (installed by .ci/run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SENTENCES = [
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls. The juice of lemons makes fine punch.",
]
FLITE_VOICES = ("slt", "rms", "awb")  # US female, US male, Scottish male


def flite(text: str, voice: str, path: Path) -> Path:
    """``text`` spoken by flite's ``voice`` into ``path`` (16 kHz WAV); skips the test without flite."""
    exe = shutil.which("flite")
    if exe is None:
        pytest.skip("flite is not installed (apt-get install flite; .ci/run installs it)")
    subprocess.run([exe, "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True, timeout=60)
    return path
