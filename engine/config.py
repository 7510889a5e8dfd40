"""Typed configuration: dataclasses loaded from YAML profiles, overridable from the command line.

Resolution order (later wins): dataclass defaults -> ``assets/configs/<profile>.yaml`` ->
``--config FILE`` -> ``--set section.key=value`` overrides.

Each component owns the dataclass of its section (``engine.codec.CodecConfig``,
``engine.semantic.config.SemanticConfig``, ``engine.perceptual.config.PerceptualConfig``);
this module composes them and holds the generic dict <-> dataclass helpers.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from engine.codec_config import CodecConfig
from engine.errors import ConfigError
from engine.perceptual.config import PerceptualConfig
from engine.semantic.config import SemanticConfig

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "assets" / "configs"


@dataclass
class PipelineConfig:
    """Task-level settings shared by TTS, conversion and chat."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cpu_threads: int = 0  # torch CPU threads: 0 = auto (OMP_NUM_THREADS if set, else usable cores up to 8); see engine.threads
    max_input_seconds: float = 60.0  # longest user audio accepted (checked from the file header, before decoding)
    min_input_seconds: float = 0.2  # shorter clips are refused (nothing to convert, hear or take a voice from)
    max_text_chars: int = 2000  # longest TTS text accepted
    max_chat_chars: int = 2000  # longest typed chat message accepted
    chunk_chars: int = 250  # TTS text is split at sentence boundaries into chunks of at most this size
    # chat with a reply writer: its first spoken piece is cut at the first clause boundary (, ; :) after at
    # least this many characters, so audio need not wait for a long first sentence; 0 = whole sentences
    chat_first_chars: int = 0
    # TTS audio starts after the first sentence chunk's first this-many units (50 Hz; rounded up to
    # semantic.unit_chunk), the rest of that chunk continuing it seamlessly; 0 = after the whole chunk
    tts_first_frames: int = 50
    tts_stream_min_chars: int = 0  # ...when that chunk has at least this many characters (shorter: one pass, no second flow call)
    # a one-pass first chunk's decode in pieces: its first this-many frames play while the rest is decoded
    # (pieces sized from the measured decode speed; they join exactly); 0 = decoded whole
    tts_decode_first_frames: int = 0
    crossfade_ms: float = 30.0
    sentence_pause_ms: float = 120.0
    # streamed chat speech (engine.perceptual.streaming): each unit chunk continues the previous ones
    stream_context_frames: int = 150  # generated frames fed back to the perceptual model as left context
    stream_overlap_frames: int = 25  # codec decode overlap before each streamed piece
    stream_holdback_frames: int = 4  # frames held until the next chunk gives them right context
    stream_lookahead_frames: int = 10  # last frames of a chunk generated again with the next one


@dataclass
class ServerConfig:
    """Web UI / desktop defaults; launch.py flags override them."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: str | None = None  # "user:password" (prefer --auth-file or $SPEECHGPT_AUTH: they stay out of `ps`)
    max_upload_mb: float = 50.0  # largest uploaded file; refused while it streams in (Content-Length first)
    max_request_mb: float = 2.0  # largest body of any other request (chat text, settings, history)
    login_free_attempts: int = 3  # failed logins per client before each further try must wait
    login_max_delay_s: float = 60.0  # the wait doubles per failure (1 s, 2 s, 4 s, ...) up to this
    output_cache_mb: float = 500.0  # generated audio kept for playback/download; oldest removed first
    concurrency: int = 1  # requests that may run at once on the models
    vad_pause_ms: int = 700  # silence that ends an utterance
    vad_aggressiveness: int = 2  # WebRTC VAD mode 0..3
    vad_preroll_ms: int = 300  # audio kept from before the detected start of speech
    vad_min_speech_ms: int = 250  # shorter voiced bursts (coughs, clicks) are dropped
    vad_max_seconds: float = 30.0  # an utterance is cut here even without a pause


@dataclass
class PathsConfig:
    voices_dir: str = "~/.cache/speechgpt-gen/voices"  # the user's voice library (user data, outside the checkout)
    bundled_voices_dir: str = "assets/voices"
    outputs_dir: str = "outputs"


@dataclass
class AppConfig:
    profile: str = "default"
    profile_reason: str = ""  # why this profile serves (set when `auto` chose it; engine.profiles)
    codec: CodecConfig = field(default_factory=CodecConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def resolve_path(self, value: str) -> Path:
        """Expand ``~`` and make a relative path relative to the repository root."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else REPO_ROOT / path


def local_model_folder(path: str) -> Path | None:
    """Where a model setting points on disk: an existing path as given, else the same path under the
    repository (bundled models in ``assets/models/`` work from any directory); None for a hub id
    (``owner/name`` that is not a local path)."""
    given = Path(path).expanduser()
    if given.exists():
        return given
    in_repo = REPO_ROOT / given
    if not given.is_absolute() and in_repo.exists():
        return in_repo
    if not str(path).startswith((".", "/", "~")) and str(path).count("/") == 1:
        return None  # looks like a hub id
    return given if given.is_absolute() else in_repo


def missing_local_model(what: str, path: str, consequence: str = "") -> str:
    """The message for a model folder that is not there (a bundled one is not trained yet)."""
    folder = local_model_folder(path) or Path(path)
    bundled = folder.resolve().is_relative_to((REPO_ROOT / "assets" / "models").resolve())
    head = (f"{what}: the bundled model {path} is not trained yet (its folder is not there; docs/demo.md says how it is made)"
            if bundled else f"{what}: the folder {folder} does not exist; fix the setting or put the model there")
    return f"{head}. {consequence}".strip()


# ----------------------------------------------------------------------------- generic helpers


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check/convert ``value`` against the annotation ``tp``; raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads a bare on / off (yes / no) as a boolean: the switch meant
            return "on" if value else "off"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build the dataclass ``cls`` from a (nested) mapping; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown setting(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys here: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain nested dict (YAML friendly)."""
    return dataclasses.asdict(obj)


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge: ``update`` wins, nested mappings are merged."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def load_yaml_dataclass(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, read_yaml(path))


def save_yaml_dataclass(obj: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False), encoding="utf-8")


def parse_override(text: str) -> dict:
    """``"semantic.sampling.temperature=0.7"`` -> nested dict; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    nested: dict = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def available_profiles() -> list[str]:
    """Profile names ``load_config`` accepts: the YAML files, their aliases (``full``) and ``auto``."""
    from engine.profiles import ALIASES, AUTO

    return sorted({p.stem for p in CONFIG_DIR.glob("*.yaml")} | set(ALIASES) | {AUTO})


def load_config(
    profile: str = "default", config_file: str | Path | None = None, overrides: Iterable[str] = ()
) -> AppConfig:
    """Resolve the configuration: profile YAML, then an optional file, then ``key=value`` overrides.
    ``full`` is another name for ``default``; ``auto`` picks ``default`` when its models are on this
    machine, else ``demo`` (engine.profiles; files only, no network)."""
    from engine.profiles import ALIASES, AUTO, choose_profile

    reason = ""
    overrides = list(overrides)
    if profile == AUTO:
        choice = choose_profile(config_file, overrides)
        profile, reason = choice.name, choice.reason
    profile = ALIASES.get(profile, profile)
    profile_path = CONFIG_DIR / f"{profile}.yaml"
    if not profile_path.is_file():
        raise ConfigError(f"unknown profile {profile!r}; available: {', '.join(available_profiles())}")
    data = read_yaml(profile_path)
    if config_file is not None:
        data = merge(data, read_yaml(config_file))
    for text in overrides:
        data = merge(data, parse_override(text))
    data["profile"] = profile
    data["profile_reason"] = reason
    return from_dict(AppConfig, data)
