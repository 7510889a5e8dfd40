"""Finding model files in a local folder or the Hugging Face hub cache, with one clear error."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ModelUnavailableError


def _is_local(path: str | Path) -> bool:
    """A hub id looks like ``owner/name``; anything else (or an existing path) is a local folder."""
    text = str(path)
    return Path(text).expanduser().exists() or text.startswith((".", "/", "~")) or text.count("/") != 1


def locate_files(path: str | Path, filenames: list[str], subfolder: str | None = None) -> dict[str, Path | None]:
    """Where each file is, without downloading anything: a local folder, or the hub cache."""
    if _is_local(path):
        folder = Path(path).expanduser() / (subfolder or "")
        return {name: (folder / name) if (folder / name).is_file() else None for name in filenames}
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        return {name: None for name in filenames}
    found: dict[str, Path | None] = {}
    for name in filenames:
        hit = try_to_load_from_cache(str(path), name if not subfolder else f"{subfolder}/{name}")
        found[name] = Path(hit) if isinstance(hit, str) else None
    return found


def download_hint(path: str | Path, filenames: list[str], subfolder: str | None = None) -> str:
    """A command that fetches the files, for error messages."""
    if _is_local(path):
        return f"put {', '.join(filenames)} into {Path(path).expanduser() / (subfolder or '')}"
    files = " ".join(f"{subfolder}/{n}" if subfolder else n for n in filenames)
    return f"run `hf download {path} {files}` on a machine with internet access (or copy the files into a folder and point the config at it)"


def cached_snapshot(repo: str) -> Path | None:
    """The folder of ``repo`` in the local Hugging Face cache, or None; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or the hub library refuses): not available
        return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers on 443 (a quick check so that an offline machine gets the
    "how to get the files" message at once, not after the download library's retries). Behind a
    proxy the check is skipped (the proxy decides)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_files(path: str | Path, filenames: list[str], subfolder: str | None = None, what: str = "model") -> list[Path]:
    """Paths of ``filenames`` from a local folder or a hub id (cache first, then a download unless
    ``HF_HUB_OFFLINE`` is set). Raises ModelUnavailableError naming every missing file."""
    found = locate_files(path, filenames, subfolder)
    missing = [n for n, p in found.items() if p is None]
    if missing and not _is_local(path) and os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        try:
            from huggingface_hub import hf_hub_download

            if not hub_reachable():
                raise ConnectionError("the hub is not reachable from this machine")
            for name in missing:
                found[name] = Path(hf_hub_download(str(path), name, subfolder=subfolder))
            missing = []
        except Exception as exc:  # offline, unknown repo, no permission...
            reason = str(exc) if type(exc) is ConnectionError else type(exc).__name__
            raise ModelUnavailableError(
                f"{what}: could not get {', '.join(missing)} from {path}"
                f"{'/' + subfolder if subfolder else ''} ({reason}). "
                f"{download_hint(path, missing, subfolder)}"
            ) from exc
    if missing:
        where = Path(path).expanduser() / (subfolder or "") if _is_local(path) else f"hub {path}{'/' + subfolder if subfolder else ''}"
        raise ModelUnavailableError(f"{what}: missing {', '.join(missing)} in {where}. {download_hint(path, missing, subfolder)}")
    return [found[n] for n in filenames]  # type: ignore[misc]
