"""GPU checks and figures: CUDA inference (fp16/fp32), the in-place head apply on the GPU, an update cycle, capacity.

Run where torch sees a CUDA device; elsewhere it prints one ``{"skipped": ...}`` line and exits 0 (CI has no GPU and
nothing in the package requires one). No ROS: the script drives the same library code the nodes call
(:class:`~edgesync_ros.models.edge.EdgeModel`, :class:`~edgesync_ros.models.teacher.NanoDetTeacher`,
:func:`~edgesync_ros.core.training.train_head`, :mod:`~edgesync_ros.core.head_codec`), so it runs on a GPU machine
that has torch but no ROS install. Results (``bench/results/gpu_<name>.json``, machine names the GPU):

1. ``gpu_edge_images_per_s_*``: ``EdgeModel`` on CUDA, fp16 + channels-last (the default there) and fp32, batch 1
   whole frames at 224 px and batch 8 regions at 128 px: bare ``model(x)`` on preprocessed device tensors, and the
   node's path ``predict(frame, regions)`` (preprocess on the CPU, copy, forward, softmax back) on real bikes.mp4
   frames; the ratio path / bare is the GPU analogue of the edge-node throughput goal (>= 0.9x). The node overlaps
   the two halves of that path on two threads (``prepare`` on the executor, the forward on its inference thread):
   ``gpu_edge_pipelined_over_bare`` times that pipeline, without ROS transport, worst case over the four modes.
2. ``gpu_head_apply_ms``: ``HeadApplier.apply`` of an fp16 payload into the fp16 CUDA model: every head tensor
   keeps its ``data_ptr`` (in place), values equal the payload, the version bumps, and a tampered payload is
   refused with the model unchanged. Goal <= 5 ms (as on the CPU).
3. ``gpu_update_cycle_seconds``: one update cycle as the cloud runs it, without transport: the teacher labels 14
   frames' regions (NanoDet ONNX; CUDA provider when onnxruntime has one, else CPU), the replica's backbone extracts
   their features on the GPU, ``train_head`` trains on a 200-sample store with ``config/cloud.yaml`` +
   ``config/hyperparameters.yaml``, the head is encoded (fp16) and applied to an edge model on the GPU. Goal <= 21.3 s
   (the paper's V100 Table II). Also the head trained from the fp16 replica (fp16 head and features, as the cloud
   holds them on CUDA) against the same from an fp32 replica: ``train_head`` trains a float32 copy either way, so
   the accuracy must match (``gpu_fp16_training_accuracy_gap_pt``).
4. ``gpu_cloud_robots_sustained``: from 3's measured label and train seconds, the robots one cloud keeps up with when
   each uploads a batch every window (20 frames at 2 fps = 10 s): labelling must take < 100% of the worker's time;
   the rest trains one robot after another, so the per-robot update interval is N * train_s / (1 - N * label_s / 10).
   Reported for the largest N whose interval stays <= 100 s (the paper's fixed-interval baselines update every 100 s).

Run: ``python bench/bench_gpu.py`` (weights and video from the installed assets), or on a machine without the
assets: ``python bench/bench_gpu.py --weights mobilenet_v2-b0353104.pth --video bikes.mp4``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import video_frames, write_result  # noqa: E402

PAPER_CYCLE_S = 21.3
WINDOW_S = 10.0  # config/edge.yaml: window 20 frames at 2 fps
MAX_INTERVAL_S = 100.0
DEVICE = "cuda"  # --dry-run: "cpu", a quick check of this script on a machine without a GPU (writes nothing)
REPEAT = 200


def sync() -> None:
    """Wait for queued GPU work (a no-op on the CPU)."""
    if DEVICE != "cpu":
        torch.cuda.synchronize()


def cuda_time(fn: Callable[[], object], repeat: int, warmup: int = 5) -> float:
    """Median seconds per ``fn()`` with the GPU synchronised around each call."""
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def load_train_config() -> Any:
    """``config/cloud.yaml``'s ``train.*`` with ``config/hyperparameters.yaml`` on top, as the cloud node loads it."""
    from edgesync_ros.core.config import TrainConfig, load_yaml_section

    values: dict[str, Any] = {}
    for name in ("cloud.yaml", "hyperparameters.yaml"):  # the HPO result overrides the shipped defaults
        values.update(load_yaml_section(REPO / "config" / name, "cloud_node").get("train", {}))
    return TrainConfig.from_mapping(values)


def time_modes(model: Any, frames: list[np.ndarray], boxes: list[np.ndarray], regions: bool) -> dict[str, Any]:
    """Calls/s of bare ``model.model(x)`` on device tensors and of ``model.predict`` from BGR frames."""
    from edgesync_ros.models.preprocessing import preprocess

    cpu_inputs = [preprocess(f, b if regions else None, model.preprocess_config)
                  for f, b in zip(frames, boxes, strict=True)]
    dev_inputs = [model._to_device(x) for x in cpu_inputs]
    n_img = float(np.mean([x.shape[0] for x in cpu_inputs]))
    state = {"i": 0}

    def path() -> None:
        i = state["i"] % len(frames)
        model.predict(frames[i], boxes[i] if regions else None)
        state["i"] += 1

    bare_s = bare_time(model.model, dev_inputs)
    path_s = cuda_time(path, REPEAT)
    pipe_s = pipelined_time(model, frames, boxes if regions else None, REPEAT)
    return {
        "images_per_call": round(n_img, 2),
        "bare_calls_per_s": round(1.0 / bare_s, 1),
        "bare_images_per_s": round(n_img / bare_s, 1),
        "predict_calls_per_s": round(1.0 / path_s, 1),
        "predict_over_bare": round(bare_s / path_s, 3),
        "pipelined_calls_per_s": round(1.0 / pipe_s, 1),
        "pipelined_over_bare": round(bare_s / pipe_s, 3),
        "traced": traced_variant(model, dev_inputs, frames, boxes if regions else None),
    }


def bare_time(module: torch.nn.Module, dev_inputs: list[torch.Tensor]) -> float:
    """Median seconds per bare ``module(x)`` call, cycling through the device tensors ``dev_inputs``."""
    state = {"i": 0}

    def bare() -> None:
        with torch.inference_mode():
            module(dev_inputs[state["i"] % len(dev_inputs)])
        state["i"] += 1

    return cuda_time(bare, REPEAT)


def traced_variant(model: Any, dev_inputs: list[torch.Tensor], frames: list[np.ndarray],
                   boxes: list[np.ndarray] | None) -> dict[str, Any]:
    """The same bare and pipelined timings with a TorchScript trace as the inference module (CPU nodes use one).

    Measures whether tracing (the whole forward in C++, no GIL between operators) would pay on CUDA too; compare
    with the eager figures of the same mode.
    """
    from edgesync_ros.models.edge import _trace

    size = dev_inputs[0].shape[-1]
    example = torch.zeros(1, 3, size, size, device=model.device, dtype=model.dtype)
    eager = model.inference_module
    model.inference_module = _trace(model.model, example.contiguous(memory_format=torch.channels_last))
    try:
        bare_s = bare_time(model.inference_module, dev_inputs)
        pipe_s = pipelined_time(model, frames, boxes, REPEAT)
        with torch.inference_mode():  # the trace must classify as the eager model does (TorchScript may fuse ops)
            diff = max(float((torch.softmax(model.inference_module(x).float(), 1)
                              - torch.softmax(eager(x).float(), 1)).abs().max()) for x in dev_inputs[:20])
        return {"bare_calls_per_s": round(1.0 / bare_s, 1), "pipelined_calls_per_s": round(1.0 / pipe_s, 1),
                "pipelined_over_bare": round(bare_s / pipe_s, 3), "max_abs_prob_diff_vs_eager": round(diff, 5)}
    finally:
        model.inference_module = eager


def pipelined_time(model: Any, frames: list[np.ndarray], boxes: list[np.ndarray] | None, count: int) -> float:
    """Seconds per frame with the edge node's two stages on two threads, without ROS transport.

    As in ``EdgeNode``: the calling thread (the node's executor) runs ``prepare`` while the node's own inference
    worker (:class:`~edgesync_ros.ros.worker.DroppingWorker`, plain threading) runs ``predict_tensor``. The worker
    starts as the node's does: one torch thread, then a warm-up on that thread, because PyTorch caches cuDNN's
    execution plans per thread (``thread_local`` in ATen's cuDNN v8 convolution code) and a thread that never
    warmed up rebuilds them for every batch size. Its queue holds every frame of a pass, so none is dropped and
    the time is the pipeline's.
    """
    from edgesync_ros.models.threads import set_thread_intra_op_threads
    from edgesync_ros.ros.worker import DroppingWorker

    def start() -> None:
        set_thread_intra_op_threads(1)  # config/edge.yaml torch_threads: 1
        model.warmup()

    errors: list[BaseException] = []
    worker: DroppingWorker[torch.Tensor] = DroppingWorker(
        "bench-inference", model.predict_tensor, count, errors.append, on_start=start)
    try:
        worker.call(lambda: None, timeout=600.0)  # returns once the start-up (warm-up) has run
        passes = []
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(count):
                j = i % len(frames)
                worker.submit(model.prepare(frames[j], None if boxes is None else boxes[j]))
            if not worker.wait_idle(600.0):
                raise TimeoutError("the inference worker did not finish a pass in 600 s")
            passes.append((time.perf_counter() - t0) / count)
        if errors or worker.dropped:
            raise RuntimeError(f"pipelined pass failed: {errors[:1]}, {worker.dropped} frames dropped")
        return statistics.median(passes)
    finally:
        worker.close(timeout=10.0)


def bench_inference(weights: str | None, frames: list[np.ndarray], boxes: list[np.ndarray]) -> dict[str, Any]:
    """Images/s of bare ``model(x)`` and of ``EdgeModel.predict`` for fp16 and fp32, frames and regions."""
    from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig

    out: dict[str, Any] = {}
    probs = {}
    for half in (True, False):
        model = EdgeModel(EdgeModelConfig(weights=weights, device=DEVICE, half=half))
        tag = "fp16" if half else "fp32"
        for mode in ("frame", "region"):
            out[f"{tag}_{mode}"] = time_modes(model, frames, boxes, mode == "region")
        probs[tag] = np.concatenate([model.predict(f, b) for f, b in zip(frames, boxes, strict=True)])
        del model
        if DEVICE != "cpu":
            torch.cuda.empty_cache()
    out["fp16_vs_fp32"] = {
        "regions": int(len(probs["fp16"])),
        "top1_agreement": round(float(np.mean(probs["fp16"].argmax(1) == probs["fp32"].argmax(1))), 4),
        "max_abs_prob_diff": round(float(np.abs(probs["fp16"] - probs["fp32"]).max()), 4),
    }
    return out


def bench_apply(weights: str | None) -> dict[str, Any]:
    """In-place, all-or-nothing head apply into the fp16 CUDA model."""
    from edgesync_ros.core import head_codec
    from edgesync_ros.core.errors import UpdateRejectedError
    from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig

    model = EdgeModel(EdgeModelConfig(weights=weights, device=DEVICE))
    applier = head_codec.HeadApplier(model.model, model.arch, "gpu_robot", version=0)
    live = model.head_state()
    ptrs = {k: v.data_ptr() for k, v in live.items()}
    gen = torch.Generator().manual_seed(0)
    times, version = [], 0
    for _ in range(25):
        state = {k: (v.float().cpu() + 0.01 * torch.randn(v.shape, generator=gen)) for k, v in live.items()
                 if v.is_floating_point()}
        version += 1
        payload = head_codec.encode_head(state, model.arch, "gpu_robot", version, version - 1, dtype="float16")
        sync()
        t0 = time.perf_counter()
        applier.apply(payload)
        sync()
        times.append(time.perf_counter() - t0)
    expected = head_codec.decode_head(payload)
    max_err = max(float((live[k].float().cpu() - expected[k].float()).abs().max()) for k in expected)
    in_place = all(v.data_ptr() == ptrs[k] for k, v in model.head_state().items())
    before = {k: v.clone() for k, v in live.items()}
    bad = head_codec.encode_head(state, model.arch, "gpu_robot", version + 1, version, dtype="float16")
    bad = dataclasses.replace(bad, digest=bytes(len(bad.digest)))
    try:
        applier.apply(bad)
        refused = False
    except UpdateRejectedError:
        refused = True
    unchanged = all(torch.equal(before[k], v) for k, v in model.head_state().items())
    return {
        "apply_ms_median": round(1000 * statistics.median(times[5:]), 3),
        "apply_ms_max": round(1000 * max(times[5:]), 3),
        "in_place": in_place,
        "max_abs_error_vs_payload": max_err,
        "version": applier.version,
        "tampered_refused": refused,
        "unchanged_after_refusal": unchanged,
        "model_dtype": str(model.dtype),
    }


def bench_cycle(weights: str | None, frames: list[np.ndarray], boxes: list[np.ndarray]) -> dict[str, Any]:
    """One cloud update cycle on the GPU (label, features, train, encode, apply) and fp16-vs-fp32 training."""
    import onnxruntime as ort

    from edgesync_ros.core import head_codec
    from edgesync_ros.core.training import train_head
    from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
    from edgesync_ros.models.preprocessing import preprocess_many
    from edgesync_ros.models.teacher import NanoDetConfig, NanoDetTeacher

    providers = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    teacher = NanoDetTeacher(NanoDetConfig(providers=providers))
    replica = EdgeModel(EdgeModelConfig(weights=weights, device=DEVICE))
    edge = EdgeModel(EdgeModelConfig(weights=weights, device=DEVICE))
    applier = head_codec.HeadApplier(edge.model, edge.arch, "gpu_robot")
    cfg = load_train_config()

    def label_and_features(fs: list[np.ndarray], bs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, float]:
        t0 = time.perf_counter()
        labels = [teacher.label([f], [b])[0] for f, b in zip(fs, bs, strict=True)]  # per frame, as the cloud node does
        t_label = time.perf_counter() - t0
        inputs, _ = preprocess_many(fs, bs, replica.preprocess_config)
        feats = replica.features_tensor(inputs)
        return feats, torch.as_tensor(np.concatenate(labels), dtype=torch.long), t_label

    # Three windows of 14 frames (k = 0.7 of 20) are labelled one after another; the first pays the one-off costs
    # (CUDA kernels loaded lazily for a new batch shape), the cycle figure uses the later ones. The store holds
    # earlier windows' samples (the frames after the three windows).
    store_f, store_y, _ = label_and_features(frames[42:], boxes[42:])
    windows = []
    for w in range(3):
        sync()
        t0 = time.perf_counter()
        win_f, win_y, t_label = label_and_features(frames[14 * w:14 * (w + 1)], boxes[14 * w:14 * (w + 1)])
        sync()
        windows.append((time.perf_counter() - t0, t_label, win_f, win_y))
    label_s = statistics.mean(t for t, *_ in windows[1:])
    teacher_s = statistics.mean(t for _, t, *_ in windows[1:])
    feats = torch.cat([store_f] + [w[2] for w in windows])
    labels = torch.cat([store_y] + [w[3] for w in windows])

    results: dict[str, Any] = {}
    for dtype in (torch.float16, torch.float32):
        head = replica.head.to(dtype=dtype)
        sync()
        t1 = time.perf_counter()
        res = train_head(head, feats.to(DEVICE, dtype), labels, cfg, time.monotonic)
        sync()
        results[str(dtype).replace("torch.", "")] = {
            "train_s": round(time.perf_counter() - t1, 3),
            "val_accuracy": round(float(res.val_accuracy), 4),
            "epochs": res.epochs,
            "stop_reason": str(res.stop_reason),
        }
        if dtype == torch.float16:
            best = res
    replica.head.to(dtype=replica.dtype)
    t2 = time.perf_counter()
    state = {k: v.detach().cpu() for k, v in best.state_dict.items() if v.is_floating_point()}
    payload = head_codec.encode_head(state, replica.arch, "gpu_robot", 1, 0, dtype="float16")
    encode_s = time.perf_counter() - t2
    sync()
    t3 = time.perf_counter()
    applier.apply(payload)
    sync()
    apply_s = time.perf_counter() - t3
    train_s = results["float16"]["train_s"]
    return {
        "teacher_providers": providers,
        "window_frames": 14,
        "window_samples": round(statistics.mean(int(w[3].numel()) for w in windows), 1),
        "store_samples": int(labels.numel()),
        "label_and_features_s": round(label_s, 3),
        "teacher_s": round(teacher_s, 3),
        "first_window_label_and_features_s": round(windows[0][0], 3),
        "train": results,
        "encode_s": round(encode_s, 4),
        "apply_s": round(apply_s, 4),
        "payload_bytes": payload.nbytes,
        "cycle_s": round(label_s + train_s + encode_s + apply_s, 3),
    }


def capacity(label_s: float, train_s: float) -> dict[str, Any]:
    """Robots one cloud worker sustains, from the measured per-window label and per-update train seconds."""
    rows = {}
    best = 0
    for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
        busy = n * label_s / WINDOW_S
        interval = n * train_s / (1.0 - busy) if busy < 1.0 else None  # None: labelling alone cannot keep up
        rows[str(n)] = {"label_busy_fraction": round(busy, 3),
                        "update_interval_s": None if interval is None else round(interval, 1)}
        if interval is not None and interval <= MAX_INTERVAL_S:
            best = n
    return {"robots_sustained": best, "per_n": rows, "label_only_limit": int(WINDOW_S / label_s)}


def main() -> int:
    """Run every GPU check; print JSON lines and write bench/results/gpu_*.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="MobileNetV2 ImageNet weights (default: installed asset)")
    parser.add_argument("--video", default=None, help="a street video (default: the installed bikes.mp4)")
    parser.add_argument("--dry-run", action="store_true", help="run every step on the CPU, briefly; write nothing")
    parser.add_argument("--only-inference", action="store_true", help="step 1 only (the inference figures)")
    args = parser.parse_args()
    global DEVICE, REPEAT
    if args.dry_run:
        import bench.common

        DEVICE, REPEAT = "cpu", 3
        bench.common.RESULTS_DIR = Path(tempfile.mkdtemp(prefix="bench_gpu_dry_"))
    elif not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device: the GPU figures come from a machine that has one"}))
        return 0
    if args.video is None:
        from edgesync_ros import assets

        args.video = str(assets.bikes_video())
    from edgesync_ros.models.teacher import NanoDetTeacher

    frames = video_frames(args.video, 80, 3)
    proposer = NanoDetTeacher()
    rng = np.random.default_rng(0)
    boxes = [proposer.proposals(f, rng).boxes_xyxy for f in frames]
    whole = [np.array([[0, 0, f.shape[1], f.shape[0]]], np.float32) for f in frames]  # a frame with no proposal
    boxes = [b if len(b) else w for b, w in zip(boxes, whole, strict=True)]
    gpu = torch.cuda.get_device_name(0) if DEVICE != "cpu" else "cpu (dry run)"
    print(f"# {gpu}, torch {torch.__version__}", flush=True)

    inf = bench_inference(args.weights, frames, boxes)
    print("# inference", json.dumps(inf), flush=True)
    agree = inf.pop("fp16_vs_fp32")
    write_result("gpu_fp16_top1_agreement", agree["top1_agreement"], "fraction", ">= 0.99 of fp32's top-1 on the GPU",
                 agree["top1_agreement"] >= 0.99, **agree)
    for key, row in inf.items():
        write_result(f"gpu_edge_images_per_s_{key}", row["bare_images_per_s"], "img/s",
                     "reported (bare model(x) on the GPU)", True, ratio=row["predict_over_bare"], **row)
    frame16 = inf["fp16_frame"]
    write_result("gpu_edge_predict_over_bare", frame16["predict_over_bare"], "x", ">= 0.9x bare model(x)",
                 frame16["predict_over_bare"] >= 0.9, baseline=frame16["bare_calls_per_s"],
                 ratio=frame16["predict_over_bare"], detail=inf)
    worst = min(inf.values(), key=lambda row: row["pipelined_over_bare"])
    write_result("gpu_edge_pipelined_over_bare", worst["pipelined_over_bare"], "x",
                 ">= 0.9x bare model(x), worst of fp16/fp32 x frame/region", worst["pipelined_over_bare"] >= 0.9,
                 baseline=worst["bare_calls_per_s"], ratio=worst["pipelined_over_bare"],
                 per_mode={k: row["pipelined_over_bare"] for k, row in inf.items()})

    if args.only_inference:
        return 0
    app = bench_apply(args.weights)
    print("# apply", json.dumps(app), flush=True)
    ok = app["in_place"] and app["tampered_refused"] and app["unchanged_after_refusal"]
    write_result("gpu_head_apply_ms", app["apply_ms_median"], "ms", "<= 5 ms, in place, all-or-nothing",
                 ok and app["apply_ms_median"] <= 5.0, **app)

    cyc = bench_cycle(args.weights, frames, boxes)
    print("# cycle", json.dumps(cyc), flush=True)
    write_result("gpu_update_cycle_seconds", cyc["cycle_s"], "s", f"<= {PAPER_CYCLE_S} s (paper, V100)",
                 cyc["cycle_s"] <= PAPER_CYCLE_S, baseline=PAPER_CYCLE_S, ratio=PAPER_CYCLE_S / cyc["cycle_s"],
                 **cyc)
    acc16, acc32 = cyc["train"]["float16"]["val_accuracy"], cyc["train"]["float32"]["val_accuracy"]
    write_result("gpu_fp16_training_accuracy_gap_pt", 100 * (acc32 - acc16), "pt", "<= 2 pt below fp32",
                 100 * (acc32 - acc16) <= 2.0, fp16=acc16, fp32=acc32)
    cap = capacity(cyc["label_and_features_s"], cyc["train"]["float16"]["train_s"])
    write_result("gpu_cloud_robots_sustained", cap["robots_sustained"], "robots",
                 f">= 16 with a per-robot update every <= {MAX_INTERVAL_S:g} s", cap["robots_sustained"] >= 16, **cap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
