"""Hyperparameters h for Algorithm 2: offline Bayesian optimisation and the online-profiling comparison.

**Offline (the paper's procedure).** The objective of a configuration h = (lr, momentum, weight decay
[, batch size]) is the best validation accuracy :func:`~edgesync_ros.core.training.train_head` reaches on a
segment of labelled backbone features. It is maximised with ``skopt.gp_minimize(acq_func="EI")`` (Gaussian
process surrogate, expected improvement) over lr (log-uniform), momentum (uniform), weight decay
(log-uniform) and, optionally, a batch size from a list:

1. per-video search: one GP-EI search on each video's data;
2. ``h0`` = the mean of the per-video optima, taken in the search space's own scale (geometric mean for the
   log-uniform lr and weight decay, arithmetic for momentum, the listed batch size nearest the geometric mean);
3. refinement rounds: each round draws segments from all videos at random, mixes them into one segment,
   scores the current h on it and runs a GP-EI search seeded with h; the round's best replaces h when
   better. Rounds stop once the improvement of a round is below ``threshold`` (or after ``max_rounds``).

:func:`offline_hpo` returns the result; :mod:`edgesync_ros.hpo` writes it, with its provenance, as a ROS 2
parameters file.

**Online profiling (for the paper's Fig. 4).** Systems such as Ekya profile candidate configurations on each
new window instead of relying on an offline h. The paper's comparison used TPE (Hyperopt); scikit-optimize
has no TPE, so :func:`online_profile` uses ``skopt.forest_minimize`` (sequential model-based optimisation
with an extra-trees surrogate and EI — the closest tree-based analogue of TPE) with the same trial budget
per window, and reports the clock time the profiling costs.

Randomness comes from ``seed`` (skopt's ``random_state``, the trainer's seed and a ``numpy`` Generator for
mixing), time from an injected ``clock``; equal seeds and a deterministic clock give equal results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.errors import ConfigError, InsufficientDataError
from edgesync_ros.core.training import Clock, train_head


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Bounds of the search: lr and weight decay log-uniform, momentum uniform, optional batch sizes."""

    lr: tuple[float, float] = (1e-4, 0.3)
    momentum: tuple[float, float] = (0.0, 0.99)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    batch_sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        """Validate the bounds."""
        for name in ("lr", "weight_decay"):
            lo, hi = getattr(self, name)
            if not (0.0 < lo < hi and math.isfinite(hi)):
                raise ConfigError(f"SearchSpace.{name} must be (low, high) with 0 < low < high, got {(lo, hi)}")
        lo, hi = self.momentum
        if not 0.0 <= lo < hi < 1.0:
            raise ConfigError(f"SearchSpace.momentum must be (low, high) with 0 <= low < high < 1, got {(lo, hi)}")
        if self.batch_sizes is not None:
            sizes = tuple(self.batch_sizes)
            if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
                raise ConfigError(f"SearchSpace.batch_sizes must be positive integers, got {self.batch_sizes!r}")
            object.__setattr__(self, "batch_sizes", tuple(sorted(set(sizes))))

    def dimensions(self) -> list[Any]:
        """Return the skopt dimensions, in the order of :meth:`names`."""
        from skopt.space import Categorical, Real

        dims: list[Any] = [
            Real(*self.lr, prior="log-uniform", name="lr"),
            Real(*self.momentum, prior="uniform", name="momentum"),
            Real(*self.weight_decay, prior="log-uniform", name="weight_decay"),
        ]
        if self.batch_sizes is not None:
            dims.append(Categorical(list(self.batch_sizes), name="batch_size"))
        return dims

    def names(self) -> list[str]:
        """Return the hyperparameter names searched."""
        return ["lr", "momentum", "weight_decay"] + (["batch_size"] if self.batch_sizes is not None else [])

    def to_params(self, point: Sequence[Any]) -> dict[str, float | int]:
        """Convert an skopt point (numpy scalars) to a dict of plain Python floats/ints."""
        out: dict[str, float | int] = {}
        for name, value in zip(self.names(), point, strict=True):
            out[name] = int(value) if name == "batch_size" else float(value)
        return out

    def to_point(self, params: Mapping[str, float | int]) -> list[Any]:
        """Convert a params dict to an skopt point, clipped into the bounds."""
        point: list[Any] = [
            float(np.clip(params["lr"], *self.lr)),
            float(np.clip(params["momentum"], *self.momentum)),
            float(np.clip(params["weight_decay"], *self.weight_decay)),
        ]
        if self.batch_sizes is not None:
            point.append(int(params.get("batch_size", self.batch_sizes[0])))
        return point


@dataclasses.dataclass(frozen=True)
class Segment:
    """Labelled backbone features of one stretch of video: ``features`` [N, C, h, w], ``labels`` [N]."""

    name: str
    features: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        """Check features and labels agree in length."""
        if self.features.shape[0] != self.labels.shape[0]:
            raise InsufficientDataError(
                f"segment {self.name!r}: {self.features.shape[0]} feature rows but {self.labels.shape[0]} labels"
            )


@dataclasses.dataclass(frozen=True)
class Trial:
    """One evaluated configuration: where it ran (stage, round), its params, score and clock seconds."""

    stage: str
    round: int
    segment: str
    params: dict[str, float | int]
    score: float
    seconds: float


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Best params and score of one search, with its trials."""

    params: dict[str, float | int]
    score: float
    trials: tuple[Trial, ...]


@dataclasses.dataclass(frozen=True)
class HpoResult:
    """Outcome of :func:`offline_hpo`: the final h, its score on the last mixed segment, and every trial."""

    params: dict[str, float | int]
    score: float
    h0: dict[str, float | int]
    per_video: dict[str, SearchResult]
    rounds: int
    trials: tuple[Trial, ...]
    seed: int
    stop_reason: str


@dataclasses.dataclass(frozen=True)
class ProfileResult:
    """Outcome of :func:`online_profile` on one window: best params, score, trials and profiling seconds."""

    window: str
    params: dict[str, float | int]
    score: float
    trials: tuple[Trial, ...]
    seconds: float


def _train_cfg(base: TrainConfig, params: Mapping[str, float | int]) -> TrainConfig:
    overrides: dict[str, Any] = dict(params)
    return dataclasses.replace(base, **overrides)


def evaluate_params(
    head: nn.Module,
    segment: Segment,
    params: Mapping[str, float | int],
    base_cfg: TrainConfig,
    clock: Clock,
) -> float:
    """Return the objective: best validation accuracy of :func:`train_head` with ``params`` on ``segment``."""
    result = train_head(head, segment.features, segment.labels, _train_cfg(base_cfg, params), clock)
    return result.val_accuracy


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def _search(
    minimizer: Callable[..., Any],
    head: nn.Module,
    segment: Segment,
    space: SearchSpace,
    base_cfg: TrainConfig,
    n_calls: int,
    seed: int,
    clock: Clock,
    stage: str,
    round_index: int,
    x0: list[Any] | None,
    y0: float | None,
    progress: bool,
    **kwargs: Any,
) -> SearchResult:
    """Run one skopt search maximising validation accuracy; the record keeps every trial in order."""
    if n_calls < 1:
        raise ConfigError(f"n_calls must be >= 1, got {n_calls}")
    trials: list[Trial] = []
    # skopt refuses more random initial points than calls; at least one random point before the GP.
    n_initial = min(n_calls, max(1, int(kwargs.pop("n_initial_points", 5))))

    def objective(point: list[Any]) -> float:
        params = space.to_params(point)
        t0 = clock()
        score = evaluate_params(head, segment, params, base_cfg, clock)
        trials.append(Trial(stage, round_index, segment.name, params, score, clock() - t0))
        return -score  # skopt minimises

    from threadpoolctl import threadpool_limits

    bar = _progress(n_calls, f"hpo {stage} {segment.name}", progress)
    # The surrogate's matrices are tiny: multi-threaded BLAS only adds contention (about 5× slower on a
    # 2-core machine). This limits numpy/scipy's BLAS, not torch's own thread pool used by the trials.
    try:
        with threadpool_limits(1, user_api="blas"):
            res = minimizer(
                objective,
                space.dimensions(),
                n_calls=n_calls,
                n_initial_points=n_initial,
                random_state=seed,
                x0=[x0] if x0 is not None else None,
                y0=[-y0] if y0 is not None else None,
                # skopt stops a search when a callback returns True, and tqdm.update returns True whenever it
                # redraws: the callback must return None.
                callback=[lambda _res: None if bar.update(1) else None],
                **kwargs,
            )
    finally:
        bar.close()
    return SearchResult(params=space.to_params(res.x), score=float(-res.fun), trials=tuple(trials))


def search_segment(
    head: nn.Module,
    segment: Segment,
    base_cfg: TrainConfig,
    space: SearchSpace,
    n_calls: int,
    seed: int,
    clock: Clock,
    x0: Mapping[str, float | int] | None = None,
    y0: float | None = None,
    n_initial_points: int = 5,
    progress: bool = True,
    stage: str = "search",
    round_index: int = 0,
) -> SearchResult:
    """Maximise validation accuracy on one segment with ``gp_minimize(acq_func="EI")``.

    ``x0``/``y0`` seed the search with a known configuration and its score (no re-evaluation when ``y0``
    is given; ``n_calls`` then counts only new evaluations).
    """
    from skopt import gp_minimize

    return _search(
        gp_minimize,
        head,
        segment,
        space,
        base_cfg,
        n_calls,
        seed,
        clock,
        stage,
        round_index,
        space.to_point(x0) if x0 is not None else None,
        y0,
        progress,
        acq_func="EI",
        n_initial_points=n_initial_points,
    )


def mean_params(space: SearchSpace, params: Sequence[Mapping[str, float | int]]) -> dict[str, float | int]:
    """Return ``h0``: the mean of per-video optima in the search space's scale (log scale for log dims)."""
    if not params:
        raise ConfigError("mean_params needs at least one set of parameters")
    out: dict[str, float | int] = {
        "lr": float(math.exp(np.mean([math.log(p["lr"]) for p in params]))),
        "momentum": float(np.mean([p["momentum"] for p in params])),
        "weight_decay": float(math.exp(np.mean([math.log(p["weight_decay"]) for p in params]))),
    }
    if space.batch_sizes is not None:
        geo = math.exp(np.mean([math.log(p["batch_size"]) for p in params]))
        out["batch_size"] = int(min(space.batch_sizes, key=lambda b: (abs(math.log(b) - math.log(geo)), b)))
    return out


def _concat(name: str, parts: Sequence[Segment]) -> Segment:
    return Segment(name, torch.cat([p.features for p in parts]), torch.cat([p.labels for p in parts]))


def mix_segments(videos: Mapping[str, Sequence[Segment]], count: int, rng: np.random.Generator) -> Segment:
    """Return one segment mixing ``count`` segments drawn at random (without replacement) from all videos.

    The samples of the drawn segments are shuffled together (so the trainer's split mixes videos too).
    """
    pool = [seg for name in sorted(videos) for seg in videos[name]]
    if not pool:
        raise InsufficientDataError("no segments to mix")
    chosen_idx = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    chosen = [pool[int(i)] for i in sorted(chosen_idx)]
    merged = _concat("+".join(s.name for s in chosen), chosen)
    perm = torch.from_numpy(rng.permutation(merged.labels.shape[0]))
    return Segment(merged.name, merged.features[perm], merged.labels[perm])


def offline_hpo(
    head: nn.Module,
    videos: Mapping[str, Sequence[Segment]],
    base_cfg: TrainConfig,
    space: SearchSpace | None = None,
    calls_per_video: int = 20,
    calls_per_round: int = 15,
    mix_count: int = 4,
    threshold: float = 0.005,
    max_rounds: int = 5,
    seed: int = 0,
    clock: Clock | None = None,
    progress: bool = True,
    n_initial_points: int = 5,
) -> HpoResult:
    """Run the paper's offline search: per-video GP-EI → mean h0 → refine on mixed segments.

    ``videos`` maps a video name to its segments (features + labels). ``head`` is the initial head every
    trial starts from (never modified). Refinement rounds stop when a round improves the score of the
    current h on that round's mixed segment by less than ``threshold`` (accuracy, 0–1), or after
    ``max_rounds``. ``n_initial_points`` random configurations start each search before GP-EI takes over.
    ``clock`` is required (it bounds each trial's ``max_train_seconds``).
    """
    if clock is None:
        raise ConfigError("offline_hpo needs a clock (e.g. time.perf_counter)")
    if not videos or any(len(v) == 0 for v in videos.values()):
        raise InsufficientDataError("every video needs at least one segment")
    if max_rounds < 0 or mix_count < 1 or threshold < 0:
        raise ConfigError("max_rounds must be >= 0, mix_count >= 1 and threshold >= 0")
    space = space or SearchSpace()
    trials: list[Trial] = []
    per_video: dict[str, SearchResult] = {}
    for j, name in enumerate(sorted(videos)):
        res = search_segment(head, _concat(name, videos[name]), base_cfg, space, calls_per_video, seed + j, clock,
                             n_initial_points=n_initial_points, progress=progress, stage="per_video")
        per_video[name] = res
        trials.extend(res.trials)
    h = mean_params(space, [r.params for r in per_video.values()])
    h0 = dict(h)
    score = float(np.mean([r.score for r in per_video.values()]))
    rng = np.random.default_rng(seed)
    rounds = 0
    stop_reason = "max_rounds"
    for r in range(1, max_rounds + 1):
        mixed = mix_segments(videos, mix_count, rng)
        t0 = clock()
        current = evaluate_params(head, mixed, h, base_cfg, clock)
        trials.append(Trial("refine", r, mixed.name, dict(h), current, clock() - t0))
        res = search_segment(head, mixed, base_cfg, space, calls_per_round, seed + 1000 + r, clock, x0=h, y0=current,
                             n_initial_points=n_initial_points, progress=progress, stage="refine", round_index=r)
        trials.extend(res.trials)
        rounds = r
        improvement = res.score - current
        if improvement > 0:
            h = dict(res.params)
        score = max(res.score, current)
        if improvement < threshold:
            stop_reason = "converged"
            break
    return HpoResult(params=h, score=score, h0=h0, per_video=per_video, rounds=rounds, trials=tuple(trials),
                     seed=seed, stop_reason=stop_reason)


def online_profile(
    head: nn.Module,
    window: Segment,
    base_cfg: TrainConfig,
    space: SearchSpace | None = None,
    n_trials: int = 10,
    seed: int = 0,
    clock: Clock | None = None,
    progress: bool = True,
) -> ProfileResult:
    """Profile ``n_trials`` configurations on one window with ``skopt.forest_minimize`` (stand-in for TPE).

    Returns the best configuration for this window and the clock seconds the profiling took, which is the
    cost an online method pays per window and the offline h avoids.
    """
    if clock is None:
        raise ConfigError("online_profile needs a clock (e.g. time.perf_counter)")
    from skopt import forest_minimize

    space = space or SearchSpace()
    t0 = clock()
    res = _search(
        forest_minimize,
        head,
        window,
        space,
        base_cfg,
        n_trials,
        seed,
        clock,
        "online",
        0,
        None,
        None,
        progress,
        base_estimator="ET",
        acq_func="EI",
        n_initial_points=min(n_trials, 5),
    )
    return ProfileResult(window.name, res.params, res.score, res.trials, clock() - t0)
