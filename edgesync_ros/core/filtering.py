"""EdgeSync sample filtering: Eq. 1 adaptability, Eq. 2 timeliness, Eq. 3 quality, Algorithm 1 top-k.

The edge scores every sample of a window and uploads only the best fraction k for labelling and training.

How the paper's printed equations are read here (each literal form stays selectable where it matters):

* **Eq. 1 (adaptability)** is printed as ``-f(y|x)·log f(y|x)`` without a sum over classes, which would be a
  per-class quantity rather than a score per sample. We use the Shannon entropy of the edge model's softmax,
  ``E(x) = -Σ_c p_c log p_c`` (natural log, 0·log 0 = 0): the model's uncertainty, the quantity the text
  describes. ``normalise_entropy`` divides by ``log C`` so that E lies in [0, 1] (C = 1 gives E = 0).
* **Eq. 2 (timeliness)** is printed as ``I(i) = 1/(1+exp(-i/T))`` with ``i`` the sample's age (0 = newest).
  That *rises* with age, from 0.5 to 1, contradicting the text, which prioritises samples close to the
  current time. The default is the intended decay ``I(i) = 2/(1+exp(i/T))`` = ``2·σ(-i/T)``: 1 for the
  newest sample, 2/(1+e) ≈ 0.54 at i = T, → 0 for old samples — the printed sigmoid mirrored and rescaled,
  so T keeps its meaning as the age scale. ``timeliness_form="paper_literal"`` gives the printed form.
* **Eq. 3 (quality)** ``Q = α·E + β·I`` with α = β = 1 by default (see :class:`FilterConfig` for what the
  weights mean with and without normalised entropy).
* **Algorithm 1** keeps the top ``ceil(k·n)`` samples of a window of n by Q (k = 0.7 in the paper). The
  paper gives no tie rule; ties are broken towards newer samples (smaller age), then towards higher entropy
  (so that with α = 0 a more uncertain sample of the same age still wins), then towards later arrival.
  ``ceil(k·n)`` is taken after rounding k·n to 9 decimals, so float noise cannot add a sample: k = 0.07,
  n = 100 keeps 7, not the 8 that ``0.07*100 = 7.000000000000001`` would give (and k = 0.1, n = 10 keeps 1,
  although the binary value of 0.1 is slightly above one tenth). Indices come back in arrival
  (ascending) order so that the upload preserves the stream order.

Everything is vectorised numpy; a 10,000-sample window is scored and selected in about a millisecond.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from edgesync_ros.core.config import FilterConfig, TimelinessForm
from edgesync_ros.core.errors import InvalidInputError

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

# Softmax rows from float32 models sum to 1 within ~1e-6; anything far off is not a probability vector.
_ROW_SUM_TOLERANCE = 1e-3
# exp() overflows float64 beyond ~709; ages far beyond 700·T have timeliness 0 anyway.
_EXP_CLIP = 700.0


@dataclasses.dataclass(frozen=True)
class SelectionResult:
    """Outcome of Algorithm 1 on one window.

    ``indices`` are the kept samples' positions in the input, ascending (arrival order). The score arrays
    cover *every* input sample (length n), so ``quality[indices]`` are the kept samples' scores.
    """

    indices: IndexArray
    adaptability: FloatArray
    timeliness: FloatArray
    quality: FloatArray


def adaptability(probabilities: npt.ArrayLike, normalise: bool = False) -> FloatArray:
    """Return Eq. 1 adaptability: the Shannon entropy (nats) of each softmax row, shape [N].

    ``probabilities`` is [N, C] with non-negative rows summing to 1. With ``normalise`` the entropy is
    divided by ``log C`` (so it lies in [0, 1]; for C = 1 it is 0). Raises InvalidInputError otherwise.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise InvalidInputError(f"probabilities must be 2-D [N, C], got shape {p.shape}")
    n, c = p.shape
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    if c == 0:
        raise InvalidInputError("probabilities must have at least one class column")
    if not np.isfinite(p).all():
        raise InvalidInputError("probabilities contain NaN or infinity")
    if (p < 0.0).any():
        raise InvalidInputError("probabilities must be non-negative")
    sums = p.sum(axis=1)
    if np.abs(sums - 1.0).max() > _ROW_SUM_TOLERANCE:
        raise InvalidInputError(
            f"probability rows must sum to 1 (±{_ROW_SUM_TOLERANCE}); max error {float(np.abs(sums - 1.0).max()):.3g}"
        )
    # 0·log 0 = 0: replace zeros by 1 inside the log (log 1 = 0) instead of producing -inf·0 = NaN.
    ent = -(p * np.log(np.where(p > 0.0, p, 1.0))).sum(axis=1)
    np.maximum(ent, 0.0, out=ent)  # rounding can give -1e-17 for one-hot rows
    if normalise:
        if c == 1:
            return np.zeros(n, dtype=np.float64)
        ent /= math.log(c)
    return ent


def timeliness(ages: npt.ArrayLike, temperature: float, form: TimelinessForm = "decay") -> FloatArray:
    """Return Eq. 2 timeliness I(i) for each age i (0 = newest), shape [N].

    ``form="decay"`` (default): ``I(i) = 2/(1+exp(i/T))``, 1 at i = 0, decreasing to 0.
    ``form="paper_literal"``: ``I(i) = 1/(1+exp(-i/T))`` as printed, 0.5 at i = 0, increasing to 1.
    Ages are non-negative and in the unit of T (samples by default). Raises InvalidInputError otherwise.
    """
    a = np.asarray(ages, dtype=np.float64)
    if a.ndim != 1:
        raise InvalidInputError(f"ages must be 1-D [N], got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0.0).any():
        raise InvalidInputError("ages must be finite and >= 0 (0 = newest)")
    if not (math.isfinite(temperature) and temperature > 0.0):
        raise InvalidInputError(f"temperature must be finite and > 0, got {temperature}")
    x = a / temperature
    if form == "decay":
        return 2.0 / (1.0 + np.exp(np.minimum(x, _EXP_CLIP)))
    if form == "paper_literal":
        return 1.0 / (1.0 + np.exp(-np.minimum(x, _EXP_CLIP)))  # clipped: no underflow warnings
    raise InvalidInputError(f"unknown timeliness form {form!r}")


def quality(adapt: FloatArray, timely: FloatArray, alpha: float, beta: float) -> FloatArray:
    """Return Eq. 3 quality ``Q = α·E + β·I`` elementwise."""
    if adapt.shape != timely.shape:
        raise InvalidInputError(f"adaptability {adapt.shape} and timeliness {timely.shape} differ in shape")
    return alpha * adapt + beta * timely


def keep_count(n: int, upload_fraction: float) -> int:
    """Return ``ceil(k·n)``, the number of samples Algorithm 1 keeps from a window of ``n``.

    k·n is rounded to 9 decimals first: k is meant as the decimal the user wrote, and float noise in
    ``k*n`` (``0.07*100 = 7.000000000000001``) must not add a sample.
    """
    if n < 0:
        raise InvalidInputError(f"window size must be >= 0, got {n}")
    return min(n, math.ceil(round(upload_fraction * n, 9)))


def select_samples(probabilities: npt.ArrayLike, ages: npt.ArrayLike, cfg: FilterConfig) -> SelectionResult:
    """Run Algorithm 1 on one window: score every sample (Eq. 1–3) and keep the top ``ceil(k·n)`` by Q.

    ``probabilities`` is the edge model's softmax [N, C], ``ages`` the samples' ages [N] (0 = newest), both
    in arrival order. Ties in Q go to the newer sample, then the higher-entropy one, then the later arrival.
    Returns the kept indices ascending (arrival order) and the scores of all N samples.
    """
    adapt = adaptability(probabilities, normalise=cfg.normalise_entropy)
    timely = timeliness(ages, cfg.effective_temperature, cfg.timeliness_form)
    if adapt.shape != timely.shape:
        raise InvalidInputError(f"{adapt.shape[0]} probability rows but {timely.shape[0]} ages")
    q = quality(adapt, timely, cfg.alpha, cfg.beta)
    n = q.shape[0]
    m = keep_count(n, cfg.upload_fraction)
    if m == n:
        idx = np.arange(n, dtype=np.int64)
    elif m == 0:
        idx = np.zeros(0, dtype=np.int64)
    else:
        # O(n) instead of a full sort: everything strictly above the m-th largest Q is kept; only the
        # samples tied with it go through the tie rule (age ascending, entropy descending, arrival
        # descending; np.lexsort sorts by its LAST key first).
        threshold = np.partition(q, n - m)[n - m]
        above = np.flatnonzero(q > threshold)
        tied = np.flatnonzero(q == threshold)
        need = m - above.shape[0]
        if need < tied.shape[0]:
            ages_tied = np.asarray(ages, dtype=np.float64)[tied]
            tied = tied[np.lexsort((-tied, -adapt[tied], ages_tied))[:need]]
        idx = np.sort(np.concatenate([above, tied])).astype(np.int64, copy=False)
    return SelectionResult(indices=idx, adaptability=adapt, timeliness=timely, quality=q)
