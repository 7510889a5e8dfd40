"""Fixed-step ODE solvers for flow matching (ours; no adaptive stepping needed).

The number of steps is chosen at call time. ``sway`` time grids spend more steps near t = 0,
where the velocity field changes fastest (sway sampling, as reported for F5-TTS).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

VectorField = Callable[[Tensor, Tensor], Tensor]  # (y [B, T, D], t [B]) -> dy/dt


def time_grid(steps: int, schedule: str = "uniform", sway: float = -1.0, device: torch.device | None = None) -> Tensor:
    """Grid of ``steps + 1`` times from 0 to 1. ``sway``: t + s * (cos(pi t / 2) - 1 + t), s < 0."""
    if steps < 1:
        raise ValueError("the ODE needs at least one step")
    t = torch.linspace(0.0, 1.0, steps + 1, device=device)
    if schedule == "uniform":
        return t
    if schedule == "sway":
        return t + sway * (torch.cos(math.pi / 2 * t) - 1 + t)
    raise ValueError(f"unknown time schedule {schedule!r}; use uniform or sway")


def _expand(t: Tensor, y: Tensor) -> Tensor:
    return t.expand(y.shape[0])


def solve(fn: VectorField, y0: Tensor, grid: Tensor, method: str = "midpoint", keep_all: bool = False) -> Tensor | list[Tensor]:
    """Integrate dy/dt = fn(y, t) over ``grid``. Euler: 1 evaluation per step; midpoint: 2.

    Returns the final state, or the states at every grid point when ``keep_all``.
    """
    if method not in ("euler", "midpoint"):
        raise ValueError(f"unknown ODE solver {method!r}; use euler or midpoint")
    y = y0
    states = [y0] if keep_all else []
    for i in range(len(grid) - 1):
        t0, h = grid[i], grid[i + 1] - grid[i]
        if method == "euler":
            y = y + h * fn(y, _expand(t0, y))
        else:
            half = y + (h / 2) * fn(y, _expand(t0, y))
            y = y + h * fn(half, _expand(t0 + h / 2, y))
        if keep_all:
            states.append(y)
    return states if keep_all else y


def interpolate(grid: Tensor, states: list[Tensor], times: Tensor) -> Tensor:
    """Linear interpolation of grid states at ``times`` -> [len(times), *state.shape]."""
    stacked = torch.stack(states)  # [G, ...]
    out = []
    for t in times.tolist():
        j = int(torch.searchsorted(grid, torch.tensor(t, dtype=grid.dtype), right=True)) - 1
        j = min(max(j, 0), len(grid) - 2)
        t0, t1 = float(grid[j]), float(grid[j + 1])
        w = (t - t0) / (t1 - t0)
        out.append(stacked[j] + w * (stacked[j + 1] - stacked[j]))
    return torch.stack(out)


def nfe(steps: int, method: str) -> int:
    """Function evaluations of one solve."""
    return steps * (2 if method == "midpoint" else 1)
