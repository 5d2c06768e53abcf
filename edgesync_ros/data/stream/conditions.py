"""Image conditions of a stream frame: ``clean``, our own ``night`` op and corrupt-tta's ImageNet-C corruptions.

A condition is applied to one clean BGR frame with a seed of its own (:func:`apply_condition`), so a frame's
pixels depend only on its seed words, never on which process renders it or in which order.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from edgesync_ros.core.errors import ConfigError, EdgeSyncError

#: Condition names that are not corrupt-tta corruptions.
CLEAN = "clean"
NIGHT = "night"

#: Night op per severity: (gain, gamma, desaturation, sensor noise sigma in [0, 1] units). Calibrated on the
#: packaged evaluation clips with the NanoDet teacher so that object recall falls with severity and the teacher
#: still sees most objects at 4 (adaptation on its labels can then help).
NIGHT_LEVELS: dict[int, tuple[float, float, float, float]] = {
    1: (0.72, 1.20, 0.15, 0.004),
    2: (0.58, 1.35, 0.25, 0.005),
    3: (0.46, 1.50, 0.35, 0.006),
    4: (0.34, 1.70, 0.40, 0.008),
    5: (0.24, 2.00, 0.45, 0.010),
}
# Night light is bluish: BGR channel gains applied after darkening.
_NIGHT_TINT_BGR = np.array([1.12, 1.0, 0.86], np.float32)


def corruption_names() -> tuple[str, ...]:
    """Return every condition name a spec may use: ``clean``, ``night`` and corrupt-tta's 19 corruptions."""
    from corrupt_tta import corruption_dict  # imported lazily: it pulls in scipy and scikit-image

    return (CLEAN, NIGHT, *sorted(corruption_dict))


def night(frame_bgr: npt.NDArray[np.uint8], severity: int, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Darken a BGR frame into dusk (severity 1-2) or night (3-5).

    Gamma > 1 crushes shadows more than highlights (lit objects survive longer than the scene), the gain lowers
    the exposure, partial desaturation and a blue tint mimic low-light colour, and faint per-pixel luminance
    noise mimics a sensor at high gain. corrupt-tta's ``brightness`` only brightens, hence this op.
    """
    if severity not in NIGHT_LEVELS:
        raise ConfigError(f"night severity must be 1..5, got {severity!r}")
    gain, gamma, desat, sigma = NIGHT_LEVELS[severity]
    x = np.power(frame_bgr.astype(np.float32) * (1.0 / 255.0), gamma) * gain
    gray = x.mean(axis=2, keepdims=True)
    x = (1.0 - desat) * x + desat * gray
    x *= _NIGHT_TINT_BGR
    x += rng.normal(0.0, sigma, x.shape[:2]).astype(np.float32)[..., None]
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def apply_condition(
    frame_bgr: npt.NDArray[np.uint8], condition: str, severity: int, seed_words: Sequence[int]
) -> npt.NDArray[np.uint8]:
    """Return ``frame_bgr`` under ``condition`` at ``severity``, seeded only by ``seed_words``.

    corrupt-tta draws from NumPy's global random state (and works in RGB): the state is seeded from
    ``seed_words`` for the call and restored afterwards, so callers' random streams are untouched.
    """
    if condition == CLEAN:
        return frame_bgr
    seq = np.random.SeedSequence([int(w) for w in seed_words])
    if condition == NIGHT:
        return night(frame_bgr, severity, np.random.default_rng(seq))
    from corrupt_tta import corruption_dict  # imported lazily: it pulls in scipy and scikit-image

    try:
        fn = corruption_dict[condition]
    except KeyError as exc:
        raise ConfigError(f"unknown condition {condition!r}; known: {', '.join(corruption_names())}") from exc
    saved = np.random.get_state()
    try:
        np.random.seed(int(seq.generate_state(1)[0]))
        out = fn(np.ascontiguousarray(frame_bgr[..., ::-1]), int(severity))
    finally:
        np.random.set_state(saved)
    out = np.clip(np.rint(np.asarray(out, np.float32)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out[..., ::-1])


def render_frame(
    clean_bgr: npt.NDArray[np.uint8], condition: str, severity: int, seed_words: Sequence[int], jpeg_quality: int
) -> bytes:
    """Apply the condition and encode as baseline JPEG (what a stream frame's bytes are)."""
    img = apply_condition(clean_bgr, condition, severity, seed_words)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:  # pragma: no cover - OpenCV only fails here for empty images, which validation excludes
        raise EdgeSyncError(f"JPEG encoding failed for a {img.shape} frame")
    return buf.tobytes()
