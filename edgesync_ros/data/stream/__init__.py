"""Drifting camera streams built from real packaged video: a YAML spec -> a deterministic sequence of frames.

A stream spec (``config/streams/*.yaml``, loaded by :func:`load_spec`) describes one or more **cameras**, each
with its own seeded schedule of scene chunks (short stretches of different clips) and condition segments (clean,
night, fog, snow, ... held for a few minutes and ramped in). :func:`plan_stream` turns a spec into every frame's
plan without reading pixels; :func:`iter_stream` renders the frames. The same spec and seed give byte-identical
frames whatever the number of worker processes or the order of work.

This package is the public facade; each concern lives in its own module:

========================  ==================================================================================
module                    concern
========================  ==================================================================================
:mod:`.spec`              the spec's dataclasses, validation, and where named specs are found
:mod:`.validation`        typed checks of parsed YAML values (messages name the key)
:mod:`.sources`           a clip source name -> its video file
:mod:`.conditions`        clean / night / corrupt-tta corruptions applied to one frame, JPEG encoding
:mod:`.clips`             probing and decoding clip videos
:mod:`.schedule`          per-camera condition segments, scene chunks and frame plans
:mod:`.proposals`         the teacher's regions and labels of clean frames, cached on disk
:mod:`.pool`              rendering frames in spawned worker processes, in order
:mod:`.render`            :class:`StreamFrame` and :func:`iter_stream`
:mod:`.digest`            the code version that keys cached stream bags
:mod:`.progress`          progress bars for the slow steps
========================  ==================================================================================

Modules inside the package import their siblings directly, never this facade. No rclpy here (see
:mod:`edgesync_ros.data.bags` for rosbag2 files).
"""

from __future__ import annotations

from edgesync_ros.data.stream.clips import ClipInfo, output_size, probe_clip, read_clean_frames, usable_frames
from edgesync_ros.data.stream.conditions import (
    CLEAN,
    NIGHT,
    NIGHT_LEVELS,
    apply_condition,
    corruption_names,
    night,
    render_frame,
)
from edgesync_ros.data.stream.digest import code_version
from edgesync_ros.data.stream.proposals import (
    FrameRegions,
    ProposalCache,
    ProposalSource,
    boxes_to_int,
    label_clean_frames,
    teacher_cache_key,
    teacher_frame_results,
)
from edgesync_ros.data.stream.render import StreamFrame, iter_stream
from edgesync_ros.data.stream.schedule import (
    CameraSchedule,
    FramePlan,
    Segment,
    StreamPlan,
    build_schedule,
    condition_segments,
    plan_stream,
    shared_frames,
)
from edgesync_ros.data.stream.sources import resolve_source
from edgesync_ros.data.stream.spec import (
    DEFAULT_START_TIME_NS,
    CameraSpec,
    ClipSpec,
    ConditionSpec,
    StreamSpec,
    find_spec,
    load_spec,
    spec_from_dict,
    streams_dirs,
)

__all__ = [
    "CLEAN",
    "DEFAULT_START_TIME_NS",
    "NIGHT",
    "NIGHT_LEVELS",
    "CameraSchedule",
    "CameraSpec",
    "ClipInfo",
    "ClipSpec",
    "ConditionSpec",
    "FramePlan",
    "FrameRegions",
    "ProposalCache",
    "ProposalSource",
    "Segment",
    "StreamFrame",
    "StreamPlan",
    "StreamSpec",
    "apply_condition",
    "boxes_to_int",
    "build_schedule",
    "code_version",
    "condition_segments",
    "corruption_names",
    "find_spec",
    "iter_stream",
    "label_clean_frames",
    "load_spec",
    "night",
    "output_size",
    "plan_stream",
    "probe_clip",
    "read_clean_frames",
    "render_frame",
    "resolve_source",
    "shared_frames",
    "spec_from_dict",
    "streams_dirs",
    "teacher_cache_key",
    "teacher_frame_results",
    "usable_frames",
]
