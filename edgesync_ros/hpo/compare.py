"""The comparison with online profiling (the paper's Fig. 4): the offline h against N-trial searches per window.

Instead of one offline h, an online method profiles N configurations on each new window
(:func:`~edgesync_ros.core.hpo.online_profile`, extra trees + EI, the stand-in for the paper's TPE). Windows come
from the evaluation clips (h was not tuned on them). The head is trained on a window with the chosen h and scored
on the *next* window, how a deployed head is used: scoring on the window's own validation split would favour
online profiling twice (it picks the maximum of N noisy scores on that very split); both numbers are reported.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.hpo import SearchSpace, Segment, online_profile
from edgesync_ros.core.training import Clock, train_head


@dataclasses.dataclass(frozen=True)
class WindowScore:
    """One method on one window: chosen h, its scores, and what choosing and training it cost (clock s)."""

    method: str  # "offline" or "online<N>"
    window: str
    params: dict[str, float | int]
    val_accuracy: float  # on the window's own validation split (what the trainer/profiler maximises)
    next_accuracy: float  # head trained on the window, tested on the next window
    profile_seconds: float  # 0 for the offline h: it was found once, before deployment
    train_seconds: float


def accuracy(head: nn.Module, state: Mapping[str, torch.Tensor], segment: Segment) -> float:
    """Return the accuracy on ``segment`` of ``head`` with the weights ``state`` (``head`` is not changed)."""
    model = copy.deepcopy(head)
    model.load_state_dict(dict(state))
    model.eval()
    with torch.no_grad():
        pred = model(segment.features).argmax(dim=1)
    return float((pred == segment.labels).float().mean())


def score_params(
    head: nn.Module,
    window: Segment,
    nxt: Segment,
    params: Mapping[str, float | int],
    base_cfg: TrainConfig,
    clock: Clock,
    method: str,
    profile_seconds: float,
) -> WindowScore:
    """Train on ``window`` with ``params`` (Algorithm 2) and test the best epoch's head on ``nxt``."""
    t0 = clock()
    overrides: dict[str, Any] = dict(params)
    res = train_head(head, window.features, window.labels, dataclasses.replace(base_cfg, **overrides), clock)
    seconds = clock() - t0
    return WindowScore(method, window.name, dict(params), float(res.val_accuracy),
                       accuracy(head, res.state_dict, nxt), float(profile_seconds), float(seconds))


def compare_online(
    head: nn.Module,
    pairs: Sequence[tuple[Segment, Segment]],
    base_cfg: TrainConfig,
    offline_h: Mapping[str, float | int],
    trial_counts: Sequence[int],
    space: SearchSpace,
    seed: int,
    clock: Clock,
    progress: bool = True,
) -> list[WindowScore]:
    """Score the offline h and online profiling with each of ``trial_counts`` trials on every window pair.

    Window ``i`` is profiled with seed ``seed + i`` for every N, so the N-trial searches share their random
    start and differ only in how many model-guided trials follow.
    """
    out: list[WindowScore] = []
    for i, (window, nxt) in enumerate(pairs):
        out.append(score_params(head, window, nxt, offline_h, base_cfg, clock, "offline", 0.0))
        for n in trial_counts:
            prof = online_profile(head, window, base_cfg, space, n, seed + i, clock, progress)
            out.append(score_params(head, window, nxt, prof.params, base_cfg, clock, f"online{n}", prof.seconds))
    return out


def summarize(scores: Sequence[WindowScore]) -> dict[str, dict[str, float]]:
    """Return per method the means over windows of the scores and costs."""
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(s.method for s in scores):
        rows = [s for s in scores if s.method == method]
        out[method] = {
            "windows": float(len(rows)),
            "next_accuracy": float(np.mean([s.next_accuracy for s in rows])),
            "val_accuracy": float(np.mean([s.val_accuracy for s in rows])),
            "profile_seconds": float(np.mean([s.profile_seconds for s in rows])),
            "train_seconds": float(np.mean([s.train_seconds for s in rows])),
        }
    return out
