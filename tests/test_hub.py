"""Model-file lookup: local folders, the hub cache, and an unreachable hub failing fast and clearly."""

import pytest

from engine.errors import ModelUnavailableError
from engine.hub import hub_reachable, locate_files, resolve_files


def test_local_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert locate_files(tmp_path, ["config.json", "ckpt.dev"]) == {"config.json": tmp_path / "config.json", "ckpt.dev": None}
    with pytest.raises(ModelUnavailableError, match="missing ckpt.dev") as err:
        resolve_files(tmp_path, ["config.json", "ckpt.dev"], what="codec")
    assert str(tmp_path) in str(err.value)


def test_unreachable_hub_fails_at_once(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # .invalid never resolves (RFC 2606)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    assert not hub_reachable(timeout=2)
    with pytest.raises(ModelUnavailableError, match="hf download someone/some-model") as err:
        resolve_files("someone/some-model", ["config.json"], what="test model")
    assert "the hub is not reachable" in str(err.value)  # decided before the download library's retry loop
