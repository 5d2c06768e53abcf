"""``edgesync pretrain``: train the starting edge head on teacher-labelled pretraining data.

A front-end only: the data split, labelling and training are :mod:`edgesync_ros.models.pretrain`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from edgesync_ros.models.edge import default_head_path
from edgesync_ros.models.pretrain import PretrainConfig, pretrain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``edgesync pretrain`` options."""
    d = PretrainConfig()
    parser.add_argument("--out", type=Path, default=default_head_path("mobilenet_v2"),
                        help="head file to write (a .json provenance file is written beside it)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--video-stride", type=int, default=d.video_stride, help="use every N-th dash-cam frame")
    parser.add_argument("--vtest-stride", type=int, default=d.vtest_stride, help="use every N-th vtest frame >= 600")
    parser.add_argument("--max-per-class", type=int, default=d.max_per_class, help="cap on training crops per class")
    parser.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction,
                        help="last fraction of each clip (and random fraction of stills) held out")
    parser.add_argument("--gap-frames", type=int, default=d.gap_frames,
                        help="frames before a clip's held-out block left unused")
    parser.add_argument("--max-frames", type=int, default=None, help="cap frames per source (quick runs)")
    parser.add_argument("--device", default=d.device, help="cpu (default, reproducible), cuda or auto")
    parser.add_argument("--max-epochs", type=int, default=d.train.max_epochs)
    parser.add_argument("--no-flip", action="store_true", help="do not add mirrored training crops")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")


def run(args: argparse.Namespace) -> int:
    """Run pretraining from parsed arguments and print the held-out result; return the exit code."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PretrainConfig(
        seed=args.seed,
        video_stride=args.video_stride,
        vtest_stride=args.vtest_stride,
        max_per_class=args.max_per_class,
        max_frames=args.max_frames,
        holdout_fraction=args.holdout_fraction,
        gap_frames=args.gap_frames,
        flip_augment=not args.no_flip,
        device=args.device,
        train=dataclasses.replace(PretrainConfig().train, max_epochs=args.max_epochs, seed=args.seed),
    )
    record = pretrain(cfg, Path(args.out))
    m = record["heldout"]
    print(f"pretrain: wrote {args.out} (+ .json) in {record['seconds']['total']:.0f} s")
    print(f"pretrain: train crops per class {record['train_counts_after_cap']}")
    print(f"pretrain: held-out crops per class {record['heldout_counts']} on {m.get('frames', 0)} frames")
    if m.get("samples"):
        print(
            f"pretrain: held-out accuracy {m['accuracy']:.3f} (chance {m['chance_accuracy']:.3f}, "
            f"majority '{m['majority_class']}' {m['majority_accuracy']:.3f}); balanced accuracy "
            f"{m['balanced_accuracy']:.3f} (chance/majority {m['chance_balanced_accuracy']:.3f}) "
            f"over {len(m['classes_present'])} classes"
        )
    return 0
