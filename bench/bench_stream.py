"""Benchmark building the embedded default stream: cold build seconds and MB per camera-hour.

Cold = empty teacher-proposal cache and no cached bag (a fresh temporary cache directory): decode the clips, run
the NanoDet teacher on every distinct source frame, corrupt + JPEG-encode every stream frame (one process per
core), write the MCAP bag. Warm = the same with the teacher cache filled (what a changed condition schedule
costs). The cache hit (bag up to date, only the key is checked) is recorded as well.

``--fraction F`` builds every camera for ``F`` of its duration and extrapolates the build time linearly to the
full stream; that over-estimates (teacher work saturates at the clips' distinct frames), and the result says
it was extrapolated. MB per camera-hour = bag size / total camera hours of what was built.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_stream.py [--spec default] [--fraction 1.0]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from edgesync_ros.data import bags  # noqa: E402
from edgesync_ros.data import stream as st  # noqa: E402

COLD_GOAL_S = 300.0  # a cold build of the default stream <= 5 min on 2 cores
SIZE_GOAL_MB = 150.0  # <= 150 MB per camera-hour


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="default")
    parser.add_argument("--fraction", type=float, default=1.0, help="build this fraction of each camera")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    if not 0 < args.fraction <= 1:
        parser.error("--fraction must be in (0, 1]")
    spec = st.load_spec(args.spec)
    if args.fraction < 1:
        spec = dataclasses.replace(
            spec, cameras=tuple(dataclasses.replace(c, duration_s=c.duration_s * args.fraction) for c in spec.cameras)
        )
    camera_hours = sum(c.duration_s for c in spec.cameras) / 3600.0
    with tempfile.TemporaryDirectory(prefix="edgesync-bench-stream-") as tmp:
        cache = Path(tmp) / "cache"
        cold = bags.make_stream_bag(spec, Path(tmp) / "cold", cache_dir=cache, workers=args.workers, progress=True)
        frames = sum(cold.frames.values())
        cold_s = cold.seconds / args.fraction
        mb_per_hour = cold.size_bytes / 1e6 / camera_hours
        common = {
            "spec": spec.name,
            "fraction": args.fraction,
            "extrapolated": args.fraction < 1,
            "cameras": len(spec.cameras),
            "frames": frames,
            "camera_hours": round(camera_hours, 3),
            "bag_mb": round(cold.size_bytes / 1e6, 1),
        }
        write_result(
            "stream_mb_per_camera_hour", mb_per_hour, "MB", f"<= {SIZE_GOAL_MB:g} MB", mb_per_hour <= SIZE_GOAL_MB,
            **common,
        )  # fmt: skip
        # Cache hit: the bag is up to date, only its content key is computed and compared.
        hit = bags.make_stream_bag(spec, Path(tmp) / "cold", cache_dir=cache, workers=args.workers)
        # Warm: teacher proposals cached, every frame corrupted, encoded and written again.
        warm = bags.make_stream_bag(spec, Path(tmp) / "warm", cache_dir=cache, workers=args.workers, progress=True)
        write_result(
            "stream_build_cold_s", cold_s, "s", f"<= {COLD_GOAL_S:g} s", cold_s <= COLD_GOAL_S,
            warm_s=round(warm.seconds / args.fraction, 1), cache_hit_s=round(hit.seconds, 2),
            cache_hit_reused=not hit.built, **common,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
