"""EdgeSync accuracy bank, Eq. 5: a bounded FIFO of an edge's recent correctness bits, in segments.

For each labelled sample the cloud records one bit, ``edge prediction == teacher label``. The bank ``W``
keeps the newest n bits (paper: n = 90) and splits them into m contiguous segments of length l = n/m
(paper: m = 10, l = 9). ``wa_i`` is the accuracy of segment i, **i = 0 the newest**. The paper's printed
index range for the segments is garbled; here segment i holds the bits at positions ``[i·l, (i+1)·l)``
counted from the newest bit, so the segmentation slides with every new bit.

Before the bank is full only *complete* segments are reported: with ``len(bank) = L`` there are
``L // l`` segments, the newest ones; the ``L mod l`` oldest bits wait until a full segment exists. A bank
with fewer than l bits has no segments, and :attr:`AccuracyBank.recent_accuracy` is ``None`` while the bank
is empty, so nothing ever divides by zero. Eq. 4 (:mod:`edgesync_ros.core.scheduling`) turns the segment
accuracies into an urgency.

Storage is a fixed-size uint8 array kept newest-first and zero-padded, so the scheduler can stack many
banks into one matrix and score a fleet in one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from edgesync_ros.core.config import BankConfig
from edgesync_ros.core.errors import ConfigError, InvalidInputError

_FORMAT = "edgesync.accuracy_bank/1"


class AccuracyBank:
    """Eq. 5 bounded FIFO of correctness bits for one edge, split into equal segments (index 0 = newest)."""

    __slots__ = ("_cfg", "_buf", "_count", "_total")

    def __init__(self, capacity: int = 90, segments: int = 10) -> None:
        """Create an empty bank of ``capacity`` bits in ``segments`` segments (ConfigError if invalid)."""
        self._cfg = BankConfig(capacity=capacity, segments=segments)
        # Newest bit at index 0; positions >= _count are zero padding.
        self._buf: npt.NDArray[np.uint8] = np.zeros(capacity, dtype=np.uint8)
        self._count = 0
        self._total = 0

    @classmethod
    def from_config(cls, cfg: BankConfig) -> AccuracyBank:
        """Create an empty bank with the geometry of ``cfg``."""
        return cls(capacity=cfg.capacity, segments=cfg.segments)

    @property
    def capacity(self) -> int:
        """Return n, the most bits the bank keeps."""
        return self._cfg.capacity

    @property
    def segments(self) -> int:
        """Return m, the number of segments of a full bank."""
        return self._cfg.segments

    @property
    def segment_length(self) -> int:
        """Return l = n/m, the bits per segment."""
        return self._cfg.segment_length

    @property
    def total_seen(self) -> int:
        """Return how many bits were ever added (including those that fell out of the FIFO)."""
        return self._total

    @property
    def is_full(self) -> bool:
        """Return whether the bank holds ``capacity`` bits."""
        return self._count == self._cfg.capacity

    def __len__(self) -> int:
        """Return the number of bits held now (at most ``capacity``)."""
        return self._count

    def __repr__(self) -> str:
        """Describe the bank's geometry and fill level."""
        return (
            f"AccuracyBank(capacity={self.capacity}, segments={self.segments}, len={self._count}, "
            f"total_seen={self._total})"
        )

    def append(self, correct: bool | int) -> None:
        """Add one correctness bit (newest)."""
        self.extend((correct,))

    def extend(self, bits: Iterable[bool | int] | npt.NDArray[np.generic]) -> None:
        """Add correctness bits in arrival order (the last one is the newest).

        Accepts bools or 0/1 integers; anything else raises InvalidInputError and leaves the bank unchanged.
        """
        arr = bits if isinstance(bits, np.ndarray) else np.asarray(list(bits))
        if arr.ndim != 1:
            raise InvalidInputError(f"bits must be 1-D, got shape {arr.shape}")
        k = int(arr.shape[0])
        if k == 0:
            return
        if arr.dtype != np.bool_:
            if not np.issubdtype(arr.dtype, np.integer) or ((arr != 0) & (arr != 1)).any():
                raise InvalidInputError("bits must be booleans or 0/1 integers")
        new = arr.astype(np.uint8)[::-1]  # newest first
        cap = self._cfg.capacity
        if k >= cap:
            self._buf[:] = new[:cap]
        else:
            # Shift the old bits towards the old end (copy: source and destination overlap).
            self._buf[k:] = self._buf[: cap - k].copy()
            self._buf[:k] = new
        self._count = min(cap, self._count + k)
        self._total += k

    def clear(self) -> None:
        """Forget all bits (``total_seen`` is kept: it counts the edge's whole history)."""
        self._buf[:] = 0
        self._count = 0

    def bits(self) -> npt.NDArray[np.uint8]:
        """Return a copy of the bits held, newest first."""
        return self._buf[: self._count].copy()

    def padded_bits(self) -> npt.NDArray[np.uint8]:
        """Return a read-only view of the bits, newest first, zero-padded to ``capacity`` (for batching)."""
        view = self._buf.view()
        view.flags.writeable = False
        return view

    def complete_segments(self) -> int:
        """Return how many complete segments the bank holds (``len // l``, at most m)."""
        return self._count // self._cfg.segment_length

    def segment_accuracies(self) -> npt.NDArray[np.float64]:
        """Return Eq. 5 ``wa_i`` for the complete segments, index 0 = newest segment.

        The array has ``len(self) // l`` entries (empty while fewer than l bits are held).
        """
        s = self.complete_segments()
        seg_len = self._cfg.segment_length
        if s == 0:
            return np.zeros(0, dtype=np.float64)
        return self._buf[: s * seg_len].reshape(s, seg_len).mean(axis=1, dtype=np.float64)

    @property
    def recent_accuracy(self) -> float | None:
        """Return the accuracy over all bits held (the last ≤ n labels), or ``None`` while empty."""
        if self._count == 0:
            return None
        return float(self._buf[: self._count].mean(dtype=np.float64))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe snapshot: geometry, bits in arrival order (oldest first), total seen."""
        return {
            "format": _FORMAT,
            "capacity": self.capacity,
            "segments": self.segments,
            "bits": [int(b) for b in self._buf[: self._count][::-1]],
            "total_seen": self._total,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyBank:
        """Rebuild a bank from :meth:`to_dict` output; ConfigError when the snapshot is malformed."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"accuracy bank snapshot must be a mapping, got {type(data).__name__}")
        if data.get("format") != _FORMAT:
            raise ConfigError(f"accuracy bank snapshot has format {data.get('format')!r}, expected {_FORMAT!r}")
        missing = [k for k in ("capacity", "segments", "bits", "total_seen") if k not in data]
        if missing:
            raise ConfigError(f"accuracy bank snapshot lacks {', '.join(missing)}")
        bank = cls(capacity=data["capacity"], segments=data["segments"])
        bits = data["bits"]
        if not isinstance(bits, list) or len(bits) > bank.capacity:
            raise ConfigError(f"accuracy bank snapshot 'bits' must be a list of at most {bank.capacity} bits")
        if any(isinstance(b, bool) or b not in (0, 1) for b in bits):
            raise ConfigError("accuracy bank snapshot 'bits' must hold only 0 and 1")
        total = data["total_seen"]
        if isinstance(total, bool) or not isinstance(total, int) or total < len(bits):
            raise ConfigError(f"accuracy bank snapshot 'total_seen' must be an int >= {len(bits)}, got {total!r}")
        bank.extend(np.asarray(bits, dtype=np.uint8))
        bank._total = total
        return bank
