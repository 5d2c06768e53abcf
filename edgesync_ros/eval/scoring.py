"""The evaluation's scoring rule: which labels a prediction is compared with, and which predictions count.

One rule for every method, so that paired comparisons are made on the very same samples:

* **Reference labels.** The headline compares each prediction with the labels the method trains on (the paper's
  protocol, §IV-B1: edge predictions against the teacher's labels of the same frames). A method fed by the deployed
  teacher (NanoDet on the corrupted frame, ``label_source="teacher"``) is scored against that teacher; a robust
  teacher method (``label_source="clean"``) against the clean-view labels. Methods that never train are scored like
  the deployed-teacher methods. Every run also reports the other reference as a further *view*.
* **No repeated frames in the headline.** A prediction on footage its camera showed before
  (:func:`repeated_frames`, :class:`~edgesync_ros.core.config.ScoringConfig`) is scored separately as a *repeat*
  and left out of the headline, whatever the method did: an online learner that uploaded and trained on a frame
  minutes ago would otherwise be scored on a copy of its training data. The rule depends only on the stream, never
  on a method's uploads, so every method is scored on the same fresh samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edgesync_ros.core.config import ScoringConfig
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.eval.features import CameraFeatures

#: Label sources a method can train on, and the label array of :class:`CameraFeatures` each one means.
REFERENCES = {"teacher": "teacher", "clean": "gt"}


def balanced_accuracy(ref: npt.NDArray[np.int64], pred: npt.NDArray[np.int64]) -> float:
    """Return the mean recall over the classes present in ``ref`` (macro over classes seen; NaN when empty)."""
    classes = np.unique(ref)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([(pred[ref == c] == c).mean() for c in classes]))


def accuracy(ref: npt.NDArray[np.int64], pred: npt.NDArray[np.int64]) -> float:
    """Return the share of predictions equal to ``ref`` (NaN when empty)."""
    return float((ref == pred).mean()) if ref.size else float("nan")


def repeated_frames(
    clip: npt.NDArray[np.int64], source_frame: npt.NDArray[np.int64], block: int = 1
) -> npt.NDArray[np.bool_]:
    """Return, per frame of one camera (in capture order), whether its camera showed this footage before.

    A frame is a repeat when an earlier frame of the camera showed the identical ``(clip, source_frame)``, or when
    it returns to a ``block`` of consecutive source frames of the clip that the camera showed before instead of
    playing on from the clip's last shown frame (a forward step of less than ``block`` frames is playing on, even
    after other clips were shown in between). ``block=1`` is the exact-frame rule.
    """
    if block < 1:
        raise ConfigError(f"repeat block must be >= 1 source frame, got {block}")
    n = int(clip.shape[0])
    if source_frame.shape[0] != n:
        raise ConfigError("clip and source_frame must have one entry per frame")
    seen_frames: set[tuple[int, int]] = set()
    seen_blocks: set[tuple[int, int]] = set()
    last: dict[int, int] = {}
    out = np.zeros(n, np.bool_)
    for f in range(n):
        c, sf = int(clip[f]), int(source_frame[f])
        prev = last.get(c)
        plays_on = prev is not None and 0 < sf - prev < block
        out[f] = (c, sf) in seen_frames or ((c, sf // block) in seen_blocks and not plays_on)
        seen_frames.add((c, sf))
        seen_blocks.add((c, sf // block))
        last[c] = sf
    return out


def fresh_samples(cf: CameraFeatures, scoring: ScoringConfig | None = None) -> npt.NDArray[np.bool_]:
    """Return, per sample of a camera, whether it counts in the headline (its frame is not a repeat)."""
    cfg = scoring or ScoringConfig()
    repeat = repeated_frames(cf.clip, cf.source_frame, cfg.repeat_block_frames)
    return ~repeat[cf.frame]


def reference(cf: CameraFeatures, label_source: str) -> npt.NDArray[np.int64]:
    """Return the labels a method with ``label_source`` is scored against (the ones it trains on)."""
    if label_source not in REFERENCES:
        raise ConfigError(f"label source must be one of {', '.join(REFERENCES)}, got {label_source!r}")
    labels: npt.NDArray[np.int64] = getattr(cf, REFERENCES[label_source])
    return labels


def score(ref: npt.NDArray[np.int64], pred: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Return accuracy, balanced accuracy and the sample count of ``pred`` against ``ref``."""
    return {"accuracy": accuracy(ref, pred), "balanced_accuracy": balanced_accuracy(ref, pred),
            "samples": int(ref.size)}  # fmt: skip
