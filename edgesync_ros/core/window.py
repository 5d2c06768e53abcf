"""The edge's sample window: frames sampled at a fixed rate, cached until the window is full, then filtered.

The paper caches samples "over a window" and uploads the top-k% by quality (Algorithm 1, see
:mod:`edgesync_ros.core.filtering`). Here a window is ``window_size`` *frames* taken from the camera at
``sample_interval_s`` (the paper samples 2 frames/s) by capture stamp, so the upload rate does not depend on the
camera's frame rate. Each frame carries one sample (whole-frame mode) or one per region (region mode); a sample's
age for Eq. 2 is the number of window frames newer than its frame (0 = newest frame), so ``temperature`` is in frames.

Memory is bounded: at most ``window_size`` frames are held; :meth:`SampleWindow.drain` empties the window.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from edgesync_ros.core.config import FilterConfig
from edgesync_ros.core.errors import ConfigError, InvalidInputError
from edgesync_ros.core.filtering import select_samples


@dataclasses.dataclass(frozen=True)
class WindowFrame:
    """One sampled frame with its samples: xyxy ``boxes`` [K, 4] and the edge's softmax ``probabilities`` [K, C]."""

    stamp_s: float
    frame: npt.NDArray[np.uint8]
    boxes: npt.NDArray[np.float32]
    probabilities: npt.NDArray[np.float32]
    meta: Any = None  # opaque to the core (the node keeps the image header here)


@dataclasses.dataclass(frozen=True)
class SelectedSample:
    """A sample kept by Algorithm 1, with where it came from.

    ``frame_index`` points into :attr:`WindowSelection.frames`; ``position`` is the sample's index among all samples
    the window held (frames oldest first, each frame's samples in box order), so a caller can map the selection back
    to its own sample records without reading boxes.
    """

    frame_index: int
    position: int
    box: tuple[float, float, float, float]
    predicted_class: int
    probabilities: npt.NDArray[np.float32]
    adaptability: float
    timeliness: float
    quality: float


@dataclasses.dataclass(frozen=True)
class WindowSelection:
    """The upload of one window: each frame holding a kept sample once, and the kept samples."""

    frames: list[WindowFrame]
    samples: list[SelectedSample]
    window_samples: int


class SampleWindow:
    """Bounded cache of sampled frames; :meth:`drain` runs Algorithm 1 over the full window."""

    def __init__(self, window_size: int, sample_interval_s: float) -> None:
        """Hold up to ``window_size`` frames, accepting at most one per ``sample_interval_s`` of capture time."""
        if window_size < 1:
            raise ConfigError(f"window_size must be >= 1, got {window_size}")
        if sample_interval_s < 0:
            raise ConfigError(f"sample_interval_s must be >= 0, got {sample_interval_s}")
        self.window_size = int(window_size)
        self.sample_interval_s = float(sample_interval_s)
        self._frames: list[WindowFrame] = []
        self._last_stamp: float | None = None

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def full(self) -> bool:
        """Whether the window holds ``window_size`` frames."""
        return len(self._frames) >= self.window_size

    @property
    def buffered_samples(self) -> int:
        """Samples (regions) held now."""
        return sum(int(f.boxes.shape[0]) for f in self._frames)

    def resize(self, window_size: int) -> None:
        """Change the window length; frames beyond a smaller size are dropped oldest first."""
        if window_size < 1:
            raise ConfigError(f"window_size must be >= 1, got {window_size}")
        self.window_size = int(window_size)
        del self._frames[: max(0, len(self._frames) - self.window_size)]

    def due(self, stamp_s: float) -> bool:
        """Whether a frame captured at ``stamp_s`` should be sampled (rate limit by capture time).

        A stamp earlier than the last sampled one (a replayed bag looping, a camera restart) restarts the clock.
        """
        if self._last_stamp is None or stamp_s < self._last_stamp:
            return True
        return stamp_s - self._last_stamp >= self.sample_interval_s - 1e-9

    def offer(self, item: WindowFrame) -> bool:
        """Add a frame if it is due and has samples; return whether it was taken. Oldest frames fall out."""
        if item.boxes.ndim != 2 or item.boxes.shape[1] != 4:
            raise InvalidInputError(f"boxes must be [K, 4], got {item.boxes.shape}")
        if item.probabilities.shape[0] != item.boxes.shape[0]:
            raise InvalidInputError(
                f"{item.probabilities.shape[0]} probability rows for {item.boxes.shape[0]} boxes"
            )
        if not self.due(item.stamp_s) or item.boxes.shape[0] == 0:
            return False
        self._last_stamp = item.stamp_s
        self._frames.append(item)
        del self._frames[: max(0, len(self._frames) - self.window_size)]
        return True

    def drain(self, cfg: FilterConfig) -> WindowSelection:
        """Select the top ``ceil(k·n)`` samples of the window (Algorithm 1) and empty the window."""
        frames, self._frames = self._frames, []
        if not frames:
            return WindowSelection([], [], 0)
        n_frames = len(frames)
        probs = np.concatenate([f.probabilities for f in frames]).astype(np.float32, copy=False)
        boxes = np.concatenate([f.boxes for f in frames])
        owner = np.concatenate([np.full(f.boxes.shape[0], i, np.int64) for i, f in enumerate(frames)])
        ages = (n_frames - 1 - owner).astype(np.float64)
        result = select_samples(probs, ages, cfg)
        kept_frames = sorted(set(owner[result.indices].tolist()))
        remap = {old: new for new, old in enumerate(kept_frames)}
        samples = [
            SelectedSample(
                frame_index=remap[int(owner[i])],
                position=int(i),
                box=(float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])),
                predicted_class=int(probs[i].argmax()),
                probabilities=probs[i],
                adaptability=float(result.adaptability[i]),
                timeliness=float(result.timeliness[i]),
                quality=float(result.quality[i]),
            )
            for i in result.indices
        ]
        return WindowSelection([frames[i] for i in kept_frames], samples, int(probs.shape[0]))
