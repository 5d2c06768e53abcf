"""Head zoo: every head the cloud trains, kept with a signature of its training data, to answer recurring drift.

Beyond the paper. Robots meet the same conditions again (night every evening, rain on many days); a head trained for
one of them the last time it occurred is often right again at once, long before a new training finishes. The zoo
keeps trained heads (bounded), each with a :class:`Signature` — the class histogram of its training labels and the
mean/spread of the globally pooled backbone features it saw — and, for a freshly labelled window, returns the stored
heads most likely to fit it:

1. **shortlist** (microseconds per head): signature distance (:func:`signature_distance`: cosine distance of the
   feature means plus the total-variation distance of the class histograms, weighted) against every stored head, in
   one matrix product; the ``shortlist`` nearest are kept;
2. **score** (milliseconds per head): the caller evaluates each shortlisted head on the window's cached features with
   the window's labels (``evaluate`` is injected, so this module stays free of model code) — the same measurement
   Algorithm 2's update gate uses.

Storage: an embedded SQLite index (one row per head: metadata, signature, use counts) and one tensor file per head,
written before its row is committed. SQLite's transactions make every add/evict atomic, so a SIGKILL leaves a
consistent zoo: on open, rows whose file is missing are dropped and files without a row are deleted. Eviction when
over ``capacity``: the head with the fewest hits, then the longest unused, goes first ("usefulness"). Pure apart from
the files it owns: time comes in as ``now_s``.
"""

from __future__ import annotations

import collections
import dataclasses
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from edgesync_ros.core.config import ZooConfig
from edgesync_ros.core.errors import StateError
from edgesync_ros.core.persist import TENSOR_SUFFIX, load_tensors, save_tensors

_SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    robot TEXT NOT NULL,
    version INTEGER NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    created_s REAL NOT NULL,
    last_used_s REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    samples INTEGER NOT NULL,
    val_accuracy REAL NOT NULL,
    hist BLOB NOT NULL,
    mean BLOB NOT NULL,
    std BLOB NOT NULL,
    file TEXT NOT NULL
)
"""


@dataclasses.dataclass(frozen=True, eq=False)
class Signature:
    """What a head was trained on, compactly: class histogram, pooled-feature mean and spread, sample count.

    ``hist`` sums to 1 (labels, or mean predicted probabilities for unlabelled samples); ``mean``/``std`` are per
    channel over the samples' globally average-pooled backbone features.
    """

    hist: npt.NDArray[np.float32]
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]
    count: int


def pooled(features: Tensor | npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Globally average-pool backbone features ``[N, C, h, w]`` (or pass ``[N, C]`` through) to ``[N, C]`` float32.

    NumPy, not torch: the cloud computes signatures on its dispatcher thread, which must not start a second OpenMP
    pool beside its worker's.
    """
    f = features.detach().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
    f = f.astype(np.float32, copy=False)
    return f.mean(axis=(2, 3)) if f.ndim == 4 else f.reshape(f.shape[0], -1)


def signature(features: Tensor | npt.NDArray[np.floating], num_classes: int,
              labels: Tensor | npt.ArrayLike | None = None,
              probabilities: Tensor | npt.ArrayLike | None = None) -> Signature:
    """The :class:`Signature` of samples given their backbone features and labels (or predicted probabilities).

    Raises :class:`~edgesync_ros.core.errors.StateError` for no samples or neither labels nor probabilities.
    """
    p = pooled(features)
    n = int(p.shape[0])
    if n == 0:
        raise StateError("a signature needs at least one sample")
    if labels is not None:
        lab = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
        hist = np.bincount(lab.astype(np.int64).reshape(-1), minlength=num_classes)[:num_classes].astype(np.float64)
    elif probabilities is not None:
        pr = probabilities.detach().cpu().numpy() if isinstance(probabilities, Tensor) else np.asarray(probabilities)
        hist = pr.astype(np.float64).reshape(n, -1)[:, :num_classes].sum(axis=0)
    else:
        raise StateError("a signature needs labels or predicted probabilities")
    hist = hist / max(float(hist.sum()), 1e-12)
    return Signature(hist.astype(np.float32), p.mean(axis=0).astype(np.float32), p.std(axis=0).astype(np.float32), n)


def _unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def signature_distance(a: Signature, b: Signature, hist_weight: float) -> float:
    """Distance of two signatures: ``(1 − cos(mean_a, mean_b)) + hist_weight · ½‖hist_a − hist_b‖₁``, in [0, 2+w]."""
    cos = float(np.dot(_unit(a.mean), _unit(b.mean)))
    return (1.0 - cos) + hist_weight * 0.5 * float(np.abs(a.hist - b.hist).sum())


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One stored head's row (without its tensors)."""

    id: int
    robot: str
    version: int
    tag: str
    created_s: float
    last_used_s: float
    hits: int
    samples: int
    val_accuracy: float


@dataclasses.dataclass(frozen=True)
class Selection:
    """What :meth:`HeadZoo.select` found for a window.

    ``best``: the shortlisted head that beat the current head by at least the margin (``None``: a miss), with its
    accuracy on the window (``accuracy``) against the current head's (``current_accuracy``); ``scored``: how many heads
    were evaluated; ``seconds``: wall time of the whole selection (shortlist + scoring).
    """

    best: ZooEntry | None
    accuracy: float
    current_accuracy: float
    scored: int
    seconds: float


class HeadZoo:
    """A bounded, crash-safe store of trained heads with signature search (see the module docstring).

    ``root`` holds ``zoo.sqlite`` and one safetensors file per head under ``heads/``. One writer at a time (the
    cloud node); any number of readers (Ray workers) may open the same directory.
    """

    def __init__(self, root: str | Path, cfg: ZooConfig) -> None:
        """Open (or create) the zoo under ``root`` and repair what a crash may have left half-done."""
        self.cfg = cfg
        self.root = Path(root)
        (self.root / "heads").mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.root / "zoo.sqlite"), timeout=10.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._db.commit()
        self.hits = 0
        self.misses = 0
        self.selection_seconds: collections.deque[float] = collections.deque(maxlen=100)  # the last selections
        # The heads loaded most recently stay in memory: a recurring condition shortlists the same few heads.
        self._loaded: collections.OrderedDict[int, dict[str, Tensor]] = collections.OrderedDict()
        self._repair()
        self._reload()

    # -- storage ---------------------------------------------------------------------------------------------------
    def _repair(self) -> None:
        """Drop rows whose tensor file is gone and delete tensor files no row names (a crash between the two)."""
        rows = self._db.execute("SELECT id, file FROM heads").fetchall()
        named = set()
        for hid, name in rows:
            if not (self.root / "heads" / name).is_file():
                self._db.execute("DELETE FROM heads WHERE id = ?", (hid,))
            else:
                named.add(name)
        self._db.commit()
        for path in (self.root / "heads").iterdir():
            if path.name not in named:
                path.unlink(missing_ok=True)

    def _reload(self) -> None:
        """Rebuild the in-memory signature matrices from the index (after open, add or evict)."""
        rows = self._db.execute("SELECT id, hist, mean, std FROM heads ORDER BY id").fetchall()
        self._ids = np.array([r[0] for r in rows], np.int64)
        if rows:
            self._hists = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
            self._means = np.stack([_unit(np.frombuffer(r[2], np.float32)) for r in rows])
        else:
            self._hists = np.zeros((0, 0), np.float32)
            self._means = np.zeros((0, 0), np.float32)

    def __len__(self) -> int:
        """Return how many heads are stored."""
        return int(self._ids.size)

    def add(self, head: Mapping[str, Tensor], sig: Signature, robot: str, version: int, val_accuracy: float,
            now_s: float, tag: str = "") -> int:
        """Store a trained head with its signature; evict the least useful heads beyond capacity; return its id.

        Tensors are stored as float16 (what the wire carries) when ``cfg.half`` is set.
        """
        name = f"{robot}-v{int(version)}-{time.time_ns()}{TENSOR_SUFFIX}"
        # NumPy casts: the cloud adds heads on its dispatcher thread, which must not start an OpenMP pool of its own.
        tensors = {k: (torch.from_numpy(v.detach().cpu().numpy().astype(np.float16))
                       if self.cfg.half and v.is_floating_point() else v.detach().cpu()) for k, v in head.items()}
        save_tensors(self.root / "heads" / name, tensors)  # the file first: a row never names a missing file
        cur = self._db.execute(
            "INSERT INTO heads (robot, version, tag, created_s, last_used_s, hits, samples, val_accuracy, hist, mean,"
            " std, file) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
            (robot, int(version), tag, float(now_s), float(now_s), int(sig.count), float(val_accuracy),
             sig.hist.astype(np.float32).tobytes(), sig.mean.astype(np.float32).tobytes(),
             sig.std.astype(np.float32).tobytes(), name))
        self._db.commit()
        hid = int(cur.lastrowid or 0)
        self._evict()
        self._reload()
        return hid

    def _evict(self) -> None:
        over = int(self._db.execute("SELECT COUNT(*) FROM heads").fetchone()[0]) - int(self.cfg.capacity)
        if over <= 0:
            return
        victims = self._db.execute(
            "SELECT id, file FROM heads ORDER BY hits ASC, last_used_s ASC, id ASC LIMIT ?", (over,)).fetchall()
        self._db.executemany("DELETE FROM heads WHERE id = ?", [(v[0],) for v in victims])
        self._db.commit()  # the rows go first: a crash now leaves orphan files, which _repair deletes
        for hid, name in victims:
            self._loaded.pop(int(hid), None)
            (self.root / "heads" / name).unlink(missing_ok=True)

    def entry(self, hid: int) -> ZooEntry:
        """The row of head ``hid``; :class:`StateError` when it is not stored."""
        row = self._db.execute(
            "SELECT id, robot, version, tag, created_s, last_used_s, hits, samples, val_accuracy FROM heads "
            "WHERE id = ?", (int(hid),)).fetchone()
        if row is None:
            raise StateError(f"head {hid} is not in the zoo")
        return ZooEntry(int(row[0]), str(row[1]), int(row[2]), str(row[3]), float(row[4]), float(row[5]),
                        int(row[6]), int(row[7]), float(row[8]))

    def load(self, hid: int) -> dict[str, Tensor]:
        """The tensors of head ``hid`` as stored (float16 when ``cfg.half``; loading a head into a model casts).

        The last ``cfg.memory_heads`` heads loaded are kept in memory; callers must not modify what they get.
        """
        if hid in self._loaded:
            self._loaded.move_to_end(hid)
            return self._loaded[hid]
        row = self._db.execute("SELECT file FROM heads WHERE id = ?", (int(hid),)).fetchone()
        if row is None:
            raise StateError(f"head {hid} is not in the zoo")
        state = load_tensors(self.root / "heads" / row[0])
        self._loaded[int(hid)] = state
        while len(self._loaded) > int(self.cfg.memory_heads):
            self._loaded.popitem(last=False)
        return state

    def mark_used(self, hid: int, now_s: float) -> None:
        """Count one use of head ``hid`` (it was sent to a robot): it is evicted later."""
        self._db.execute("UPDATE heads SET hits = hits + 1, last_used_s = ? WHERE id = ?", (float(now_s), int(hid)))
        self._db.commit()

    def close(self) -> None:
        """Close the index (the files stay)."""
        self._db.close()

    # -- search ----------------------------------------------------------------------------------------------------
    def shortlist(self, sig: Signature, exclude: Callable[[int], bool] | None = None) -> list[int]:
        """The ids of up to ``cfg.shortlist`` stored heads nearest to ``sig`` (:func:`signature_distance`)."""
        if self._ids.size == 0:
            return []
        d = 1.0 - self._means @ _unit(sig.mean)
        if self._hists.shape[1] == sig.hist.size:
            d = d + self.cfg.hist_weight * 0.5 * np.abs(self._hists - sig.hist[None, :]).sum(axis=1)
        out: list[int] = []
        for i in np.argsort(d, kind="stable"):
            hid = int(self._ids[i])
            if exclude is None or not exclude(hid):
                out.append(hid)
                if len(out) >= int(self.cfg.shortlist):
                    break
        return out

    def select(self, sig: Signature, evaluate: Callable[[dict[str, Tensor]], float], current_accuracy: float,
               exclude: Callable[[int], bool] | None = None) -> Selection:
        """Score the shortlist for a labelled window and return the best head that beats the current one.

        ``evaluate(head_state)`` returns a head's accuracy on the window (cached features, teacher labels);
        ``current_accuracy`` is the robot's current head's. A head is a hit when it beats it by at least
        ``cfg.margin``. Hits and misses are counted on the zoo.
        """
        t0 = time.perf_counter()
        best: ZooEntry | None = None
        best_acc = -1.0
        ids = self.shortlist(sig, exclude)
        for hid in ids:
            acc = float(evaluate(self.load(hid)))
            if acc > best_acc:
                best_acc, best = acc, self.entry(hid)
        seconds = time.perf_counter() - t0
        self.selection_seconds.append(seconds)
        if best is None or best_acc < current_accuracy + float(self.cfg.margin):
            self.misses += 1
            return Selection(None, best_acc, current_accuracy, len(ids), seconds)
        self.hits += 1
        return Selection(best, best_acc, current_accuracy, len(ids), seconds)
