"""The ROS boundary: every camera encoding, malformed images, sample batches and head updates."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from edgesync_ros.core import head_codec
from edgesync_ros.core.errors import InvalidImageError, InvalidInputError, UpdateRejectedError
from edgesync_ros.msg import SampleBatch
from edgesync_ros.ros import conversions as conv
from edgesync_ros.ros.native_stderr import capture_decoder_messages

RNG = np.random.default_rng(0)
FRAME = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def _image(encoding: str, array: np.ndarray, step: int | None = None) -> Image:
    h, w = array.shape[:2]
    row = array.reshape(h, -1)
    step = step or row.shape[1]
    padded = np.zeros((h, step), np.uint8)
    padded[:, : row.shape[1]] = row
    return Image(height=h, width=w, encoding=encoding, step=step, data=padded.tobytes())


@pytest.mark.parametrize(
    "encoding, make",
    [
        ("bgr8", lambda f: f),
        ("rgb8", lambda f: f[:, :, ::-1]),
        ("bgra8", lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA)),
        ("rgba8", lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2RGBA)),
        ("8UC3", lambda f: f),
    ],
)
def test_colour_encodings_decode_to_the_same_bgr(encoding, make):
    out = conv.image_to_bgr(_image(encoding, np.ascontiguousarray(make(FRAME))))
    assert out.shape == FRAME.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, FRAME)


def test_mono_and_yuv422_decode_to_three_channels():
    grey = RNG.integers(0, 256, (6, 8), dtype=np.uint8)
    out = conv.image_to_bgr(_image("mono8", grey))
    np.testing.assert_array_equal(out[:, :, 0], grey)
    np.testing.assert_array_equal(out[:, :, 2], grey)
    # UYVY of a uniform grey frame: U = V = 128, Y = 90 -> BT.601 video range grey (90 - 16) * 255/219 = 86.
    uyvy = np.tile(np.array([128, 90], np.uint8), (6, 8, 1))
    bgr = conv.image_to_bgr(_image("yuv422", uyvy))
    assert bgr.shape == (6, 8, 3) and np.all(np.abs(bgr.astype(int) - 86) <= 1)
    # YUY2 order (Y first) of the same grey must give the same picture.
    yuy2 = np.tile(np.array([90, 128], np.uint8), (6, 8, 1))
    np.testing.assert_array_equal(conv.image_to_bgr(_image("yuv422_yuy2", yuy2)), bgr)


def test_row_padding_is_dropped():
    out = conv.image_to_bgr(_image("bgr8", FRAME, step=8 * 3 + 8))
    np.testing.assert_array_equal(out, FRAME)


@pytest.mark.parametrize(
    "msg, match",
    [
        (Image(height=2, width=2, encoding="32FC1", step=8, data=bytes(16)), "unsupported image encoding"),
        (Image(height=2, width=2, encoding="mono16", step=4, data=bytes(8)), "unsupported image encoding"),
        (Image(height=0, width=4, encoding="bgr8", step=12, data=b""), "empty image"),
        (Image(height=2, width=4, encoding="bgr8", step=12, data=bytes(13)), "truncated"),
        (Image(height=2, width=4, encoding="bgr8", step=6, data=bytes(24)), "step 6 is smaller"),
        (Image(height=2, width=3, encoding="yuv422", step=6, data=bytes(12)), "even width"),
    ],
)
def test_malformed_images_are_rejected_with_a_reason(msg, match):
    with pytest.raises(InvalidImageError, match=match):
        conv.image_to_bgr(msg)


def test_huge_frames_are_refused_before_decoding():
    msg = Image(height=4320, width=7680, encoding="bgr8", step=7680 * 3, data=b"")
    with pytest.raises(InvalidImageError, match="pixel limit"):
        conv.image_to_bgr(msg, max_pixels=4096 * 2160)


def test_compressed_round_trip_and_garbage():
    msg = conv.bgr_to_compressed(np.full((16, 16, 3), 120, np.uint8), Header(frame_id="c"), quality=95)
    out = conv.compressed_to_bgr(msg)
    assert out.shape == (16, 16, 3) and abs(int(out.mean()) - 120) <= 2
    with pytest.raises(InvalidImageError, match="could not decode"):
        conv.compressed_to_bgr(CompressedImage(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(InvalidImageError, match="empty"):
        conv.compressed_to_bgr(CompressedImage(format="jpeg", data=b""))


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(0, 9), width=st.integers(0, 9), step=st.integers(0, 40),
    encoding=st.sampled_from(["bgr8", "rgb8", "mono8", "bgra8", "yuv422", "16UC1", "foo"]),
    data=st.binary(max_size=300),
)
def test_image_decoder_never_fails_unexpectedly(height, width, step, encoding, data):
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=data)
    try:
        out = conv.image_to_bgr(msg)
    except InvalidImageError:
        return
    assert out.shape == (height, width, 3) and out.dtype == np.uint8


def _batch(num_classes: int = 7) -> SampleBatch:
    frames = [(Header(frame_id="a"), np.full((40, 60, 3), 80, np.uint8)),
              (Header(frame_id="b"), np.full((40, 60, 3), 160, np.uint8))]
    probs = np.full(num_classes, 1.0 / num_classes, np.float32)
    samples = [dict(frame_index=i % 2, box=(5, 5, 30, 35), predicted_class=1, probabilities=probs,
                    adaptability=1.5, timeliness=0.75, quality=2.25) for i in range(3)]
    return conv.sample_batch(Header(), "robot1", 2, 20, 0.7, frames, samples)


def test_sample_batch_round_trip():
    decoded = conv.decode_sample_batch(_batch(), num_classes=7)
    assert decoded.edge_id == "robot1" and decoded.model_version == 2 and len(decoded.frames) == 2
    assert [s.frame_index for s in decoded.samples] == [0, 1, 0]
    assert decoded.samples[0].box == (5.0, 5.0, 30.0, 35.0)
    assert abs(float(decoded.frames[1].mean()) - 160) < 3


def test_a_batch_says_which_head_a_local_switch_left():
    plain = _batch()
    assert not plain.switched_locally
    frames = [(Header(frame_id="a"), np.full((40, 60, 3), 80, np.uint8))]
    switched = conv.sample_batch(Header(), "robot1", 0, 20, 0.7, frames, [], switched_from=3)
    assert switched.switched_locally and (switched.model_version, switched.switched_from_version) == (0, 3)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: setattr(m, "samples", []), "empty SampleBatch"),
        (lambda m: setattr(m, "edge_id", ""), "without edge_id"),
        (lambda m: setattr(m.samples[0], "frame_index", 5), "points at frame 5"),
        (lambda m: setattr(m.samples[0], "probabilities", [0.5, 0.5]), "expected 7"),
        (lambda m: setattr(m.samples[1], "probabilities", [float("nan")] * 7), "NaN"),
        (lambda m: setattr(m.samples[2].region, "x_offset", 500), "outside"),
    ],
)
def test_bad_sample_batches_are_rejected(mutate, match):
    msg = _batch()
    mutate(msg)
    with pytest.raises(InvalidInputError, match=match):
        conv.decode_sample_batch(msg, num_classes=7)


def test_oversized_sample_batch_is_rejected():
    with pytest.raises(InvalidInputError, match="over the"):
        conv.decode_sample_batch(_batch(), num_classes=7, max_bytes=100)


def test_head_update_message_round_trip_is_bit_exact():
    state = {"features.18.0.weight": torch.randn(1280, 320, 1, 1), "classifier.1.weight": torch.randn(7, 1280),
             "classifier.1.bias": torch.randn(7)}
    payload = head_codec.encode_head(state, "mobilenet_v2", "robot1", 3, 2, dtype="float32", key=b"k")
    back = conv.head_payload(conv.head_update_msg(payload, Header(frame_id="robot1")))
    assert back == payload
    head_codec.verify_digest(back, key=b"k")


def test_malformed_head_update_message_is_an_update_rejection():
    payload = head_codec.encode_head({"classifier.1.bias": torch.zeros(7)}, "mobilenet_v2", "r", 1, 0)
    msg = conv.head_update_msg(payload)
    msg.tensors[0].shape = [2**31, 2**31]
    with pytest.raises(UpdateRejectedError):
        head_codec.decode_head(conv.head_payload(msg))


@settings(max_examples=40, deadline=None)
@given(
    frame_index=st.integers(0, 5), n_probs=st.integers(0, 9), value=st.floats(allow_nan=True, allow_infinity=True),
    x=st.integers(0, 100), w=st.integers(0, 100), jpeg=st.binary(max_size=64), edge_id=st.text(max_size=5),
)
def test_sample_batch_decoder_never_fails_unexpectedly(frame_index, n_probs, value, x, w, jpeg, edge_id):
    msg = _batch()
    msg.edge_id = edge_id
    msg.samples[0].frame_index = frame_index
    msg.samples[0].probabilities = [value] * n_probs
    msg.samples[1].region.x_offset, msg.samples[1].region.width = x, w
    if jpeg:
        msg.frames[1].data = jpeg
    try:
        decoded = conv.decode_sample_batch(msg, num_classes=7)
    except (InvalidInputError, InvalidImageError):
        return
    assert all(np.isfinite(s.probabilities).all() and s.probabilities.shape == (7,) for s in decoded.samples)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_head_update_decoder_rejects_any_corruption_cleanly(data):
    state = {"classifier.1.weight": torch.randn(7, 16), "classifier.1.bias": torch.randn(7)}
    msg = conv.head_update_msg(head_codec.encode_head(state, "mobilenet_v2", "r", 2, 1))
    field = data.draw(st.sampled_from(["name", "shape", "dtype", "data", "digest", "version"]))
    blob = msg.tensors[data.draw(st.integers(0, 1))]
    if field == "name":
        blob.name = data.draw(st.text(max_size=20))
    elif field == "shape":
        blob.shape = data.draw(st.lists(st.integers(0, 2**20), max_size=4))
    elif field == "dtype":
        blob.dtype = data.draw(st.integers(0, 255))
    elif field == "data":
        blob.data = data.draw(st.binary(max_size=200))
    elif field == "digest":
        msg.digest[data.draw(st.integers(0, 31))] ^= data.draw(st.integers(1, 255))
    else:
        msg.version = data.draw(st.integers(0, 2**32 - 1))
    try:
        payload = conv.head_payload(msg)
        head_codec.verify_digest(payload)
        tensors = head_codec.decode_head(payload)
    except UpdateRejectedError:
        return
    # Anything that decodes and verifies must be exactly what was signed.
    assert set(tensors) <= set(state)


def test_fit_for_jpeg_scales_both_sides_to_the_encoder_limit_and_keeps_ordinary_frames_exact():
    tall = np.zeros((100_000, 1, 3), np.uint8)
    fitted, scale = conv.fit_for_jpeg(tall, max_width=640)
    assert fitted.shape == (conv.JPEG_MAX_SIDE, 1, 3) and scale == pytest.approx(conv.JPEG_MAX_SIDE / 100_000)
    conv.bgr_to_compressed(fitted)  # encodable now
    wide = np.zeros((480, 1280, 3), np.uint8)
    fitted, scale = conv.fit_for_jpeg(wide, max_width=640)
    assert fitted.shape == (240, 640, 3) and scale == 0.5
    small = np.zeros((100, 200, 3), np.uint8)
    fitted, scale = conv.fit_for_jpeg(small, max_width=640)
    assert fitted is small and scale == 1.0


def test_an_unencodable_frame_loses_only_its_own_samples():
    frames = [(Header(frame_id="a"), np.full((40, 60, 3), 80, np.uint8)),
              (Header(frame_id="tall"), np.zeros((70_000, 1, 3), np.uint8)),  # over JPEG's 65500-pixel side
              (Header(frame_id="c"), np.full((40, 60, 3), 160, np.uint8))]
    probs = np.full(7, 1.0 / 7, np.float32)
    samples = [dict(frame_index=i, box=(0, 0, 1, 1), predicted_class=i, probabilities=probs, adaptability=1.0,
                    timeliness=1.0, quality=2.0) for i in range(3)]
    with pytest.raises(InvalidImageError, match="JPEG encoding failed"):
        conv.sample_batch(Header(), "r", 1, 3, 1.0, frames, samples)
    reasons: list[str] = []
    msg = conv.sample_batch(Header(), "r", 1, 3, 1.0, frames, samples, on_unencodable=reasons.append)
    assert [f.header.frame_id for f in msg.frames] == ["a", "c"]
    assert [(s.frame_index, s.predicted_class) for s in msg.samples] == [(0, 0), (1, 2)]
    assert len(reasons) == 1 and "frame 1" in reasons[0]


def test_decoder_noise_goes_to_the_callback_not_to_stderr(capfd, jpeg_declaring):
    damaged = CompressedImage(format="jpeg", data=jpeg_declaring(64, 48))  # entropy data for 8x8 only
    warnings: list[str] = []
    out = conv.compressed_to_bgr(damaged, on_warning=warnings.append)
    assert out.shape == (48, 64, 3)
    assert len(warnings) == 1 and "Corrupt JPEG data" in warnings[0]
    assert "Corrupt JPEG" not in capfd.readouterr().err


def test_other_stderr_output_during_a_decode_still_reaches_stderr(capfd):
    with capture_decoder_messages() as lines:
        os.write(2, b"[WARN] [1.0] [another.node]: unrelated\nCorrupt JPEG data: bad Huffman code\n")
    assert lines == ["Corrupt JPEG data: bad Huffman code"]
    assert "[another.node]: unrelated" in capfd.readouterr().err


def test_head_update_claims_read_sizes_without_copying_the_data():
    payload = head_codec.encode_head({"classifier.1.bias": torch.zeros(7)}, "mobilenet_v2", "r", 3, 2)
    msg = conv.head_update_msg(payload)
    claims = conv.head_update_claims(msg)
    assert claims == payload.claims
    assert claims.tensors[0] == head_codec.TensorClaim("classifier.1.bias", (7,), 0, 28)
