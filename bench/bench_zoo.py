"""Head-zoo selection cost: one labelled window against 1,000 stored MobileNetV2 heads.

Run: ``python bench/bench_zoo.py`` (about two minutes on a 2-core CPU; writes ~0.9 GB of float16 heads to a
temporary directory and deletes them). The zoo holds ``--heads`` real-size heads (MobileNetV2 ``features.18`` +
classifier, 7 classes, float16 on disk as the wire carries them), each with a signature of 40 synthetic samples from
one of 50 "conditions" (a per-channel centre of the backbone output). A window of 20 samples from a stored condition
is then matched: shortlist by signature, score the shortlist on the window's features with the real head forward.
Two feature sizes: 320 x 4 x 4 (128 px region crops, the evaluation's mode) and 320 x 7 x 7 (224 px whole frames).
Figures: median selection seconds per window (goal: <= 50 ms on this CPU) and, measured in the same run, the ratio
to scoring every stored head's forward on the window (what selection would cost without signatures, extrapolated
from 20 timed heads); beside them what one candidate costs: reading its file (median of 20 files) and scoring it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import load_average, parse_options, time_call, write_result  # noqa: E402
from edgesync_ros.core.config import ZooConfig  # noqa: E402
from edgesync_ros.core.heads import as_rows  # noqa: E402
from edgesync_ros.core.persist import load_tensors  # noqa: E402
from edgesync_ros.core.zoo import HeadZoo, signature  # noqa: E402
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig  # noqa: E402

OPTIONS = [
    ("--heads", int, 1000, "heads stored in the zoo"),
    ("--conditions", int, 50, "distinct conditions the heads were trained on"),
    ("--windows", int, 20, "windows matched (the median is reported)"),
    ("--shortlist", int, 4, "heads scored per window"),
]


def main() -> None:
    """Run both feature sizes."""
    args = parse_options(__doc__, OPTIONS)
    torch.set_num_threads(2)
    run(args, 4, "zoo_selection_1000_heads", "region crops, 320 x 4 x 4 features")
    run(args, 7, "zoo_selection_1000_heads_frame", "whole frames, 320 x 7 x 7 features")


def run(args, side: int, name: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    """Fill a zoo, time selections, print and store the result ``name``."""
    rng = np.random.default_rng(0)
    replica = EdgeModel(EdgeModelConfig(device="cpu", head=None, warmup=False))  # the cloud's replica
    base = {k: v.detach().clone() for k, v in replica.head_state().items()}
    centres = rng.standard_normal((args.conditions, 320)).astype(np.float32)

    def samples(c: int, n: int) -> torch.Tensor:
        x = centres[c][None, :, None, None] + 0.5 * rng.standard_normal((n, 320, side, side)).astype(np.float32)
        return torch.from_numpy(np.maximum(x, 0.0).astype(np.float32))

    def evaluate_on(features: torch.Tensor, labels: torch.Tensor):  # type: ignore[no-untyped-def]
        # As the cloud scores a candidate (backend.inline.run_scoring): features laid out once, each head checked and
        # scored in the replica head's place.
        features = as_rows(features)

        def evaluate(state: dict[str, torch.Tensor]) -> float:
            return replica.score_head_state(state, features, labels, "zoo candidate")
        return evaluate

    with tempfile.TemporaryDirectory() as tmp:
        zoo = HeadZoo(tmp, ZooConfig(enabled=True, capacity=args.heads, shortlist=args.shortlist))
        t0 = time.perf_counter()
        for i in range(args.heads):
            c = i % args.conditions
            state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in base.items()}
            labels = torch.from_numpy(rng.integers(0, 7, 40))
            zoo.add(state, signature(samples(c, 40), 7, labels=labels), f"r{i % 16}", i + 1, 0.8, float(i),
                    tag=f"c{c}")
        fill_s = time.perf_counter() - t0
        seconds, correct = [], 0
        for _ in range(args.windows):
            c = int(rng.integers(args.conditions))
            feats, labels = samples(c, 20), torch.from_numpy(rng.integers(0, 7, 20))
            sel = zoo.select(signature(feats, 7, labels=labels), evaluate_on(feats, labels), current_accuracy=0.0)
            seconds.append(sel.seconds)
            correct += int(sel.best is not None and sel.best.tag == f"c{c}")
        # The same run's reference: the forward of every stored head on a window (20 heads timed, scaled).
        feats, labels = samples(0, 20), torch.from_numpy(rng.integers(0, 7, 20))
        evaluate = evaluate_on(feats, labels)
        ids = zoo.shortlist(signature(feats, 7, labels=labels))[:1] * 20
        t0 = time.perf_counter()
        for hid in ids:
            evaluate(zoo.load(hid))
        exhaustive_s = (time.perf_counter() - t0) / len(ids) * args.heads
        # Where a selection's time goes: reading one stored head's file (no memory cache), and scoring it.
        files = sorted((Path(tmp) / "heads").iterdir())[:20]
        read_s = []
        for f in files:
            t0 = time.perf_counter()
            load_tensors(f)
            read_s.append(time.perf_counter() - t0)
        state = zoo.load(ids[0])
        score_s = time_call(lambda: evaluate(state), repeat=10, warmup=2)
        zoo.close()
    median = statistics.median(seconds)
    write_result(name, round(median * 1000.0, 2), "ms per window (median)", "<= 50 ms",
                 median <= 0.050, baseline=round(exhaustive_s * 1000.0, 1), ratio=round(median / exhaustive_s, 5),
                 heads=args.heads, conditions=args.conditions, shortlist=args.shortlist, windows=args.windows,
                 window_samples=20, mode=mode, p95_ms=round(float(np.percentile(seconds, 95)) * 1000.0, 2),
                 right_condition_selected=f"{correct}/{args.windows}", fill_seconds=round(fill_s, 1),
                 head_read_ms=round(statistics.median(read_s) * 1000.0, 3),
                 candidate_score_ms=round(score_s * 1000.0, 2),
                 baseline_meaning="ms to score every stored head on the window (no signatures)",
                 **load_average())


if __name__ == "__main__":
    main()
