"""Drifting camera streams built from real packaged video: a YAML spec -> a deterministic sequence of frames.

A stream spec (``config/streams/*.yaml``, loaded by :func:`load_spec`) describes one or more **cameras**. Each
camera gets its own seeded schedule of

* **scene chunks** -- short stretches (``scenes.chunk_s`` seconds) of different clips, interleaved so that an
  edge window of a few tens of seconds is never a single clip, hence never a single class; each clip keeps its
  own play cursor (a seeded start, ``stride`` source frames per stream frame, wrapping at its end), and
* **condition segments** -- clean, night (our own darkening op, :func:`night`), fog, snow, frost, contrast,
  motion blur, ... (every ImageNet-C corruption of PyPI ``corrupt-tta``), each held for a few minutes
  (``conditions.segment_s``) and ramped in from severity 1 to its severity over ``ramp_s`` seconds.

Each stream frame is the clip frame scaled to at most ``image.max_width`` px wide, corrupted, and JPEG-encoded.
Its **regions** are the teacher's object boxes on the **clean** frame (standing in for the robot's upstream
detector: the teacher almost never invents objects, it misses them under heavy corruption) followed by its
background crop(s); the **ground truth** of a region is the teacher's label on the clean frame, and the frame's
whole-frame ground truth (whole-frame mode) the teacher's whole-frame label of the clean frame.

Determinism: the schedule comes from ``numpy.random.default_rng([spec.seed, camera.seed, ...])`` and every frame's
corruption from a seed derived from ``(spec.seed, camera.seed, frame index)`` alone, so the same spec and seed
give byte-identical JPEGs whatever the number of worker processes or the order of work.

Speed: a cold build is dominated by the teacher (25-40 ms/frame) and the corruptions (10-40 ms/frame at 512 px).
The clips hold only ~4,000 distinct source frames, so teacher results are cached on disk per
``(clip content hash, frame index, frame width, teacher key)`` (:class:`ProposalCache`) and the corruptions
run in ``workers`` spawned processes.

Disjointness: the starting head is pretrained on other frames, so by default a spec may use only ``bikes``,
``vtest`` frames below 600, and the dash-cam clips ``challenge03``, ``project_video02``, ``project_video03``
(``allow_pretraining_frames: true`` lifts this for experiments that do not evaluate the shipped head).

This module imports no rclpy (see :mod:`edgesync_ros.data.bags` for rosbag2 files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import queue
import sys
import tempfile
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from edgesync_ros import assets, paths
from edgesync_ros.core.errors import AssetNotFoundError, ConfigError, EdgeSyncError

#: Capture time of frame 0 when a spec gives none: 2026-01-01T00:00:00Z (a fixed epoch keeps builds identical).
DEFAULT_START_TIME_NS = 1_767_225_600 * 1_000_000_000

#: Condition names that are not corrupt-tta corruptions.
CLEAN = "clean"
NIGHT = "night"

#: Night op per severity: (gain, gamma, desaturation, sensor noise sigma in [0, 1] units). Calibrated on 77
#: frames (126 objects) of the packaged evaluation clips at 512 px with the NanoDet teacher: object recall vs the
#: clean frame 81, 79, 74, 68, 50% at severity 1..5 (at 4 the teacher still sees most objects, so adaptation on
#: its labels can help, as in the feasibility study's night4 at 71%).
NIGHT_LEVELS: dict[int, tuple[float, float, float, float]] = {
    1: (0.72, 1.20, 0.15, 0.004),
    2: (0.58, 1.35, 0.25, 0.005),
    3: (0.46, 1.50, 0.35, 0.006),
    4: (0.34, 1.70, 0.40, 0.008),
    5: (0.24, 2.00, 0.45, 0.010),
}
# Night light is bluish: BGR channel gains applied after darkening.
_NIGHT_TINT_BGR = np.array([1.12, 1.0, 0.86], np.float32)

#: Built-in clip sources -> (locator, frames that may be used without allow_pretraining_frames: None = all).
_VTEST_EVAL_FRAMES = 600
_EVAL_DASHCAM = ("challenge03", "project_video02", "project_video03")
_PRETRAIN_DASHCAM = ("challenge01", "challenge02", "project_video01")


class ProposalSource(Protocol):
    """What the builder needs from a teacher: labelled regions and a whole-frame label of one clean frame.

    :class:`edgesync_ros.models.teacher.NanoDetTeacher` implements it: ``proposals`` returns ``boxes_xyxy``,
    ``class_ids``, ``confidences`` and ``is_background`` arrays (objects first, best score first), ``label``
    the whole-frame label (``(class_ids, confidences, extras)`` for a list of frames).
    """

    def proposals(self, frame: npt.NDArray[np.uint8]) -> Any:
        """Propose labelled regions (objects, then background crops) for one BGR frame."""
        ...

    def label(self, frames: Any, regions: Any = None) -> Any:
        """Label whole frames (``regions=None``)."""
        ...


# ------------------------------------------------------------------------------------------------------------
# Conditions
# ------------------------------------------------------------------------------------------------------------
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
    from corrupt_tta import corruption_dict

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


# ------------------------------------------------------------------------------------------------------------
# Spec
# ------------------------------------------------------------------------------------------------------------
def _type_error(where: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"{where} must be {what}, got {value!r}")


def _num(where: str, value: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise _type_error(where, "a number", value)
    v = float(value)
    if lo is not None and (v < lo or (lo_open and v <= lo)):
        raise ConfigError(f"{where} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and v > hi:
        raise ConfigError(f"{where} must be <= {hi:g}, got {v:g}")
    return v


def _int(where: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(where, "an integer", value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{where} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
    return int(value)


def _range(where: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = _num(where, value, 0.0, lo_open=True)
        return v, v
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _type_error(where, "a positive number or a [min, max] pair", value)
    lo = _num(f"{where}[0]", value[0], 0.0, lo_open=True)
    hi = _num(f"{where}[1]", value[1], 0.0, lo_open=True)
    if hi < lo:
        raise ConfigError(f"{where} must be [min, max] with min <= max, got {list(value)}")
    return lo, hi


def _mapping(where: str, value: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _type_error(where, "a mapping", value)
    allowed = set(allowed)
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = [k for k in required if k not in value]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    return dict(value)


def _name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c == "_" for c in value):
        raise _type_error(where, "a non-empty name of letters, digits and '_'", value)
    return value


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """One source clip.

    ``source``: ``bikes``, ``vtest``, ``dashcam/<clip>`` (packaged assets) or a path to any OpenCV-readable
    video. Frames ``[start_frame, end_frame)`` are used, ``stride`` source frames per stream frame (a slow-motion
    factor: the clips are short, so consecutive stream frames a few source frames apart give more distinct
    frames than real-time playback would). ``weight`` is the clip's share of scene chunks; ``max_objects``
    caps object regions per frame (crowded clips would otherwise dominate the region count).
    """

    name: str
    source: str
    start_frame: int = 0
    end_frame: int | None = None
    stride: int = 1
    weight: float = 1.0
    max_objects: int | None = None

    @staticmethod
    def from_dict(raw: Any, where: str) -> ClipSpec:
        """Validate one ``scenes.clips`` entry."""
        d = _mapping(where, raw, {f.name for f in dataclasses.fields(ClipSpec)}, ("name", "source"))
        name = _name(f"{where}.name", d["name"])
        if not isinstance(d["source"], str) or not d["source"]:
            raise _type_error(f"{where}.source", "bikes, vtest, dashcam/<clip> or a video path", d["source"])
        start = _int(f"{where}.start_frame", d.get("start_frame", 0), 0)
        end = d.get("end_frame")
        if end is not None:
            end = _int(f"{where}.end_frame", end, start + 1)
        max_obj = d.get("max_objects")
        return ClipSpec(
            name=name,
            source=d["source"],
            start_frame=start,
            end_frame=end,
            stride=_int(f"{where}.stride", d.get("stride", 1), 1, 1000),
            weight=_num(f"{where}.weight", d.get("weight", 1.0), 0.0),
            max_objects=None if max_obj is None else _int(f"{where}.max_objects", max_obj, 0, 64),
        )


@dataclasses.dataclass(frozen=True)
class ConditionSpec:
    """A condition: a name (``clean``, ``night`` or a corrupt-tta corruption) and an integer severity 1-5.

    In a random schedule's ``menu`` it has a ``weight``; in an explicit camera ``schedule`` a ``duration_s``.
    ``ramp_s`` (default: ``conditions.ramp_s``) ramps severity up from 1 at the start of each segment.
    """

    name: str
    severity: int = 0
    weight: float = 1.0
    duration_s: float | None = None
    ramp_s: float | None = None

    @property
    def label(self) -> str:
        """Return e.g. ``fog5`` or ``clean``."""
        return self.name if self.name == CLEAN else f"{self.name}{self.severity}"

    @staticmethod
    def from_dict(raw: Any, where: str, known: Sequence[str], explicit: bool) -> ConditionSpec:
        """Validate a menu entry (``explicit=False``) or an explicit schedule entry (``explicit=True``)."""
        keys = {"name", "severity", "ramp_s", "duration_s" if explicit else "weight"}
        d = _mapping(where, raw, keys, ("name", "duration_s") if explicit else ("name",))
        name = d["name"]
        if name not in known:
            raise ConfigError(f"{where}.name: unknown corruption {name!r}; known: {', '.join(known)}")
        if name == CLEAN:
            if d.get("severity", 0) not in (0, None):
                raise ConfigError(f"{where}: clean takes no severity, got {d['severity']!r}")
            severity = 0
        else:
            if "severity" not in d:
                raise ConfigError(f"{where}: condition {name!r} needs a severity 1..5")
            severity = _int(f"{where}.severity", d["severity"], 1, 5)
        ramp = d.get("ramp_s")
        return ConditionSpec(
            name=name,
            severity=severity,
            weight=1.0 if explicit else _num(f"{where}.weight", d.get("weight", 1.0), 0.0),
            duration_s=_num(f"{where}.duration_s", d["duration_s"], 0.0, lo_open=True) if explicit else None,
            ramp_s=None if ramp is None else _num(f"{where}.ramp_s", ramp, 0.0),
        )


@dataclasses.dataclass(frozen=True)
class CameraSpec:
    """One camera: a name (topic prefix), a seed of its own, a duration, optional overrides.

    ``clip_weights`` overrides clip weights for this camera; ``schedule`` replaces the random condition
    schedule with an explicit list of segments, repeated until ``duration_s`` is covered.
    """

    name: str
    seed: int
    duration_s: float
    clip_weights: tuple[tuple[str, float], ...] = ()
    schedule: tuple[ConditionSpec, ...] = ()


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """A validated stream spec (see ``config/streams/default.yaml`` for the annotated format)."""

    name: str
    seed: int
    fps: float
    start_time_ns: int
    max_width: int
    jpeg_quality: int
    chunk_s: tuple[float, float]
    clips: tuple[ClipSpec, ...]
    segment_s: tuple[float, float]
    ramp_s: float
    start_condition: str | None
    menu: tuple[ConditionSpec, ...]
    cameras: tuple[CameraSpec, ...]
    allow_pretraining_frames: bool = False

    def with_seed(self, seed: int | None) -> StreamSpec:
        """Return this spec with another stream seed (``None`` keeps it)."""
        if seed is None:
            return self
        return dataclasses.replace(self, seed=_int("seed", seed, 0, 2**63 - 1))

    def camera(self, name: str) -> CameraSpec:
        """Return the camera called ``name``."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise ConfigError(f"stream {self.name!r} has no camera {name!r}; cameras: {[c.name for c in self.cameras]}")

    def clip(self, name: str) -> ClipSpec:
        """Return the clip called ``name``."""
        for clip in self.clips:
            if clip.name == name:
                return clip
        raise ConfigError(f"stream {self.name!r} has no clip {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able canonical form (what content hashes are computed over)."""
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Return the SHA-256 of the canonical JSON form."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


_TOP_KEYS = {
    "name", "seed", "fps", "start_time", "duration_s", "image", "scenes", "conditions", "cameras",
    "allow_pretraining_frames",
}  # fmt: skip


def spec_from_dict(raw: Any, *, check_files: bool = True) -> StreamSpec:
    """Validate a parsed YAML mapping into a :class:`StreamSpec`; every problem raises :class:`ConfigError`.

    ``check_files`` also checks that every clip's video exists on this machine (a spec naming a missing clip
    fails here, not minutes into a build).
    """
    d = _mapping("stream", raw, _TOP_KEYS, ("name", "scenes", "conditions", "cameras"))
    name = _name("name", d["name"])
    seed = _int("seed", d.get("seed", 0), 0, 2**63 - 1)
    fps = _num("fps", d.get("fps", 2.0), 0.0, 60.0, lo_open=True)
    start = d.get("start_time")
    start_ns = DEFAULT_START_TIME_NS if start is None else int(round(_num("start_time", start, 0.0) * 1e9))
    default_duration = d.get("duration_s")
    if default_duration is not None:
        default_duration = _num("duration_s", default_duration, 0.0, lo_open=True)

    image = _mapping("image", d.get("image", {}), {"max_width", "jpeg_quality"})
    max_width = _int("image.max_width", image.get("max_width", 512), 64, 1280)
    quality = _int("image.jpeg_quality", image.get("jpeg_quality", 75), 10, 100)

    scenes = _mapping("scenes", d["scenes"], {"chunk_s", "clips"}, ("clips",))
    chunk = _range("scenes.chunk_s", scenes.get("chunk_s", [6.0, 16.0]))
    if not isinstance(scenes["clips"], list) or not scenes["clips"]:
        raise _type_error("scenes.clips", "a non-empty list", scenes["clips"])
    clips = tuple(ClipSpec.from_dict(c, f"scenes.clips[{i}]") for i, c in enumerate(scenes["clips"]))
    clip_names = [c.name for c in clips]
    if len(set(clip_names)) != len(clip_names):
        raise ConfigError(f"scenes.clips: clip names must be unique, got {clip_names}")
    allow = d.get("allow_pretraining_frames", False)
    if not isinstance(allow, bool):
        raise _type_error("allow_pretraining_frames", "true or false", allow)
    for clip in clips:
        _check_disjoint(clip, allow)
        if check_files:
            resolve_source(clip.source, f"clip {clip.name!r}")

    known = corruption_names()
    cond = _mapping("conditions", d["conditions"], {"segment_s", "ramp_s", "start", "menu"})
    segment = _range("conditions.segment_s", cond.get("segment_s", [120.0, 240.0]))
    ramp = _num("conditions.ramp_s", cond.get("ramp_s", 30.0), 0.0)
    start_cond = cond.get("start", CLEAN)
    if start_cond is not None and start_cond not in known:
        raise ConfigError(f"conditions.start: unknown corruption {start_cond!r}; known: {', '.join(known)}")
    menu_raw = cond.get("menu", [{"name": CLEAN}])
    if not isinstance(menu_raw, list) or not menu_raw:
        raise _type_error("conditions.menu", "a non-empty list", menu_raw)
    menu = tuple(ConditionSpec.from_dict(c, f"conditions.menu[{i}]", known, False) for i, c in enumerate(menu_raw))
    if sum(c.weight for c in menu) <= 0:
        raise ConfigError("conditions.menu: at least one weight must be > 0")
    if start_cond not in (None, CLEAN) and start_cond not in {c.name for c in menu}:
        raise ConfigError(f"conditions.start {start_cond!r} must be clean or a condition of the menu")

    if not isinstance(d["cameras"], list) or not d["cameras"]:
        raise _type_error("cameras", "a non-empty list", d["cameras"])
    cameras = []
    for i, raw_cam in enumerate(d["cameras"]):
        where = f"cameras[{i}]"
        c = _mapping(where, raw_cam, {"name", "seed", "duration_s", "clip_weights", "schedule"}, ("name", "seed"))
        if "duration_s" not in c and default_duration is None:
            raise ConfigError(f"{where}: missing duration_s (and no stream-level duration_s)")
        duration = _num(f"{where}.duration_s", c.get("duration_s", default_duration), 0.0, lo_open=True)
        weights = _mapping(f"{where}.clip_weights", c.get("clip_weights", {}), clip_names)
        cw = tuple(sorted((k, _num(f"{where}.clip_weights.{k}", v, 0.0)) for k, v in weights.items()))
        merged = {cl.name: cl.weight for cl in clips} | dict(cw)
        if sum(merged.values()) <= 0:
            raise ConfigError(f"{where}: every clip weight is 0")
        sched_raw = c.get("schedule", [])
        if not isinstance(sched_raw, list):
            raise _type_error(f"{where}.schedule", "a list", sched_raw)
        schedule = tuple(
            ConditionSpec.from_dict(s, f"{where}.schedule[{j}]", known, True) for j, s in enumerate(sched_raw)
        )
        cameras.append(
            CameraSpec(
                name=_name(f"{where}.name", c["name"]),
                seed=_int(f"{where}.seed", c["seed"], 0, 2**63 - 1),
                duration_s=duration,
                clip_weights=cw,
                schedule=schedule,
            )
        )
    names = [c.name for c in cameras]
    seeds = [c.seed for c in cameras]
    if len(set(names)) != len(names):
        raise ConfigError(f"cameras: names must be unique, got {names}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"cameras: seeds must differ so that cameras drift differently, got {seeds}")
    return StreamSpec(
        name=name,
        seed=seed,
        fps=fps,
        start_time_ns=start_ns,
        max_width=max_width,
        jpeg_quality=quality,
        chunk_s=chunk,
        clips=clips,
        segment_s=segment,
        ramp_s=ramp,
        start_condition=start_cond,
        menu=menu,
        cameras=tuple(cameras),
        allow_pretraining_frames=allow,
    )


def _check_disjoint(clip: ClipSpec, allow: bool) -> None:
    """Refuse frames the starting head was pretrained on (see the module docstring)."""
    if allow:
        return
    src = clip.source
    if src == "vtest" and (clip.end_frame is None or clip.end_frame > _VTEST_EVAL_FRAMES):
        raise ConfigError(
            f"clip {clip.name!r}: vtest frames >= {_VTEST_EVAL_FRAMES} are reserved for pretraining the starting "
            f"head; set end_frame <= {_VTEST_EVAL_FRAMES} (or allow_pretraining_frames: true)"
        )
    if src.startswith("dashcam/") and src.split("/", 1)[1] in _PRETRAIN_DASHCAM:
        raise ConfigError(
            f"clip {clip.name!r}: {src} is reserved for pretraining the starting head; evaluation streams may use "
            f"dashcam/{', dashcam/'.join(_EVAL_DASHCAM)} (or set allow_pretraining_frames: true)"
        )


def streams_dirs() -> list[Path]:
    """Return where named specs are looked up: the source checkout's and the installed ``config/streams``."""
    dirs = [Path(__file__).resolve().parents[2] / "config" / "streams"]
    for prefix in [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]:
        if prefix:
            dirs.append(Path(prefix) / "share" / "edgesync_ros" / "config" / "streams")
    return [d for d in dict.fromkeys(dirs) if d.is_dir()]


def find_spec(spec: str | Path) -> Path:
    """Return the spec file for a path, or for a name such as ``default`` (``config/streams/default.yaml``)."""
    path = Path(spec)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path("."):
        for d in streams_dirs():
            candidate = d / f"{path.name}.yaml"
            if candidate.is_file():
                return candidate
    known = sorted({p.stem for d in streams_dirs() for p in d.glob("*.yaml")})
    raise ConfigError(f"stream spec {str(spec)!r} is neither a file nor a known spec name ({', '.join(known)})")


def load_spec(spec: str | Path, seed: int | None = None, *, check_files: bool = True) -> StreamSpec:
    """Load and validate a stream spec from a YAML file or a spec name; ``seed`` overrides the spec's seed."""
    path = find_spec(spec)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return spec_from_dict(raw, check_files=check_files).with_seed(seed)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# ------------------------------------------------------------------------------------------------------------
# Clips
# ------------------------------------------------------------------------------------------------------------
def resolve_source(source: str, what: str = "clip") -> Path:
    """Return the video file of a clip source; a missing one raises :class:`ConfigError` saying what to do."""
    try:
        if source == "bikes":
            return assets.bikes_video()
        if source == "vtest":
            return assets.vtest_video()
        if source.startswith("dashcam/"):
            return assets.dashcam_video(source.split("/", 1)[1])
    except AssetNotFoundError as exc:
        raise ConfigError(f"{what}: source {source!r} is missing: {exc}") from exc
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{what}: source {source!r} is not bikes, vtest, dashcam/<clip> or an existing video file"
        )
    return path


@dataclasses.dataclass(frozen=True)
class ClipInfo:
    """A resolved clip: its file, content hash and geometry (as OpenCV reports it)."""

    name: str
    path: Path
    sha256: str
    frame_count: int
    fps: float
    width: int
    height: int


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = assets.sha256_file(path)
    return _SHA_MEMO[key]


def probe_clip(clip: ClipSpec) -> ClipInfo:
    """Resolve and open a clip's video; a file OpenCV cannot read raises :class:`ConfigError`."""
    path = resolve_source(clip.source, f"clip {clip.name!r}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ConfigError(f"clip {clip.name!r}: OpenCV cannot open {path}")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if count <= 0 or w <= 0 or h <= 0:
        raise ConfigError(f"clip {clip.name!r}: {path} reports no frames ({count}) or no size ({w}x{h})")
    return ClipInfo(clip.name, path, _file_sha256(path), count, fps, w, h)


def usable_frames(clip: ClipSpec, info: ClipInfo) -> range:
    """Return the source frame indices a clip plays (``start_frame`` to ``end_frame`` by ``stride``)."""
    end = info.frame_count if clip.end_frame is None else clip.end_frame
    if end > info.frame_count:
        raise ConfigError(f"clip {clip.name!r}: end_frame {end} but {info.path.name} has {info.frame_count} frames")
    frames = range(clip.start_frame, end, clip.stride)
    if len(frames) == 0:
        raise ConfigError(f"clip {clip.name!r}: no frames in [{clip.start_frame}, {end})")
    return frames


def output_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """Return the stream frame size for a source size: scaled down to ``max_width`` px wide, never up."""
    if width <= max_width:
        return width, height
    return max_width, max(1, round(height * max_width / width))


def read_clean_frames(
    info: ClipInfo, indices: Iterable[int], max_width: int, progress: bool = False
) -> dict[int, npt.NDArray[np.uint8]]:
    """Decode a clip once, front to back, keeping the requested frames scaled to ``max_width`` (BGR uint8).

    Sequential decoding (not seeking) because seeking in H.264 is slow and not frame-exact in every backend.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    size = output_size(info.width, info.height, max_width)
    out: dict[int, npt.NDArray[np.uint8]] = {}
    cap = cv2.VideoCapture(str(info.path))
    bar = _progress(total=wanted[-1] + 1, desc=f"decode {info.name}", enabled=progress)
    try:
        want = set(wanted)
        for i in range(wanted[-1] + 1):
            ok = cap.grab()
            if not ok:
                raise ConfigError(f"clip {info.name!r}: {info.path} ended at frame {i}, frame {wanted[-1]} needed")
            if i in want:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise ConfigError(f"clip {info.name!r}: cannot decode frame {i} of {info.path}")
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                if (frame.shape[1], frame.shape[0]) != size:
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                out[i] = np.ascontiguousarray(frame[:, :, :3])
            bar.update(1)
    finally:
        bar.close()
        cap.release()
    return out


# ------------------------------------------------------------------------------------------------------------
# Schedules
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Segment:
    """One condition segment of a camera: ``[start_s, end_s)`` of stream time."""

    index: int
    condition: str
    severity: int
    start_s: float
    end_s: float
    ramp_s: float

    def severity_at(self, t: float) -> int:
        """Return the severity at stream time ``t``: ramping 1..severity in equal steps over ``ramp_s``."""
        if self.condition == CLEAN or self.ramp_s <= 0:
            return self.severity
        # The epsilon keeps a step boundary that is exact in decimal (e.g. t = 14.0) on the later step.
        return int(min(self.severity, 1 + math.floor(self.severity * (t - self.start_s) / self.ramp_s + 1e-9)))


@dataclasses.dataclass(frozen=True)
class FramePlan:
    """What one stream frame will be: which clip frame, under which condition, at which time."""

    camera: str
    index: int
    stamp_ns: int
    clip: str
    source_frame: int
    chunk: int
    segment: int
    condition: str
    severity: int


@dataclasses.dataclass(frozen=True)
class CameraSchedule:
    """A camera's complete plan: its condition segments, scene chunks and one :class:`FramePlan` per frame."""

    camera: str
    seed: int
    segments: tuple[Segment, ...]
    frames: tuple[FramePlan, ...]

    @property
    def duration_s(self) -> float:
        """Return the stream time the camera covers."""
        return self.segments[-1].end_s if self.segments else 0.0

    def summary(self) -> dict[str, Any]:
        """Return frame counts per clip and per condition label, and the segment list (JSON-able)."""
        clips: dict[str, int] = {}
        conds: dict[str, int] = {}
        for f in self.frames:
            clips[f.clip] = clips.get(f.clip, 0) + 1
            key = f.condition if f.condition == CLEAN else f"{f.condition}{f.severity}"
            conds[key] = conds.get(key, 0) + 1
        return {
            "camera": self.camera,
            "frames": len(self.frames),
            "duration_s": self.duration_s,
            "chunks": (self.frames[-1].chunk + 1) if self.frames else 0,
            "clip_frames": dict(sorted(clips.items())),
            "condition_frames": dict(sorted(conds.items())),
            "segments": [dataclasses.asdict(s) for s in self.segments],
        }


def _weighted_choice(rng: np.random.Generator, weights: Sequence[float], exclude: int | None) -> int:
    w = np.asarray(weights, np.float64).copy()
    if exclude is not None and (w > 0).sum() > 1:
        w[exclude] = 0.0  # no immediate repeat: a "change" must change something
    return int(rng.choice(len(w), p=w / w.sum()))


def condition_segments(spec: StreamSpec, camera: CameraSpec) -> tuple[Segment, ...]:
    """Return the camera's condition segments covering ``[0, duration_s)``.

    An explicit ``schedule`` is repeated until the duration is covered. Otherwise segments last
    ``uniform(segment_s)`` seconds and draw their condition from the menu by weight, never the same as the
    previous segment; the first is ``conditions.start`` (clean by default) so every camera begins with a
    reference period.
    """
    rng = np.random.default_rng([spec.seed, camera.seed, 1])
    segments: list[Segment] = []
    t = 0.0
    prev: int | None = None
    while t < camera.duration_s - 1e-9:
        k = len(segments)
        if camera.schedule:
            cond = camera.schedule[k % len(camera.schedule)]
            length = float(cond.duration_s or 0.0)
        else:
            length = float(rng.uniform(*spec.segment_s))
            if k == 0 and spec.start_condition is not None:
                matches = [i for i, c in enumerate(spec.menu) if c.name == spec.start_condition]
                idx = matches[0] if matches else None
                cond = spec.menu[idx] if idx is not None else ConditionSpec(CLEAN)
                prev = idx
            else:
                prev = _weighted_choice(rng, [c.weight for c in spec.menu], prev)
                cond = spec.menu[prev]
        end = min(t + length, camera.duration_s)
        ramp = spec.ramp_s if cond.ramp_s is None else cond.ramp_s
        segments.append(Segment(k, cond.name, cond.severity, t, end, min(ramp, end - t)))
        t = end
    return tuple(segments)


def build_schedule(
    spec: StreamSpec, camera: str | CameraSpec, clip_frames: Mapping[str, Sequence[int]]
) -> CameraSchedule:
    """Return a camera's full plan (pure and cheap: no video is read).

    ``clip_frames`` maps each clip name to the source frame indices it plays (:func:`usable_frames`).
    """
    cam = spec.camera(camera) if isinstance(camera, str) else camera
    segments = condition_segments(spec, cam)
    n_frames = max(1, int(round(cam.duration_s * spec.fps)))
    weights = {c.name: c.weight for c in spec.clips} | dict(cam.clip_weights)
    names = [c.name for c in spec.clips]
    clip_w = [weights[n] for n in names]
    rng = np.random.default_rng([spec.seed, cam.seed, 2])
    # Each clip starts at a seeded position, so cameras showing the same clip show different parts of it.
    cursor = {n: int(rng.integers(len(clip_frames[n]))) for n in names}
    plans: list[FramePlan] = []
    seg_i = 0
    chunk = -1
    prev: int | None = None
    left = 0
    clip = names[0]
    for i in range(n_frames):
        if left == 0:
            prev = _weighted_choice(rng, clip_w, prev)
            clip = names[prev]
            left = max(1, int(round(rng.uniform(*spec.chunk_s) * spec.fps)))
            chunk += 1
        t = i / spec.fps
        while seg_i + 1 < len(segments) and t >= segments[seg_i].end_s - 1e-9:
            seg_i += 1
        seg = segments[seg_i]
        frames = clip_frames[clip]
        plans.append(
            FramePlan(
                camera=cam.name,
                index=i,
                stamp_ns=spec.start_time_ns + int(round(i * 1e9 / spec.fps)),
                clip=clip,
                source_frame=int(frames[cursor[clip] % len(frames)]),
                chunk=chunk,
                segment=seg.index,
                condition=seg.condition,
                severity=seg.severity_at(t),
            )
        )
        cursor[clip] += 1
        left -= 1
    return CameraSchedule(cam.name, cam.seed, segments, tuple(plans))


@dataclasses.dataclass(frozen=True)
class StreamPlan:
    """A spec with its clips resolved and every camera's schedule: everything but the pixels."""

    spec: StreamSpec
    clips: Mapping[str, ClipInfo]
    schedules: Mapping[str, CameraSchedule]

    def frame_order(self) -> list[FramePlan]:
        """Return every camera's frames merged by capture time (cameras in spec order at equal stamps)."""
        order = {c.name: i for i, c in enumerate(self.spec.cameras)}
        frames = [f for s in self.schedules.values() for f in s.frames]
        return sorted(frames, key=lambda f: (f.stamp_ns, order[f.camera], f.index))

    def needed_frames(self) -> dict[str, set[int]]:
        """Return the source frames each clip must provide."""
        need: dict[str, set[int]] = {c.name: set() for c in self.spec.clips}
        for s in self.schedules.values():
            for f in s.frames:
                need[f.clip].add(f.source_frame)
        return need

    def summary(self) -> dict[str, Any]:
        """Return a JSON-able description: spec, clips (hashes) and per-camera schedule summaries."""
        return {
            "spec": self.spec.to_dict(),
            "clips": {
                n: {"file": c.path.name, "sha256": c.sha256, "frames": c.frame_count, "size": [c.width, c.height]}
                for n, c in self.clips.items()
            },
            "cameras": {n: s.summary() for n, s in self.schedules.items()},
        }


def plan_stream(spec: StreamSpec, cameras: Sequence[str] | None = None) -> StreamPlan:
    """Resolve the spec's clips (reading only their headers) and build the schedules of ``cameras`` (all)."""
    infos = {c.name: probe_clip(c) for c in spec.clips}
    frames = {c.name: usable_frames(c, infos[c.name]) for c in spec.clips}
    names = [c.name for c in spec.cameras] if cameras is None else list(cameras)
    return StreamPlan(spec, infos, {n: build_schedule(spec, n, frames) for n in names})


# ------------------------------------------------------------------------------------------------------------
# Teacher proposals, cached on disk
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class FrameRegions:
    """Teacher results for one clean frame.

    Regions: integer xyxy boxes (objects first, best score first, then background crops) with their labels and
    confidences; plus the whole-frame label and its confidence (for whole-frame mode).
    """

    boxes: npt.NDArray[np.int32]
    class_ids: npt.NDArray[np.int64]
    confidences: npt.NDArray[np.float32]
    is_background: npt.NDArray[np.bool_]
    frame_class: int = 0
    frame_confidence: float = 1.0

    def limited(self, max_objects: int | None) -> FrameRegions:
        """Keep at most ``max_objects`` object regions (the best-scored ones) and every background crop."""
        if max_objects is None:
            return self
        keep = np.flatnonzero(~self.is_background)[:max_objects].tolist() + np.flatnonzero(self.is_background).tolist()
        idx = np.array(sorted(keep), np.int64)
        return FrameRegions(
            self.boxes[idx],
            self.class_ids[idx],
            self.confidences[idx],
            self.is_background[idx],
            self.frame_class,
            self.frame_confidence,
        )


def boxes_to_int(boxes: npt.ArrayLike, width: int, height: int) -> npt.NDArray[np.int32]:
    """Round xyxy boxes outwards to whole pixels and clamp them to the frame.

    The same rule as :func:`edgesync_ros.models.preprocessing.xyxy_to_roi` (floor the top-left, ceil the
    bottom-right), so a ``RegionOfInterest`` made from these boxes covers exactly them.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.stack([np.floor(b[:, 0]), np.floor(b[:, 1]), np.ceil(b[:, 2]), np.ceil(b[:, 3])], axis=1)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out.astype(np.int32)


def _module_source_digest(module_name: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return "missing"
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


def teacher_cache_key(teacher: Any | None = None) -> str | None:
    """Return a key naming a teacher's proposals exactly, or ``None`` when they must not be cached.

    Default teacher (``None``) and :class:`NanoDetTeacher`: the ONNX file's SHA-256, the config and the source
    of ``teacher.py`` (any code change re-labels). Another object: its ``cache_key`` attribute, if it has one.
    """
    if teacher is None or type(teacher).__name__ == "NanoDetTeacher":
        if teacher is None:
            onnx, config = assets.teacher_onnx(verify=False), _default_teacher_config()
        else:
            onnx, config = Path(teacher.onnx_path), dataclasses.asdict(teacher.config)
        payload = {
            "onnx": _file_sha256(onnx),
            "config": config,
            "code": _module_source_digest("edgesync_ros.models.teacher"),
        }
        return "nanodet-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
    key = getattr(teacher, "cache_key", None)
    return str(key) if key else None


def _default_teacher_config() -> dict[str, Any]:
    from edgesync_ros.models.teacher import NanoDetConfig  # torch/onnxruntime only when a key is needed

    return dataclasses.asdict(NanoDetConfig())


class ProposalCache:
    """Teacher proposals per ``(clip content, frame index, frame width, teacher)`` in ``.npz`` files (no pickle).

    One file per clip, width and teacher key holds every frame labelled so far; new frames are merged in and
    the file is replaced atomically, so an interrupted build leaves a valid (smaller) cache.
    """

    def __init__(self, root: Path | None) -> None:
        """Use ``root/proposals`` (``root=None``: no disk cache, everything is recomputed)."""
        self.dir = None if root is None else Path(root) / "proposals"

    def _path(self, info: ClipInfo, max_width: int, key: str) -> Path | None:
        if self.dir is None:
            return None
        digest = hashlib.sha256(f"{info.sha256}|{max_width}|{key}".encode()).hexdigest()[:24]
        return self.dir / f"{info.name}-{digest}.npz"

    def load(self, info: ClipInfo, max_width: int, key: str | None) -> dict[int, FrameRegions]:
        """Return the cached proposals of a clip (empty when none or uncachable)."""
        path = None if key is None else self._path(info, max_width, key)
        if path is None or not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as z:
                idx, off = z["frame_index"], z["offsets"]
                boxes, cls, conf, bg = z["boxes"], z["class_ids"], z["confidences"], z["is_background"]
                fcls, fconf = z["frame_class"], z["frame_confidence"]
        except (OSError, KeyError, ValueError, EOFError):
            return {}  # unreadable or from an older layout: recompute rather than trust it
        return {
            int(f): FrameRegions(boxes[a:b], cls[a:b], conf[a:b], bg[a:b], int(fc), float(fp))
            for f, a, b, fc, fp in zip(
                idx.tolist(), off[:-1].tolist(), off[1:].tolist(), fcls.tolist(), fconf.tolist(), strict=True
            )
        }

    def save(self, info: ClipInfo, max_width: int, key: str | None, regions: Mapping[int, FrameRegions]) -> None:
        """Write all of a clip's proposals (atomically: temporary file, then rename)."""
        path = None if key is None else self._path(info, max_width, key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        order = sorted(regions)
        counts = [regions[f].boxes.shape[0] for f in order]
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    frame_index=np.array(order, np.int64),
                    offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                    boxes=np.concatenate([regions[f].boxes for f in order] or [np.zeros((0, 4), np.int32)]),
                    class_ids=np.concatenate([regions[f].class_ids for f in order] or [np.zeros(0, np.int64)]),
                    confidences=np.concatenate([regions[f].confidences for f in order] or [np.zeros(0, np.float32)]),
                    is_background=np.concatenate([regions[f].is_background for f in order] or [np.zeros(0, bool)]),
                    frame_class=np.array([regions[f].frame_class for f in order], np.int64),
                    frame_confidence=np.array([regions[f].frame_confidence for f in order], np.float32),
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def teacher_frame_results(teacher: ProposalSource, img: npt.NDArray[np.uint8]) -> FrameRegions:
    """Run the teacher on a clean frame: its regions (integer boxes) and its whole-frame label.

    The detector runs once: ``label([img])`` gives the whole-frame label and (NanoDet) the detections in
    ``extras["detections"]``, which ``proposals(img, detections=...)`` reuses.
    """
    h, w = img.shape[:2]
    labels, confs, extras = teacher.label([img])
    dets = extras.get("detections") if isinstance(extras, Mapping) else None
    if dets:
        prop = teacher.proposals(img, detections=dets[0])  # type: ignore[call-arg]
    else:
        prop = teacher.proposals(img)
    frame_class, frame_conf = int(labels[0]), float(confs[0])
    boxes = boxes_to_int(prop.boxes_xyxy, w, h)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # a clamped box may vanish at the border
    return FrameRegions(
        boxes[ok],
        np.asarray(prop.class_ids, np.int64)[ok],
        np.asarray(prop.confidences, np.float32)[ok],
        np.asarray(prop.is_background, bool)[ok],
        int(frame_class),
        float(frame_conf),
    )


# ------------------------------------------------------------------------------------------------------------
# Frames
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class StreamFrame:
    """One stream frame as it goes into (and comes back out of) a bag.

    ``boxes`` are int32 xyxy in frame pixels: object regions first (``n_objects`` of them), then background
    crops; ``class_ids`` (indices of ``TASK_CLASSES``) and ``confidences`` are the teacher's ground truth on
    the clean frame; ``frame_class``/``frame_confidence`` its whole-frame label of the clean frame.
    """

    camera: str
    index: int
    stamp_ns: int
    jpeg: bytes
    width: int
    height: int
    boxes: npt.NDArray[np.int32]
    class_ids: npt.NDArray[np.int64]
    confidences: npt.NDArray[np.float32]
    n_objects: int
    condition: str
    severity: int
    segment: int
    clip: str
    source_frame: int
    chunk: int
    frame_class: int = 0
    frame_confidence: float = 1.0

    def info(self) -> dict[str, Any]:
        """Return the per-frame timeline record (what the bag's condition topic carries, as JSON)."""
        return {
            "camera": self.camera,
            "frame": self.index,
            "stamp_ns": self.stamp_ns,
            "condition": self.condition,
            "severity": self.severity,
            "segment": self.segment,
            "clip": self.clip,
            "source_frame": self.source_frame,
            "chunk": self.chunk,
            "width": self.width,
            "height": self.height,
            "n_objects": self.n_objects,
        }


def _render_task(
    clean: npt.NDArray[np.uint8], condition: str, severity: int, seed_words: tuple[int, ...], quality: int
) -> bytes:
    return render_frame(clean, condition, severity, seed_words, quality)


def _worker_loop(tasks: Any, results: Any) -> None:
    """Render frames from ``tasks`` until a ``None`` arrives; errors travel back as text."""
    # One frame per worker at a time: OpenCV's own thread pool would only oversubscribe the cores.
    cv2.setNumThreads(1)
    while True:
        item = tasks.get()
        if item is None:
            return
        seq, args = item
        try:
            results.put((seq, _render_task(*args), None))
        except Exception as exc:  # reported to the parent, which raises it there
            results.put((seq, None, f"{type(exc).__name__}: {exc}"))


#: Streams shorter than this are rendered in-process whatever ``workers`` says.
MIN_FRAMES_FOR_WORKERS = 64

#: How long the parent waits for any one rendered frame before it checks its workers are still alive.
_RESULT_POLL_S = 5.0


def _ordered_map(tasks: Iterable[tuple[Any, ...]], workers: int, window: int = 32) -> Iterator[bytes]:
    """Render ``tasks`` in order, in ``workers`` spawned processes, with at most ``window`` frames in flight.

    Spawned (not forked) workers: the parent holds onnxruntime/torch/OpenCV thread pools that a fork would
    copy in a broken state. While the workers start, ``__main__`` is swapped for an empty module, so that
    spawning never re-runs the caller's script (a script without an ``if __name__ == "__main__"`` guard would
    otherwise start building a stream again in every worker); the work function lives in this module.
    The bounded window keeps memory flat however long the stream.
    """
    if workers <= 1:
        for t in tasks:
            yield _render_task(*t)
        return
    ctx = multiprocessing.get_context("spawn")
    task_q = ctx.Queue()
    result_q = ctx.Queue()
    procs = [ctx.Process(target=_worker_loop, args=(task_q, result_q), daemon=True) for _ in range(workers)]
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        for p in procs:
            p.start()
    finally:
        sys.modules["__main__"] = main
    try:
        it = iter(tasks)
        done: dict[int, bytes] = {}
        sent = 0
        nxt = 0
        exhausted = False
        while True:
            while not exhausted and sent - nxt < window:
                try:
                    task_q.put((sent, next(it)))
                    sent += 1
                except StopIteration:
                    exhausted = True
            if nxt == sent and exhausted:
                return
            while nxt not in done:
                try:
                    seq, data, err = result_q.get(timeout=_RESULT_POLL_S)
                except queue.Empty:
                    dead = [p.exitcode for p in procs if not p.is_alive()]
                    if dead:
                        raise EdgeSyncError(f"a frame worker died (exit codes {dead})") from None
                    continue
                if err is not None:
                    raise EdgeSyncError(f"rendering frame {seq} failed in a worker: {err}")
                done[seq] = data
            yield done.pop(nxt)
            nxt += 1
    finally:
        for _ in procs:
            task_q.put(None)
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
        task_q.close()
        result_q.close()


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NullBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", leave=False, file=sys.stderr)


def label_clean_frames(
    plan: StreamPlan,
    clean: Mapping[str, Mapping[int, npt.NDArray[np.uint8]]],
    teacher: ProposalSource | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, dict[int, FrameRegions]]:
    """Return teacher regions for every needed clean frame, from the disk cache where possible.

    ``teacher=None`` uses the shipped NanoDet teacher, created only if some frame is not cached.
    """
    key = teacher_cache_key(teacher)
    cache = ProposalCache(cache_dir)
    out: dict[str, dict[int, FrameRegions]] = {}
    made: list[ProposalSource] = [] if teacher is None else [teacher]
    for name, need in plan.needed_frames().items():
        info = plan.clips[name]
        have = cache.load(info, plan.spec.max_width, key)
        missing = sorted(f for f in need if f not in have)
        if missing:
            if not made:
                from edgesync_ros.models.teacher import NanoDetTeacher

                made.append(NanoDetTeacher())
            bar = _progress(len(missing), f"teacher {name}", progress)
            for f in missing:
                img = clean[name][f]
                have[f] = teacher_frame_results(made[0], img)
                bar.update(1)
            bar.close()
            cache.save(info, plan.spec.max_width, key, have)
        out[name] = {f: have[f] for f in need}
    return out


def iter_stream(
    spec: StreamSpec | StreamPlan,
    *,
    cameras: Sequence[str] | None = None,
    teacher: ProposalSource | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Iterator[StreamFrame]:
    """Yield every frame of the stream, all cameras merged by capture time.

    ``cache_dir``: where teacher proposals are cached (``None``: :func:`edgesync_ros.paths.cache_dir`; a path, or use
    :class:`ProposalCache` semantics). ``workers``: processes for corruption + JPEG (``None``: one per core;
    ``0``/``1``: in this process). The output does not depend on ``workers``.
    """
    plan = spec if isinstance(spec, StreamPlan) else plan_stream(spec, cameras)
    sspec = plan.spec
    cache_root = paths.cache_dir() if cache_dir is None else Path(cache_dir)
    need = plan.needed_frames()
    clean = {
        name: read_clean_frames(plan.clips[name], frames, sspec.max_width, progress)
        for name, frames in need.items()
        if frames
    }
    regions = label_clean_frames(plan, clean, teacher, cache_root, progress)
    order = plan.frame_order()
    max_obj = {c.name: c.max_objects for c in sspec.clips}
    cam_seed = {c.name: c.seed for c in sspec.cameras}
    tasks = (
        (
            clean[f.clip][f.source_frame],
            f.condition,
            f.severity,
            (sspec.seed, cam_seed[f.camera], f.index),
            sspec.jpeg_quality,
        )
        for f in order
    )
    n_workers = (os.cpu_count() or 1) if workers is None else max(0, int(workers))
    if len(order) < MIN_FRAMES_FOR_WORKERS:
        n_workers = 0  # starting processes (~1 s each: they import scipy/scikit-image) costs more than it saves
    bar = _progress(len(order), f"stream {sspec.name}", progress)
    try:
        for f, jpeg in zip(order, _ordered_map(tasks, n_workers), strict=True):
            img = clean[f.clip][f.source_frame]
            reg = regions[f.clip][f.source_frame].limited(max_obj[f.clip])
            bar.update(1)
            yield StreamFrame(
                camera=f.camera,
                index=f.index,
                stamp_ns=f.stamp_ns,
                jpeg=jpeg,
                width=int(img.shape[1]),
                height=int(img.shape[0]),
                boxes=reg.boxes,
                class_ids=reg.class_ids,
                confidences=reg.confidences,
                n_objects=int((~reg.is_background).sum()),
                condition=f.condition,
                severity=f.severity,
                segment=f.segment,
                clip=f.clip,
                source_frame=f.source_frame,
                chunk=f.chunk,
                frame_class=reg.frame_class,
                frame_confidence=reg.frame_confidence,
            )
    finally:
        bar.close()


def code_version() -> str:
    """Return a digest of everything that shapes a stream's bytes besides its spec.

    The source of this module, of :mod:`edgesync_ros.data.bags` and of the teacher, plus the versions of
    corrupt-tta, OpenCV (libjpeg) and NumPy (random streams): a change to any of them invalidates cached bags.
    """
    import corrupt_tta

    parts = {
        "stream": _module_source_digest("edgesync_ros.data.stream"),
        "bags": _module_source_digest("edgesync_ros.data.bags"),
        "teacher": _module_source_digest("edgesync_ros.models.teacher"),
        "corrupt_tta": getattr(corrupt_tta, "__version__", "?"),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
