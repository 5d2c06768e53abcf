"""Benchmark the model zoo: edge-model and teacher throughput (images/s) on this machine.

Edge model (MobileNetV2 with the shipped head, full forward pass, preprocessed input) at batch 1 and 8, at
224 px (whole frames, the paper's setting) and 128 px (regions, this project's default), on the CPU with torch's
default thread count and with one thread (``*_t1``), and, when
torch sees one, on the GPU (fp16, channels-last; the card is named in the result). Teacher: NanoDet-m through
onnxruntime on a real 768x576 vtest.avi frame, preprocessing and decoding included.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_models.py``; results go to ``bench/results/*.json``. Each result
records the 1-minute load average: on a shared 2-core machine other processes can slow these figures many-fold.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import time_call, write_result  # noqa: E402
from edgesync_ros import assets  # noqa: E402
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig  # noqa: E402
from edgesync_ros.models.teacher import NanoDetTeacher  # noqa: E402

# Goals: the edge must keep up with a 10 fps camera at batch 1 on a 2-core CPU (10 images/s); the teacher
# labels every frame of a 10 fps stream only on a bigger cloud machine, here we ask for >= 10 frames/s.
EDGE_GOAL_CPU = 10.0
EDGE_GOAL_GPU = 200.0
TEACHER_GOAL = 10.0


def bench_edge(device: str, threads: int = 0) -> None:
    default_threads = torch.get_num_threads()
    model = EdgeModel(EdgeModelConfig(device=device, cpu_threads=threads))
    suffix = ("" if device == "cpu" else "_cuda") + (f"_t{threads}" if threads else "")
    goal = EDGE_GOAL_CPU if device == "cpu" else EDGE_GOAL_GPU
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    for size in (224, 128):
        for batch in (1, 8):
            x = torch.randn(batch, 3, size, size)
            repeat = 20 if device == "cuda" else max(5, 40 // batch)

            def call(x: torch.Tensor = x) -> object:
                out = model.logits_tensor(x)  # moves the batch to the device and back: what predict pays
                return out

            secs = time_call(call, repeat=repeat, warmup=3)
            ips = batch / secs
            write_result(
                f"edge_images_per_s_b{batch}_{size}{suffix}", ips, "images/s", f">= {goal:g} images/s", ips >= goal,
                device=card, dtype=str(model.dtype).replace("torch.", ""), batch=batch, input_px=size,
                threads=torch.get_num_threads(), load_1m=round(os.getloadavg()[0], 2),
            )  # fmt: skip
    torch.set_num_threads(default_threads)


def bench_teacher() -> None:
    teacher = NanoDetTeacher()
    cap = cv2.VideoCapture(str(assets.vtest_video()))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit("cannot read vtest.avi")
    secs = time_call(lambda: teacher.detect(frame), repeat=20, warmup=3)
    ips = 1.0 / secs
    write_result(
        "teacher_images_per_s", ips, "images/s", f">= {TEACHER_GOAL:g} images/s", ips >= TEACHER_GOAL,
        providers=teacher.providers, frame="vtest.avi 768x576", model="nanodet-m-coco-416.onnx",
        load_1m=round(os.getloadavg()[0], 2),
    )  # fmt: skip


def main() -> int:
    bench_edge("cpu")
    # One intra-op thread: robust when other processes compete for the cores (see EdgeModelConfig.cpu_threads).
    bench_edge("cpu", threads=1)
    if torch.cuda.is_available():
        bench_edge("cuda")
    bench_teacher()
    return 0


if __name__ == "__main__":
    sys.exit(main())
