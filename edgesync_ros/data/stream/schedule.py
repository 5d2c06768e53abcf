"""Scheduling: each camera's seeded timeline of condition segments and scene chunks, one plan per frame.

Every camera gets its own schedule of

* **scene chunks** -- short stretches (``scenes.chunk_s`` seconds) of different clips, interleaved so that an
  edge window of a few tens of seconds is never a single clip, hence never a single class; each clip keeps its
  own play cursor (a seeded start, ``stride`` source frames per stream frame, wrapping at its end; with
  ``scenes.distinct_frames`` it starts at the clip's first frame and never wraps, and planning fails when a camera
  would run out of footage or show a source frame another camera shows), and
* **condition segments** -- each held for a few minutes (``conditions.segment_s``) and ramped in from severity 1
  to its severity over ``ramp_s`` seconds.

Determinism: the schedule comes from ``numpy.random.default_rng([spec.seed, camera.seed, ...])`` alone. Planning
reads no pixels, so it is cheap enough to run before deciding whether a cached stream bag is still valid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgesync_ros.core.errors import ConfigError
from edgesync_ros.data.stream.clips import ClipInfo, probe_clip, usable_frames
from edgesync_ros.data.stream.conditions import CLEAN
from edgesync_ros.data.stream.spec import CameraSpec, ConditionSpec, StreamSpec


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
    """Draw an index by weight, never ``exclude`` while another index has weight (one ``rng.choice`` draw)."""
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
    # Each clip starts at a seeded position, so cameras showing the same clip show different parts of it
    # (with distinct_frames every clip plays from its first frame and never wraps instead).
    cursor = {n: int(rng.integers(len(clip_frames[n]))) for n in names}
    if spec.distinct_frames:
        cursor = dict.fromkeys(names, 0)
    plans: list[FramePlan] = []
    seg_i = 0
    chunk = -1
    prev: int | None = None
    left = 0
    clip = names[0]
    for i in range(n_frames):
        if spec.distinct_frames and cursor[clip] >= len(clip_frames[clip]):
            left = 0  # this clip's footage is used up: the next chunk plays another clip
        if left == 0:
            draw: list[float] = list(clip_w)
            if spec.distinct_frames:
                draw = [w if cursor[n] < len(clip_frames[n]) else 0.0 for n, w in zip(names, clip_w, strict=True)]
                if sum(draw) <= 0:
                    raise ConfigError(_footage_error(spec, cam, names, clip_w, clip_frames))
            prev = _weighted_choice(rng, draw, prev)
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


def _footage_error(
    spec: StreamSpec, cam: CameraSpec, names: Sequence[str], clip_w: Sequence[float],
    clip_frames: Mapping[str, Sequence[int]],
) -> str:  # fmt: skip
    """Say how long a camera's own footage lasts when ``distinct_frames`` runs it out before ``duration_s``."""
    own = sum(len(clip_frames[n]) for n, w in zip(names, clip_w, strict=True) if w > 0)
    return (f"camera {cam.name!r}: with scenes.distinct_frames its clips hold {own} distinct frames, "
            f"{own / spec.fps:.1f} s at {spec.fps:g} fps, less than its duration_s {cam.duration_s:g}: shorten the "
            "camera, give it more footage or lower its clips' stride")


def shared_frames(plan: StreamPlan) -> list[str]:
    """Return each source frame that a camera shows twice or two cameras share (by video content hash)."""
    owner: dict[tuple[str, int], tuple[str, int]] = {}
    problems: list[str] = []
    for name, sched in plan.schedules.items():
        for f in sched.frames:
            key = (plan.clips[f.clip].sha256, f.source_frame)
            if key in owner:
                other, idx = owner[key]
                problems.append(f"{name} frame {f.index} shows {f.clip} source frame {f.source_frame}, "
                                f"already shown by {other} frame {idx}")  # fmt: skip
            else:
                owner[key] = (name, f.index)
    return problems


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
    plan = StreamPlan(spec, infos, {n: build_schedule(spec, n, frames) for n in names})
    if spec.distinct_frames:
        problems = shared_frames(plan)
        if problems:
            raise ConfigError(f"stream {spec.name!r} sets scenes.distinct_frames but {len(problems)} frames repeat "
                              f"footage: {'; '.join(problems[:3])}")  # fmt: skip
    return plan
