"""Benchmark turning a bag recorded by another tool into a stream bag: cold seconds and the cache hit.

The bag is what a robot's recorder leaves: sqlite3, raw ``sensor_msgs/Image`` bgr8 on ``/front_camera/image_raw``
at 10 fps, 600 frames (60 s; the packaged bikes and vtest clips, 640 px wide), no edgesync topics, written here
with ``rosbags``. Cold = a fresh cache: every frame's stamp read and its fields checked, the frames sampled at the
edge's 2 Hz decoded, JPEG-encoded and labelled by the NanoDet teacher, the stream bag written. Cache hit = the
same call again as a new command makes it (the bag's files hashed afresh, the key compared, nothing rebuilt).

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_recorded.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402

from bench.common import load_average, video_frames, write_result  # noqa: E402
from edgesync_ros import assets  # noqa: E402
from edgesync_ros.data import bags, recorded  # noqa: E402
from edgesync_ros.data.stream import clips  # noqa: E402

FRAMES, FPS, WIDTH = 600, 10.0, 640
COLD_GOAL_S = 60.0  # no slower than the recording itself plays
HIT_GOAL_S = 2.0


def write_robot_bag(path: Path) -> float:
    """Write the 600-frame raw bag; return its size in MB."""
    frames = video_frames(assets.bikes_video(), 250, 1) + video_frames(assets.vtest_video(), FRAMES - 250, 1)
    store = bags.typestore()
    t = store.types
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/front_camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i, frame in enumerate(frames[:FRAMES]):
            h, w = frame.shape[:2]
            img = cv2.resize(frame, (WIDTH, round(h * WIDTH / w)), interpolation=cv2.INTER_AREA)
            stamp = 1_700_000_000 * 10**9 + round(i * 1e9 / FPS)
            sec, nsec = divmod(stamp, 10**9)
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                              frame_id="front_camera")  # fmt: skip
            msg = t["sensor_msgs/msg/Image"](header=header, height=img.shape[0], width=WIDTH, encoding="bgr8",
                                             is_bigendian=0, step=WIDTH * 3, data=np.ascontiguousarray(img).reshape(-1))
            writer.write(conn, stamp + 20_000_000, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="edgesync-bench-recorded-") as tmp:
        bag = Path(tmp) / "robot_bag"
        size_mb = write_robot_bag(bag)
        load = load_average()
        t0 = time.perf_counter()
        rec = recorded.prepare(bag, cache_dir=Path(tmp) / "cache", progress=True)
        cold = time.perf_counter() - t0
        clips._SHA_MEMO.clear()  # as a new command would: the bag's files are hashed again
        t0 = time.perf_counter()
        again = recorded.prepare(bag, cache_dir=Path(tmp) / "cache")
        hit = time.perf_counter() - t0
        desc = bags.stream_description(rec.bag)
        sampled = int(desc["recorded"]["sampled"])
        regions = sum(int(f.boxes.shape[0]) for f in bags.read_stream(rec.bag))
        write_result(
            "recorded_bag_prepare_cold_s", cold, "s", f"<= {COLD_GOAL_S:g} s (the recording's length)",
            cold <= COLD_GOAL_S, frames=FRAMES, fps=FPS, sampled_frames=sampled, sample_rate_hz=rec.fps,
            regions=regions, bag_mb=round(size_mb, 1), storage="sqlite3", image="sensor_msgs/Image bgr8 640 px",
            s_per_sampled_frame=round(cold / max(sampled, 1), 3), cache_hit_s=round(hit, 2),
            cache_hit_reused=again.bag == rec.bag, **load,
        )  # fmt: skip
        write_result("recorded_bag_cache_hit_s", hit, "s", f"<= {HIT_GOAL_S:g} s", hit <= HIT_GOAL_S,
                     bag_mb=round(size_mb, 1), **load)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
