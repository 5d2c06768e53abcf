"""The search's output file: h under ``/**/cloud_node`` and its provenance under :data:`PROVENANCE_SECTION`.

ROS applies a parameters file's sections by node name and no node is named ``edgesync_hpo``, so the file can be
passed to ``cloud_node`` with ``--params-file`` (it sets exactly the ``train.*`` it declares) while the provenance
stays machine-readable: every value is a valid ROS parameter (``docs/decisions/hpo-search-setup.md``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgesync_ros import paths
from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.hpo import HpoResult, SearchSpace, Segment
from edgesync_ros.core.persist import atomic_write
from edgesync_ros.hpo.regions import RegionTable
from edgesync_ros.hpo.report import fmt
from edgesync_ros.hpo.sources import HpoDataConfig
from edgesync_ros.models.pretrain import EVAL_CLIPS, PRETRAIN_CLIPS, VTEST_SPLIT_FRAME

#: Section of the output file that holds the provenance (no node has this name; see the module docstring).
PROVENANCE_SECTION = "edgesync_hpo"


def default_out() -> Path:
    """Return the default output: ``config/hyperparameters.yaml`` of the checkout this package (or cwd) is in."""
    for root in (paths.checkout_root(), Path.cwd()):
        if root is not None and (root / "package.xml").is_file() and (root / "config").is_dir():
            return root / "config" / "hyperparameters.yaml"
    return Path.cwd() / "hyperparameters.yaml"


def param_value(value: Any) -> Any:
    """Make ``value`` a valid ROS 2 parameter: Python scalars, homogeneous non-empty lists, nested maps."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {_param_key(k): param_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [param_value(v) for v in list(value)]
        if not items:
            return "none"  # ROS cannot type an empty list
        kinds = {type(v) for v in items}
        if kinds <= {int, float} and float in kinds:
            return [float(v) for v in items]  # ROS arrays are homogeneous: ints among floats become floats
        if len(kinds) == 1 and kinds <= {bool, int, float, str}:
            return items
        return [str(v) for v in items]
    if value is None:
        return "none"
    return str(value)


def _param_key(key: Any) -> str:
    # ROS parameter name tokens: letters, digits, underscores (a dot would nest, a slash would be a namespace).
    return "".join(c if c.isalnum() or c == "_" else "_" for c in str(key))


def write_hyperparameters(path: Path, params: Mapping[str, float | int], provenance: Mapping[str, Any]) -> Path:
    """Write h and its provenance (module docstring) atomically, with a short human summary as comments on top."""
    train = {f"train.{k}": param_value(v) for k, v in params.items()}
    prov = param_value(provenance)
    doc = {"/**/cloud_node": {"ros__parameters": train}, PROVENANCE_SECTION: {"ros__parameters": prov}}
    h = ", ".join(f"{k}={fmt(v)}" for k, v in params.items())
    header = [
        "# Hyperparameters h of Algorithm 2 (head-only training), written by `edgesync hpo`:",
        "# offline Bayesian optimisation (skopt gp_minimize, acq EI) on the pretraining sources only.",
        f"# h: {h}",
        f"# best validation accuracy {provenance.get('best_score', float('nan')):.4f} after "
        f"{provenance.get('trials', '?')} trials, seed {provenance.get('seed', '?')}, {provenance.get('date', '?')}.",
        "# cloud_node reads train.* (parameter hyperparameters_file, or pass this file with --params-file);",
        f"# the {PROVENANCE_SECTION} section is provenance only: no node has that name, so ROS applies nothing",
        "# from it. Regenerate: `edgesync hpo` (see edgesync_ros/hpo/).",
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120)
    atomic_write(path, text.encode("utf-8"))
    return path


def provenance(
    result: HpoResult,
    table: RegionTable,
    videos: Mapping[str, Sequence[Segment]],
    data_cfg: HpoDataConfig,
    space: SearchSpace,
    base_cfg: TrainConfig,
    options: Mapping[str, Any],
    seconds: Mapping[str, float],
    cache_hit: bool,
    init_head: str,
    date: _dt.date,
) -> dict[str, Any]:
    """Return the provenance record written beside h."""
    frames = {v: int(table.frames.get(v, 0)) for v in sorted(table.frames)}
    return {
        "date": date.isoformat(),
        "seed": result.seed,
        "best_score": float(result.score),
        "best_score_meaning": "best validation accuracy of train_head with h on the last mixed refinement segment"
        if result.rounds else "mean of the per-video best validation accuracies",
        "trials": len(result.trials),
        "rounds": result.rounds,
        "stop_reason": result.stop_reason,
        "optimiser": "skopt.gp_minimize(acq_func=EI): per-video search, mean h0, refinement on mixed segments",
        "h0": dict(result.h0),
        "per_video": {name: {"score": r.score, **r.params} for name, r in result.per_video.items()},
        "search_space": {
            "lr": list(space.lr), "momentum": list(space.momentum), "weight_decay": list(space.weight_decay),
            "batch_sizes": list(space.batch_sizes) if space.batch_sizes is not None else "not searched",
        },
        "trial_limits": {"max_epochs": base_cfg.max_epochs, "patience": base_cfg.patience,
                         "max_train_seconds": base_cfg.max_train_seconds, "val_fraction": base_cfg.val_fraction},
        "init_head": init_head,
        "options": dict(options),
        "data": {
            "sources": [f"dashcam/{c}" for c in PRETRAIN_CLIPS] + [f"vtest.avi frames >= {VTEST_SPLIT_FRAME}",
                        "stills: opencv-doc examples/data, darknet data, dash-cam test_images, scikit-image data"],
            "never_used": ["bikes.mp4", f"vtest.avi frames < {VTEST_SPLIT_FRAME}"]
            + [f"dashcam/{c}" for c in EVAL_CLIPS],
            "video_stride": data_cfg.video_stride,
            "vtest_stride": data_cfg.vtest_stride,
            "max_frames": data_cfg.max_frames if data_cfg.max_frames is not None else "none",
            "segment_frames": data_cfg.segment_frames,
            "frames": frames,
            "frames_total": int(sum(frames.values())),
            "regions": table.regions_per_video(),
            "regions_total": len(table),
            "segments": {v: len(s) for v, s in videos.items()},
            "class_counts": table.class_counts(),
            "features_cached": cache_hit,
        },
        "seconds": dict(seconds),
    }
