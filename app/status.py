"""The status area: which models are configured, loaded and available, on which device and in which
precision, what is missing and how to get it. Pure formatting over ``Engine.status()``."""

from __future__ import annotations

from typing import Sequence

TINY_NOTE = ("**Tiny profile**: the models are small and random — the app works end to end, but the voices are noise. "
             "Start with `--profile default` (the public checkpoints) for real speech.")


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


def status_markdown(statuses: Sequence, profile: str) -> str:
    """A table of ``ModelStatus`` rows, then what is missing and what to do about it."""
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
    parts = [f"**Profile** `{profile}` · **hardware** {device_summary()}", "\n".join(rows)]
    if loads:  # loading is reported here, never inside a request's first-audio time or RTF
        parts.append(f"**Models loaded in** {', '.join(loads)} (not counted in any request's timings).")
    if missing:
        parts.append("**Missing** — the app keeps running, but requests needing these models fail until they are there:\n"
                     + "\n".join(missing) + "\n\nCheck again with `.venv/bin/python -m engine info`, then press *Refresh*.")
    else:
        parts.append("Every model this profile uses is available.")
    if profile == "tiny":
        parts.append(TINY_NOTE)
    return "\n\n".join(parts)


def status_line(statuses: Sequence) -> str:
    """One line for the page header: ready / missing roles, and the perceptual model(s) in use."""
    missing = [s.role for s in statuses if not s.available]
    loaded = [s.role for s in statuses if s.loaded]
    device = statuses[0].device if statuses else "?"
    if missing:
        return f"**Missing:** {', '.join(missing)} — see the Status tab for how to get them."
    perceptual = [s.role for s in statuses if s.role not in ("codec", "semantic")]
    state = f"loaded: {', '.join(loaded)}" if loaded else "models load on first use"
    return f"**Ready** on {device}: perceptual model {' + '.join(perceptual) or '?'} ({state})."
