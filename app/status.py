"""The status area: which models are configured, loaded and available, on which device and in which
precision, what is missing and how to get it. Pure formatting over ``Engine.status()``."""

from __future__ import annotations

from typing import Sequence

TINY_NOTE = ("**Tiny profile**: the models are small and random — the app works end to end, but the voices are noise. "
             "Start with `--profile demo` (small models trained here, offline) or `--profile full` (the public checkpoints) for real speech.")

# how to switch to the other models, per profile (the banner and the Status tab)
PROFILE_SWITCH = {
    "demo": ("Demo models (small, trained here, CPU, offline). They are below their quality goals: expect some words "
             "wrong (about one in four for speech made from text) and voices close to the training voices (the measured "
             "scores are in the model cards, "
             "`assets/models/demo/*/README.md`). For the full models (public checkpoints: ~16 GB, a GPU advised) "
             "fetch them (`.venv/bin/python -m engine info --profile full` lists the commands) and start with `--profile full`."),
    "default": "Full models (public checkpoints). For the small offline demo models start with `--profile demo`.",
}


def _cell(text: str) -> str:
    """Markdown-table-safe text."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def device_summary() -> str:
    """CPU, or the CUDA device name and memory."""
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return f"CUDA: {props.name}, {props.total_memory / 2**30:.0f} GiB"
    except Exception:  # a broken CUDA install must not break the status area
        pass
    return "CPU only (no CUDA device found)"


def reply_text_line(statuses: Sequence) -> str:
    """Which model writes the chat reply text, in plain words."""
    writer = next((s for s in statuses if s.role == "reply-writer"), None)
    transcriber = next((s for s in statuses if s.role == "transcriber"), None)
    heard = (f"**{str(transcriber.name).split(':')[0]}** turns your speech into text" if transcriber is not None
             else "the semantic model turns your speech into text (ASR)")
    if writer is not None:
        name = str(writer.name).split(":")[0]
        return (f"**Chat reply text** is written by **{name}** (a separate instruction model); {heard}, and the "
                "semantic model turns the reply text into speech units (TTS).")
    if transcriber is not None:
        return f"**Chat reply text** is written by the semantic model itself, with the reply speech units; {heard}."
    return "**Chat reply text** is written by the semantic model itself, together with the reply speech units."


def status_markdown(statuses: Sequence, profile: str, reason: str = "") -> str:
    """A table of ``ModelStatus`` rows, which model writes chat replies, what is missing and what to
    do about it, and how to switch profiles (``reason``: why this profile was chosen)."""
    rows = ["| model | loaded | available | device | precision | source |", "|---|---|---|---|---|---|"]
    loads = []
    missing = []
    for s in statuses:
        load_s = getattr(s, "load_s", None)
        if load_s is not None:
            loads.append(f"{s.role} {load_s:.2f} s")
        rows.append(f"| {_cell(s.role)} ({_cell(s.name)}) | {'yes' if s.loaded else 'not yet (loads on first use)'} | "
                    f"{'yes' if s.available else '**no**'} | {_cell(s.device)} | {_cell(s.dtype)} | {_cell(s.source)} |")
        if not s.available:
            missing.append(f"- **{_cell(s.role)}**: {_cell(s.message)}")
    parts = [f"**Profile** `{profile}`{f' ({reason})' if reason else ''} · **hardware** {device_summary()}", "\n".join(rows),
             reply_text_line(statuses)]
    if loads:  # loading is reported here, never inside a request's first-audio time or RTF
        parts.append(f"**Models loaded in** {', '.join(loads)} (not counted in any request's timings).")
    if missing:
        parts.append("**Missing** — the app keeps running, but requests needing these models fail until they are there:\n"
                     + "\n".join(missing) + "\n\nCheck again with `.venv/bin/python -m engine info`, then press *Refresh*.")
    else:
        parts.append("Every model this profile uses is available.")
    if profile == "tiny":
        parts.append(TINY_NOTE)
    elif profile in PROFILE_SWITCH:
        parts.append(PROFILE_SWITCH[profile])
    return "\n\n".join(parts)


def status_line(statuses: Sequence) -> str:
    """One line for the page header: ready / missing roles, and the perceptual model(s) in use."""
    missing = [s.role for s in statuses if not s.available]
    loaded = [s.role for s in statuses if s.loaded]
    device = statuses[0].device if statuses else "?"
    if missing:
        return f"**Missing:** {', '.join(missing)} — see the Status tab for how to get them."
    perceptual = [s.role for s in statuses if s.role not in ("codec", "reply-writer") and not s.role.startswith("semantic")]
    state = f"loaded: {', '.join(loaded)}" if loaded else "models load on first use"
    return f"**Ready** on {device}: perceptual model {' + '.join(perceptual) or '?'} ({state})."
