"""Hostile input at the edge node's boundary: decompression bombs, memory held by rejected updates, half-applied
refusals, frames the encoder cannot take, rollbacks undone by replay, and what diagnostics say about all of it."""

from __future__ import annotations

import gc
import os
import struct
import tracemalloc
import uuid
import weakref
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from edgesync_ros.core import head_codec
from edgesync_ros.core.errors import InvalidImageError
from edgesync_ros.msg import HeadUpdate
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros.edge_node import EdgeNode
from edgesync_ros.srv import Rollback, SetUploadPolicy

KEY = b"0123456789abcdef-fleet-secret"
MIB = 2**20


def traced_peak(fn: Callable[[], object]) -> int:
    """Peak bytes allocated through Python's allocators (numpy arrays included) while ``fn`` runs."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()


def decode_or_refuse(msg: CompressedImage, max_pixels: int) -> None:
    try:
        conv.compressed_to_bgr(msg, max_pixels)
    except InvalidImageError:
        pass


def png_declaring(width: int, height: int, tail: bytes, bit_depth: int = 8, colour: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(tail)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# -- 1: decompression bombs ------------------------------------------------------------------------------------


def test_a_small_jpeg_declaring_20000x20000_is_refused_without_decoding(jpeg_declaring):
    msg = CompressedImage(format="jpeg", data=jpeg_declaring(20000, 20000))
    assert len(msg.data) < 1000
    with pytest.raises(InvalidImageError, match="20000x20000 .*exceeds"):
        conv.compressed_to_bgr(msg, 4096 * 2160)
    assert traced_peak(lambda: decode_or_refuse(msg, 4096 * 2160)) < MIB  # decoding would take 1.2 GB


def test_a_png_header_declaring_20000x20000_with_random_data_is_refused_without_decoding():
    msg = CompressedImage(format="png", data=png_declaring(20000, 20000, np.random.default_rng(0).bytes(50_000)))
    with pytest.raises(InvalidImageError, match="exceeds"):
        conv.compressed_to_bgr(msg, 4096 * 2160)
    assert traced_peak(lambda: decode_or_refuse(msg, 4096 * 2160)) < MIB


PROPERTY_MAX_PIXELS = 1 << 16
# A decoded image within the limit is 3 bytes per pixel; 16-bit PNG and 4-channel intermediates stay within 16.
PROPERTY_BOUND = 16 * PROPERTY_MAX_PIXELS + MIB


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["bytes", "jpeg", "png", "webp", "bmp"]), width=st.integers(1, 4096),
       height=st.integers(1, 4096), cut=st.integers(0, 600), tail=st.binary(max_size=4096),
       png_depth=st.sampled_from([(8, 2), (16, 6), (8, 0), (1, 0)]))
def test_any_bytes_as_compressed_image_data_stay_under_the_allocation_bound(
        jpeg_declaring, kind, width, height, cut, tail, png_depth):
    if kind == "bytes":
        data = tail
    elif kind == "jpeg":
        base = jpeg_declaring(width, height)
        data = base[: max(4, len(base) - cut)] + tail
    elif kind == "png":
        data = png_declaring(width, height, tail, *png_depth)
    elif kind == "webp":
        data = (b"RIFF" + struct.pack("<I", 22 + len(tail)) + b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4)
                + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") + tail)
    else:
        data = b"BM" + bytes(12) + struct.pack("<IiiHH", 40, width, height, 1, 24) + bytes(24) + tail
    msg = CompressedImage(format="jpeg", data=data)
    assert traced_peak(lambda: decode_or_refuse(msg, PROPERTY_MAX_PIXELS)) <= PROPERTY_BOUND


# -- the node ---------------------------------------------------------------------------------------------------


class Log:
    """Stands in for the node's logger and keeps every line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str) -> Callable[..., None]:
        return lambda text, **_: self.lines.append((level, text))

    def __getattr__(self, level: str) -> Callable[..., None]:
        return self._add(level)

    def text(self) -> str:
        return "\n".join(f"{level}: {text}" for level, text in self.lines)


@pytest.fixture
def make_edge(ros_context) -> Iterator[Callable[..., EdgeNode]]:
    """Build edge nodes with no cloud (nothing spins: callbacks are called directly); destroy them afterwards."""
    nodes: list[EdgeNode] = []
    tag = uuid.uuid4().hex[:8]

    def make(ns: str = f"h{tag}", **params: Any) -> EdgeNode:
        defaults = {"cloud_namespace": f"/nobody_{tag}", "input_mode": "frame", "image_transport": "raw",
                    "model.head": "none", "register_retry_s": 60.0, "status_period_s": 60.0}
        defaults.update(params)
        node = EdgeNode(context=ros_context, namespace=ns,
                        parameter_overrides=[Parameter(k, value=v) for k, v in defaults.items()])
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def update_msg(edge: EdgeNode, version: int, key: bytes | None = None) -> HeadUpdate:
    state = {k: v.detach().float().cpu() + 0.01 * version for k, v in edge.model.head_state().items()}
    return conv.head_update_msg(head_codec.encode_head(state, edge.model.arch, edge.edge_id, version, 0, key=key))


# -- 2: rejected updates hold no memory -------------------------------------------------------------------------


@pytest.mark.ros
def test_rejected_100_mb_head_updates_are_freed_without_a_garbage_collection(make_edge):
    edge = make_edge()
    template = update_msg(edge, 1)
    n = 100 * MIB // 4
    gc.collect()
    gc.disable()  # only reference counting may free the payloads: a reference cycle would keep them
    try:
        baseline = rss_mib()
        for i in range(4):
            msg = update_msg(edge, 1)  # the head's own tensor names; the first one carries 100 MB
            msg.tensors[0].shape = [n]
            msg.tensors[0].data = bytes(n * 4)
            msg.digest = np.frombuffer(head_codec.compute_digest(conv.head_payload(msg)), np.uint8).copy()
            assert not edge.apply_update(msg)
            del msg
            assert rss_mib() < baseline + 50, f"{rss_mib() - baseline:.0f} MiB still held after {i + 1} rejections"
        # Well formed but wrongly signed: rejected on the inference thread, whose exception comes back via a future.
        forged = update_msg(edge, 1)
        forged.digest[0] ^= 0xFF
        data = weakref.ref(forged.tensors[0].data)
        assert not edge.apply_update(forged)
        del forged
        assert data() is None, "the rejected update is still referenced"
    finally:
        gc.enable()
    assert edge.counters["rejected_updates"] == 5 and edge.applier.version == 0
    assert "digest does not match" in edge.last_rejection
    assert edge.apply_update(template)  # the node still applies a good update afterwards


# -- 3: a refused policy request changes nothing ----------------------------------------------------------------


@pytest.mark.ros
def test_a_refused_upload_policy_changes_nothing_and_an_accepted_one_is_logged(make_edge, monkeypatch):
    edge = make_edge(window_size=20, upload_fraction=0.7)
    log = Log()
    monkeypatch.setattr(edge, "get_logger", lambda: log)

    def ask(k: float, window: int) -> SetUploadPolicy.Response:
        return edge._on_set_upload_policy(SetUploadPolicy.Request(upload_fraction=k, window_size=window),
                                          SetUploadPolicy.Response())

    for k, window in [(0.5, 2**32 - 1), (0.0005, 30)]:
        response = ask(k, window)
        assert not response.success and response.message
        assert edge.filter_cfg.upload_fraction == pytest.approx(0.7) and edge.window.window_size == 20
        assert edge.values["upload_fraction"] == pytest.approx(0.7) and edge.values["window_size"] == 20
    assert edge.counters["rejected_requests"] == 2
    assert "upload policy from the service" in log.text() and "refused" in log.text()
    response = ask(0.5, 30)
    assert response.success, response.message
    assert edge.filter_cfg.upload_fraction == 0.5 and edge.window.window_size == 30
    assert "parameters set by the service: upload_fraction 0.7 -> 0.5, window_size 20 -> 30" in log.text()


# -- 4: a frame the encoder cannot take loses no upload ---------------------------------------------------------


@pytest.mark.ros
def test_a_100000x1_frame_is_classified_and_its_window_uploaded_whole(make_edge, monkeypatch):
    edge = make_edge(window_size=2, upload_fraction=1.0, sample_rate_hz=2.0, upload_max_width=640)
    published: list[Any] = []
    monkeypatch.setattr(edge.samples_pub, "publish", published.append)
    frames = [np.full((136, 320, 3), 90, np.uint8), np.full((100_000, 1, 3), 200, np.uint8)]
    for i, frame in enumerate(frames):
        header = Header(frame_id="camera")
        header.stamp.sec = 1000 + i
        edge._on_image(conv.bgr_to_image(frame, header))
    assert edge.wait_idle(120)
    assert edge.counters["frames"] == 2, dict(edge.counters)
    assert edge.counters["upload_errors"] == 0 and edge.counters["unencodable_frames"] == 0, dict(edge.counters)
    assert len(published) == 1 and len(published[0].samples) == 2
    tall = conv.compressed_to_bgr(published[0].frames[published[0].samples[1].frame_index], 10**6)
    assert max(tall.shape[:2]) <= conv.JPEG_MAX_SIDE


# -- 5: replay protection survives rollback and restart ---------------------------------------------------------


@pytest.mark.ros
def test_a_replayed_update_never_undoes_a_rollback_even_after_a_restart(make_edge, tmp_path, monkeypatch):
    key_file = tmp_path / "fleet.key"
    key_file.write_bytes(KEY)
    params = {"state_dir": str(tmp_path / "state"), "fleet_key_file": str(key_file)}
    edge = make_edge("replayed", **params)
    log = Log()
    monkeypatch.setattr(edge, "get_logger", lambda: log)
    v1 = update_msg(edge, 1, KEY)  # validly signed: captured from the transient-local topic, say
    assert edge.apply_update(v1) and edge.applier.version == 1
    answer = edge._on_rollback(Rollback.Request(to_version=0), Rollback.Response())
    assert answer.success and answer.current_version == 0
    assert "rolled back head v1 -> v0" in log.text()
    assert not edge.apply_update(v1)
    assert edge.applier.version == 0 and "never applied twice" in edge.last_rejection
    statuses: list[Any] = []
    diagnostics: list[Any] = []
    monkeypatch.setattr(edge.status_pub, "publish", statuses.append)
    monkeypatch.setattr(edge.diag_pub, "publish", diagnostics.append)
    edge._publish_status()
    values = {kv.key: kv.value for kv in diagnostics[0].status[0].values}
    assert statuses[0].state == "rolled_back"
    assert values["rolled_back_from"] == "v1" and values["rollbacks"] == "1"

    again = make_edge("replayed", **params)  # a restart: same robot, same state directory
    assert (again.applier.version, again.applier.highest_version) == (0, 1)
    assert not again.apply_update(v1) and again.applier.version == 0
    assert again.apply_update(update_msg(again, 2, KEY)) and again.applier.version == 2


# -- 6: diagnostics name rejected inputs by class and warn on a flood; decoder noise stays off stderr ------------


@pytest.mark.ros
def test_diagnostics_warn_on_a_flood_of_rejections_with_the_latest_reason(make_edge, monkeypatch, capfd,
                                                                          jpeg_declaring):
    edge = make_edge(rejection_warn_rate=0.5, fps_warn=0.0, fps_error=0.0)  # one classified frame: no fps
    diagnostics: list[Any] = []
    monkeypatch.setattr(edge.diag_pub, "publish", diagnostics.append)
    for _ in range(10):
        edge._on_image(Image(height=4, width=4, encoding="32FC1", step=16, data=bytes(64)))
    edge._on_compressed(CompressedImage(format="jpeg", data=jpeg_declaring(20000, 20000)))
    edge._on_compressed(CompressedImage(format="jpeg", data=jpeg_declaring(64, 48)))  # damaged but decodable
    assert edge.wait_idle(60)
    edge._publish_status()
    status = diagnostics[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == status.WARN and "rejected inputs/s" in status.message
    assert values["rejected_images"] == "11"
    assert "20000x20000" in values["last_rejected_image"]
    assert values["decoder_warnings"] == "1" and "Corrupt JPEG data" in values["last_decoder_warning"]
    raw = [line for line in capfd.readouterr().err.splitlines() if line.startswith("Corrupt JPEG")]
    assert raw == [], "libjpeg wrote to stderr past the node's logger"

