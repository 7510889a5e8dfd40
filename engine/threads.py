"""CPU thread policy for torch (``pipeline.cpu_threads``).

Decoding a language model on a CPU is bound by memory bandwidth, and oversubscribed cores make
every matrix-vector product wait on the slowest thread (with two busy processes of two threads on
two cores, a gemv ran 16x slower than with one thread), so the engine sets the thread count on
purpose instead of leaving it to the OpenMP default.
"""

from __future__ import annotations

import os

import torch

AUTO_CAP = 8  # beyond this, decode and the flow sampler gain little and other work loses cores


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_threads_for(setting: int) -> int:
    """Threads for ``setting``: > 0 is taken as is; 0 (auto) is OMP_NUM_THREADS when the user set it,
    else the usable cores, at most AUTO_CAP."""
    if setting < 0:
        raise ValueError(f"pipeline.cpu_threads must be 0 (auto) or a positive count, not {setting}")
    if setting > 0:
        return setting
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(usable_cores(), AUTO_CAP))


def apply_cpu_threads(setting: int) -> int:
    """Set torch's intra-op thread count from ``setting`` (see ``cpu_threads_for``); returns it."""
    n = cpu_threads_for(setting)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
