"""Stream specs: the validated form of ``config/streams/*.yaml`` and where named specs are found.

:func:`spec_from_dict` checks a parsed YAML mapping section by section (top level, ``image``, ``scenes``,
``conditions``, ``cameras``) and fails on the first problem with a message naming its key, so a bad spec fails
at load time rather than minutes into a build.

Disjointness: the starting head is pretrained on other frames, so by default a spec may use only ``bikes``,
``vtest`` frames below 600, and the dash-cam clips ``challenge03``, ``project_video02``, ``project_video03``
(``allow_pretraining_frames: true`` lifts this for experiments that do not evaluate the shipped head).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from edgesync_ros import paths
from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data.stream import validation as check
from edgesync_ros.data.stream.conditions import CLEAN, corruption_names
from edgesync_ros.data.stream.sources import resolve_relative, resolve_source

#: Capture time of frame 0 when a spec gives none: 2026-01-01T00:00:00Z (a fixed epoch keeps builds identical).
DEFAULT_START_TIME_NS = 1_767_225_600 * 1_000_000_000

#: Largest stream or camera seed (NumPy seed words are unsigned 64-bit; signed keeps them JSON- and YAML-safe).
_MAX_SEED = 2**63 - 1

#: Frames that may be used without allow_pretraining_frames: vtest below this index, these dash-cam clips.
_VTEST_EVAL_FRAMES = 600
_EVAL_DASHCAM = ("challenge03", "project_video02", "project_video03")
_PRETRAIN_DASHCAM = ("challenge01", "challenge02", "project_video01")


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
    def from_dict(raw: Any, where: str, base_dir: Path | None = None) -> ClipSpec:
        """Validate one ``scenes.clips`` entry; a relative source path is looked up in ``base_dir`` first."""
        d = check.mapping(where, raw, {f.name for f in dataclasses.fields(ClipSpec)}, ("name", "source"))
        name = check.name(f"{where}.name", d["name"])
        if not isinstance(d["source"], str) or not d["source"]:
            raise check.type_error(f"{where}.source", "bikes, vtest, dashcam/<clip> or a video path", d["source"])
        start = check.integer(f"{where}.start_frame", d.get("start_frame", 0), 0)
        end = d.get("end_frame")
        if end is not None:
            end = check.integer(f"{where}.end_frame", end, start + 1)
        max_obj = d.get("max_objects")
        return ClipSpec(
            name=name,
            source=resolve_relative(d["source"], base_dir),
            start_frame=start,
            end_frame=end,
            stride=check.integer(f"{where}.stride", d.get("stride", 1), 1, 1000),
            weight=check.number(f"{where}.weight", d.get("weight", 1.0), 0.0),
            max_objects=None if max_obj is None else check.integer(f"{where}.max_objects", max_obj, 0, 64),
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
        d = check.mapping(where, raw, keys, ("name", "duration_s") if explicit else ("name",))
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
            severity = check.integer(f"{where}.severity", d["severity"], 1, 5)
        ramp = d.get("ramp_s")
        return ConditionSpec(
            name=name,
            severity=severity,
            weight=1.0 if explicit else check.number(f"{where}.weight", d.get("weight", 1.0), 0.0),
            duration_s=check.number(f"{where}.duration_s", d["duration_s"], 0.0, lo_open=True) if explicit else None,
            ramp_s=None if ramp is None else check.number(f"{where}.ramp_s", ramp, 0.0),
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
    """A validated stream spec (see ``config/streams/default.yaml`` for the annotated format).

    ``distinct_frames`` (``scenes.distinct_frames``): every stream frame shows a source frame that no camera showed
    before -- clips play from their first frame and never wrap, and no two cameras share a source frame -- so no
    prediction is ever made on replayed footage (``config/streams/paper.yaml``).
    """

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
    distinct_frames: bool = False

    def with_seed(self, seed: int | None) -> StreamSpec:
        """Return this spec with another stream seed (``None`` keeps it)."""
        if seed is None:
            return self
        return dataclasses.replace(self, seed=check.integer("seed", seed, 0, _MAX_SEED))

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


def spec_from_dict(raw: Any, *, check_files: bool = True, base_dir: Path | None = None) -> StreamSpec:
    """Validate a parsed YAML mapping into a :class:`StreamSpec`; every problem raises :class:`ConfigError`.

    ``check_files`` also checks that every clip's video exists on this machine (a spec naming a missing clip
    fails here, not minutes into a build). ``base_dir``: where relative clip paths are looked up first (the spec
    file's directory), so a spec and its videos can move together.
    """
    d = check.mapping("stream", raw, _TOP_KEYS, ("name", "scenes", "conditions", "cameras"))
    name = check.name("name", d["name"])
    seed = check.integer("seed", d.get("seed", 0), 0, _MAX_SEED)
    fps = check.number("fps", d.get("fps", 2.0), 0.0, 60.0, lo_open=True)
    start = d.get("start_time")
    start_ns = DEFAULT_START_TIME_NS if start is None else int(round(check.number("start_time", start, 0.0) * 1e9))
    default_duration = d.get("duration_s")
    if default_duration is not None:
        default_duration = check.number("duration_s", default_duration, 0.0, lo_open=True)
    max_width, quality = _image(d.get("image", {}))
    chunk, clips, distinct = _scenes(d["scenes"], base_dir)
    allow = d.get("allow_pretraining_frames", False)
    if not isinstance(allow, bool):
        raise check.type_error("allow_pretraining_frames", "true or false", allow)
    for clip in clips:
        _check_disjoint(clip, allow)
        if check_files:
            resolve_source(clip.source, f"clip {clip.name!r}")
    known = corruption_names()
    segment, ramp, start_cond, menu = _conditions(d["conditions"], known)
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
        cameras=_cameras(d["cameras"], clips, known, default_duration),
        allow_pretraining_frames=allow,
        distinct_frames=distinct,
    )


def _image(raw: Any) -> tuple[int, int]:
    """Validate the ``image`` section: ``(max_width, jpeg_quality)``."""
    image = check.mapping("image", raw, {"max_width", "jpeg_quality"})
    max_width = check.integer("image.max_width", image.get("max_width", 512), 64, 1280)
    quality = check.integer("image.jpeg_quality", image.get("jpeg_quality", 75), 10, 100)
    return max_width, quality


def _scenes(raw: Any, base_dir: Path | None = None) -> tuple[tuple[float, float], tuple[ClipSpec, ...], bool]:
    """Validate the ``scenes`` section: ``(chunk_s, clips, distinct_frames)`` with unique clip names."""
    scenes = check.mapping("scenes", raw, {"chunk_s", "clips", "distinct_frames"}, ("clips",))
    distinct = scenes.get("distinct_frames", False)
    if not isinstance(distinct, bool):
        raise check.type_error("scenes.distinct_frames", "true or false", distinct)
    chunk = check.positive_range("scenes.chunk_s", scenes.get("chunk_s", [6.0, 16.0]))
    clips_raw = check.non_empty_list("scenes.clips", scenes["clips"])
    clips = tuple(ClipSpec.from_dict(c, f"scenes.clips[{i}]", base_dir) for i, c in enumerate(clips_raw))
    clip_names = [c.name for c in clips]
    if len(set(clip_names)) != len(clip_names):
        raise ConfigError(f"scenes.clips: clip names must be unique, got {clip_names}")
    return chunk, clips, distinct


def _conditions(
    raw: Any, known: Sequence[str]
) -> tuple[tuple[float, float], float, str | None, tuple[ConditionSpec, ...]]:
    """Validate the ``conditions`` section: ``(segment_s, ramp_s, start, menu)``."""
    cond = check.mapping("conditions", raw, {"segment_s", "ramp_s", "start", "menu"})
    segment = check.positive_range("conditions.segment_s", cond.get("segment_s", [120.0, 240.0]))
    ramp = check.number("conditions.ramp_s", cond.get("ramp_s", 30.0), 0.0)
    start_cond = cond.get("start", CLEAN)
    if start_cond is not None and start_cond not in known:
        raise ConfigError(f"conditions.start: unknown corruption {start_cond!r}; known: {', '.join(known)}")
    menu_raw = check.non_empty_list("conditions.menu", cond.get("menu", [{"name": CLEAN}]))
    menu = tuple(ConditionSpec.from_dict(c, f"conditions.menu[{i}]", known, False) for i, c in enumerate(menu_raw))
    if sum(c.weight for c in menu) <= 0:
        raise ConfigError("conditions.menu: at least one weight must be > 0")
    if start_cond not in (None, CLEAN) and start_cond not in {c.name for c in menu}:
        raise ConfigError(f"conditions.start {start_cond!r} must be clean or a condition of the menu")
    return segment, ramp, start_cond, menu


def _cameras(
    raw: Any, clips: Sequence[ClipSpec], known: Sequence[str], default_duration: float | None
) -> tuple[CameraSpec, ...]:
    """Validate the ``cameras`` list: unique names and seeds (cameras must drift differently)."""
    cameras = tuple(
        _camera(f"cameras[{i}]", raw_cam, clips, known, default_duration)
        for i, raw_cam in enumerate(check.non_empty_list("cameras", raw))
    )
    names = [c.name for c in cameras]
    seeds = [c.seed for c in cameras]
    if len(set(names)) != len(names):
        raise ConfigError(f"cameras: names must be unique, got {names}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"cameras: seeds must differ so that cameras drift differently, got {seeds}")
    return cameras


def _camera(
    where: str, raw: Any, clips: Sequence[ClipSpec], known: Sequence[str], default_duration: float | None
) -> CameraSpec:
    """Validate one ``cameras`` entry (its duration falls back to the stream-level ``duration_s``)."""
    c = check.mapping(where, raw, {"name", "seed", "duration_s", "clip_weights", "clips", "schedule"}, ("name", "seed"))
    if "duration_s" not in c and default_duration is None:
        raise ConfigError(f"{where}: missing duration_s (and no stream-level duration_s)")
    duration = check.number(f"{where}.duration_s", c.get("duration_s", default_duration), 0.0, lo_open=True)
    weights = check.mapping(f"{where}.clip_weights", c.get("clip_weights", {}), [cl.name for cl in clips])
    cw = tuple(sorted((k, check.number(f"{where}.clip_weights.{k}", v, 0.0)) for k, v in weights.items()))
    if "clips" in c:
        # ``clips``: the camera plays only these (their own weights kept): its footage, no other camera's.
        own = check.non_empty_list(f"{where}.clips", c["clips"])
        unknown = [n for n in own if n not in {cl.name for cl in clips}]
        if unknown:
            raise ConfigError(f"{where}.clips: unknown clip(s) {unknown}; clips: {[cl.name for cl in clips]}")
        cw = tuple(sorted((cl.name, dict(cw).get(cl.name, cl.weight) if cl.name in own else 0.0) for cl in clips))
    merged = {cl.name: cl.weight for cl in clips} | dict(cw)
    if sum(merged.values()) <= 0:
        raise ConfigError(f"{where}: every clip weight is 0")
    sched_raw = c.get("schedule", [])
    if not isinstance(sched_raw, list):
        raise check.type_error(f"{where}.schedule", "a list", sched_raw)
    schedule = tuple(ConditionSpec.from_dict(s, f"{where}.schedule[{j}]", known, True) for j, s in enumerate(sched_raw))
    return CameraSpec(
        name=check.name(f"{where}.name", c["name"]),
        seed=check.integer(f"{where}.seed", c["seed"], 0, _MAX_SEED),
        duration_s=duration,
        clip_weights=cw,
        schedule=schedule,
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
    checkout = paths.checkout_root()
    dirs = [] if checkout is None else [checkout / "config" / "streams"]
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
        return spec_from_dict(raw, check_files=check_files, base_dir=path.parent).with_seed(seed)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
