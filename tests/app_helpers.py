"""Start the real app (tiny profile) on a free local port in a subprocess."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp_path: Path, timeout: float = 180.0, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
              profile: str = "tiny"):
    """(process, url) of launch.py on ``profile`` (default tiny); ``env`` and ``extra_args`` (launch.py flags) are added."""
    port = free_port()
    log = open(tmp_path / "app.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost",
           "TMPDIR": str(tmp_path), **(env or {})}
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--profile", profile, "--port", str(port),
                             "--set", f"paths.voices_dir={tmp_path / 'voices'}", *extra_args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited: {(tmp_path / 'app.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except urllib.error.HTTPError:  # answering (e.g. 401 before login): it is up
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the app did not start in {timeout} s: {(tmp_path / 'app.log').read_text()[-3000:]}")


@functools.lru_cache(maxsize=1)
def tiny_engine():
    """One real Engine on the tiny profile shared by the in-process app tests (models load once);
    its voice library lives in a temporary folder."""
    from engine.config import load_config
    from engine.pipeline import Engine

    voices = tempfile.mkdtemp(prefix="app-test-voices-")
    return Engine(load_config("tiny", overrides=[f"paths.voices_dir={voices}"]))
