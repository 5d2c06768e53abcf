"""Benchmark one step of Algorithm 2's head training against the two GEMMs it cannot avoid.

The simulated evaluation (``bench_eval.py``) spends nearly all its time training the MobileNetV2 head
(``features.18``: 1×1 conv 320→1280 + BN + ReLU6, then dropout + linear) on cached backbone features, so its speed
is bounded by that training. Per sample pass the head needs two GEMMs however it is written: the 1×1 conv forward
(``[P, 320] @ [320, 1280]`` over the P = 4×4 positions of a 128-px crop) and its weight gradient
(``[1280, P] @ [P, 320]``). This script times, on one torch thread (as each simulation worker runs):

* ``train_head`` itself (the real edge head, SGD with momentum and weight decay, validation every epoch) at the
  batch sizes the methods use: 10 (AMS's code) and 16 (the HPO's h);
* those two GEMMs alone at the same shapes (the floor: every other operator free);
* the essential step: the GEMMs plus the kernels no formulation avoids (BatchNorm, ReLU6, pool, classifier, loss,
  forward and backward), called by hand without autograd, optimiser or validation -- what eager PyTorch needs at
  the least, so the GEMM floor's ratio can be read against it;

and projects the warm Table I benchmark onto the floor: each method's wall time from the last ``eval_table_i_warm_s``
result × (GEMM time / step time at its batch size), packed perfectly on the benchmark's workers. ``bench_eval.py``
runs the same measurement in its own run and compares its warm time with the floor there (goal: within 1.5×). Result
``eval_table_i_warm_gemm_floor_s`` (a report, not a goal): the warm Table I time if the two GEMMs were the only work.
The warm goal (<= 120 s on 2 cores) is reachable only if this floor is well below 120 s: everything else --
BatchNorm, ReLU6, pooling, dropout, the classifier, the optimiser, validation, the simulator -- must fit in the
difference.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_train_step.py`` (~1 min).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import RESULTS_DIR, write_result  # noqa: E402
from edgesync_ros.core.config import TrainConfig  # noqa: E402
from edgesync_ros.core.heads import head_spec  # noqa: E402
from edgesync_ros.core.training import train_head  # noqa: E402
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig  # noqa: E402

WARM_GOAL_S = 120.0  # whole Table I warm <= 2 min on 2 cores


def step_ms_per_sample(head: torch.nn.Module, feats: torch.Tensor, labels: torch.Tensor, batch: int,
                       epochs: int) -> float:
    """Wall ms per training sample pass of ``train_head`` (validation passes included, as the simulator runs it)."""
    cfg = TrainConfig(lr=1e-3, momentum=0.9, weight_decay=1e-4, batch_size=batch, max_epochs=epochs,
                      patience=epochs + 1, max_train_seconds=1e9, val_fraction=0.2, seed=0)  # fmt: skip
    t0 = time.perf_counter()
    result = train_head(head, feats, labels, cfg, time.perf_counter)
    wall = time.perf_counter() - t0
    return 1000.0 * wall / (result.train_samples * result.epochs)


def gemm_ms_per_sample(batch: int, positions: int, cin: int, cout: int, reps: int) -> float:
    """Wall ms per sample of the 1×1 conv's forward GEMM plus its weight-gradient GEMM at ``batch`` samples."""
    x = torch.randn(batch * positions, cin)
    w = torch.randn(cout, cin)
    g = torch.randn(batch * positions, cout)
    for _ in range(20):
        x @ w.t()
        g.t() @ x
    t0 = time.perf_counter()
    for _ in range(reps):
        x @ w.t()
        g.t() @ x
    return 1000.0 * (time.perf_counter() - t0) / (reps * batch)


def essential_ms_per_sample(batch: int, positions: int, cin: int, cout: int, classes: int, reps: int) -> float:
    """Wall ms per sample of the least work one training step of this head can do in eager PyTorch.

    The two GEMMs plus the operators no formulation avoids, as single native kernels called by hand (no autograd,
    optimiser, dropout or validation): the batch's rows gathered, BatchNorm forward and backward, ReLU6 forward and
    backward, the average pool and its gradient, the classifier and the loss gradient. Why: it tells how much of a
    step beyond the GEMMs is memory traffic every step must pay, so a ratio to the GEMMs alone can be read.
    """
    gen = torch.Generator().manual_seed(1)
    store = torch.randn(50 * batch, positions, cin, generator=gen)
    w = torch.randn(cout, cin, generator=gen) * 0.05
    gamma, beta = torch.ones(cout), torch.zeros(cout)
    mean, var = torch.zeros(cout), torch.ones(cout)
    cls_w, cls_b = torch.randn(classes, cout, generator=gen) * 0.01, torch.zeros(classes)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    rows_n = batch * positions
    pick = torch.arange(batch)

    def step(i: int) -> None:
        x = store[(torch.arange(batch) + i * batch) % store.shape[0]].view(rows_n, cin)
        y = torch.mm(x, w.t())
        z, save_mean, save_rstd = torch.native_batch_norm(y, gamma, beta, mean, var, True, 0.1, 1e-5)
        z.clamp_(0.0, 6.0)
        pooled = z.view(batch, positions, cout).mean(1)
        prob = torch.softmax(torch.addmm(cls_b, pooled, cls_w.t()), 1)
        prob[pick, labels] -= 1.0
        g_logits = prob / batch
        g_pooled = g_logits @ cls_w
        torch.mm(g_logits.t(), pooled)
        g_z = (g_pooled / positions).unsqueeze(1).expand(batch, positions, cout).reshape(rows_n, cout)
        g_z = torch.ops.aten.hardtanh_backward(g_z, z, 0.0, 6.0)
        g_y = torch.ops.aten.native_batch_norm_backward(g_z, y, gamma, mean, var, save_mean, save_rstd, True, 1e-5,
                                                        [True, True, True])[0]  # fmt: skip
        torch.mm(g_y.t(), x)

    for i in range(20):
        step(i)
    t0 = time.perf_counter()
    for i in range(reps):
        step(i)
    return 1000.0 * (time.perf_counter() - t0) / (reps * batch)


def measure_fractions(samples: int = 1000, epochs: int = 4, repeats: int = 3) -> dict[int, dict[str, float]]:
    """Per batch size the methods use (10: AMS; 16: the HPO's h): ``train_head``, GEMM and essential-step ms per sample.

    On one torch thread (as each simulation worker runs); the median of ``repeats`` timings each.
    """
    torch.set_num_threads(1)
    model = EdgeModel(EdgeModelConfig(device="cpu", warmup=False))
    head = model.head
    spec = head_spec(model.config.arch)
    cin = int(spec.feature_channels)
    side = math.ceil(model.preprocess_config.region_size / 32)  # MobileNetV2's stride: a 128-px crop -> 4x4
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(samples, cin, side, side, generator=gen)
    labels = torch.randint(0, len(model.classes), (samples,), generator=gen)
    cout = int(head.get_submodule(spec.head_input)[0].out_channels)
    rows: dict[int, dict[str, float]] = {}
    for batch in (10, 16):
        step = statistics.median(step_ms_per_sample(head, feats, labels, batch, epochs) for _ in range(repeats))
        gemm = statistics.median(gemm_ms_per_sample(batch, side * side, cin, cout, 300) for _ in range(repeats))
        least = statistics.median(essential_ms_per_sample(batch, side * side, cin, cout, len(model.classes), 300)
                                  for _ in range(repeats))  # fmt: skip
        rows[batch] = {"train_head_ms_per_sample": round(step, 4), "gemm_ms_per_sample": round(gemm, 4),
                       "gemm_fraction": round(gemm / step, 3), "essential_ms_per_sample": round(least, 4),
                       "essential_over_gemm": round(least / gemm, 3),
                       "gemm_gflops": round(4 * side * side * cin * cout / (gemm * 1e6), 1)}  # fmt: skip
        print(f"# batch {batch}: {rows[batch]}", flush=True)
    return rows


def project_floor(method_wall_s: dict[str, float], rows: dict[int, dict[str, float]], jobs: int) -> tuple[float, float]:
    """Return ``(floor_s, floor_core_s)``: warm Table I's time if each method ran only its GEMMs, packed on ``jobs``.

    Each method's wall time × (GEMM / step) at its batch size (AMS 10, every other method 16); the packed time is the
    larger of the total over ``jobs`` workers and the longest single method.
    """
    scaled = {k: s * rows[10 if k.startswith("ams") else 16]["gemm_fraction"] for k, s in method_wall_s.items()}
    core = sum(scaled.values())
    return max(core / jobs, max(scaled.values(), default=0.0)), core


def write_floor(rows: dict[int, dict[str, float]], warm: dict[str, Any]) -> float:
    """Write ``eval_table_i_warm_gemm_floor_s`` for the warm run ``warm`` (its result document); return the floor."""
    per_method = warm["method_wall_s"]
    floor_s, floor_core_s = project_floor(per_method, rows, int(warm["jobs"]))
    write_result(
        "eval_table_i_warm_gemm_floor_s", floor_s, "s",
        f"report: the warm Table I's floor; its <= {WARM_GOAL_S:g} s goal needs this well below it",
        True, warm_goal_s=WARM_GOAL_S, warm_goal_reachable_at_floor=floor_s < WARM_GOAL_S,
        warm_measured_s=warm["value"], warm_method_wall_s=per_method,
        floor_core_s=round(floor_core_s, 1), jobs=warm["jobs"], per_batch=rows, torch_threads=1,
        note="warm Table I if the head's two GEMMs per sample pass were all the work (every other operator, "
             "the optimiser and the simulator free), packed perfectly on the benchmark's worker processes",
    )  # fmt: skip
    return floor_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="training set size")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timings per batch size (the median is kept)")
    args = parser.parse_args()
    rows = measure_fractions(args.samples, args.epochs, args.repeats)
    warm_path = RESULTS_DIR / "eval_table_i_warm_s.json"
    if warm_path.exists():
        write_floor(rows, json.loads(warm_path.read_text(encoding="utf-8")))
    else:
        print(json.dumps({"per_batch": rows, "note": "no eval_table_i_warm_s result to project"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
