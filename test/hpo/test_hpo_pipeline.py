"""``edgesync hpo``: a tiny real run through the CLI, the YAML it writes, the cloud node reading it; the pieces."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from edgesync_ros import cli
from edgesync_ros.core import hpo as core_hpo
from edgesync_ros.core.config import TrainConfig, load_yaml_section
from edgesync_ros.core.errors import ConfigError, InsufficientDataError
from edgesync_ros.core.hpo import SearchSpace, Segment, search_segment
from edgesync_ros.hpo import cache, compare, pipeline, regions, report, sources, windows, writer

# Tiny but real: 3 sampled frames per clip, 3 stills, 3 trials per video, one refinement round of 2 trials.
TRIALS, REFINE = 3, 2
ARGV = [
    "hpo", "--max-frames", "3", "--trials", str(TRIALS), "--refine-trials", str(REFINE), "--max-rounds", "1",
    "--initial-points", "2", "--mix", "2", "--trial-max-epochs", "3", "--trial-patience", "2", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def hpo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the CLI once (cold cache) and once more (warm cache, teacher forbidden); return what they wrote."""
    root = tmp_path_factory.mktemp("hpo")
    cache = root / "cache"
    first, second = root / "first.yaml", root / "second.yaml"
    t0 = time.perf_counter()
    assert cli.main([*ARGV, "--cache-dir", str(cache), "--out", str(first)]) == 0
    cold = time.perf_counter() - t0

    original = pipeline.NanoDetTeacher

    def no_teacher(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a warm cache must not need the teacher")

    pipeline.NanoDetTeacher = no_teacher  # type: ignore[assignment,misc]
    try:
        t0 = time.perf_counter()
        assert cli.main([*ARGV, "--cache-dir", str(cache), "--out", str(second)]) == 0
        warm = time.perf_counter() - t0
    finally:
        pipeline.NanoDetTeacher = original  # type: ignore[misc]
    return {"first": first, "second": second, "cache": cache, "cold": cold, "warm": warm}


def test_cli_writes_a_yaml_the_cloud_loader_accepts(hpo_run: dict[str, Any]) -> None:
    from edgesync_ros.ros.cloud_node import PARAMS

    path: Path = hpo_run["first"]
    doc = yaml.safe_load(path.read_text())
    assert set(doc) == {"/**/cloud_node", writer.PROVENANCE_SECTION}
    # Only declared cloud_node parameters in the node's section: a strict --params-file user sees nothing unknown.
    declared = {p.name for p in PARAMS}
    node_keys = set(doc["/**/cloud_node"]["ros__parameters"])
    assert node_keys == {"train.lr", "train.momentum", "train.weight_decay", "train.batch_size"}
    assert node_keys <= declared

    train = load_yaml_section(path, "cloud_node")["train"]
    cfg = TrainConfig.from_mapping(train)
    assert type(train["lr"]) is float and type(train["batch_size"]) is int
    assert cfg.batch_size in (16, 32, 64)
    space = SearchSpace()
    assert space.lr[0] <= cfg.lr <= space.lr[1] and space.momentum[0] <= cfg.momentum <= space.momentum[1]

    prov = doc[writer.PROVENANCE_SECTION]["ros__parameters"]
    videos = set(prov["per_video"])
    assert prov["trials"] == TRIALS * len(videos) + (REFINE + 1) * prov["rounds"]
    assert prov["rounds"] == 1 and prov["seed"] == 0 and prov["date"]
    assert 0.0 <= prov["best_score"] <= 1.0
    assert prov["search_space"]["batch_sizes"] == [16, 32, 64]
    assert prov["data"]["max_frames"] == 3 and prov["data"]["regions_total"] == sum(prov["data"]["regions"].values())
    # Disjointness: only pretraining sources were read, and the file says which were never used.
    assert set(prov["data"]["frames"]) <= set(sources.HPO_VIDEOS)
    assert "bikes.mp4" in prov["data"]["never_used"] and "dashcam/challenge03" in prov["data"]["never_used"]


def test_rerun_hits_the_cache_and_finds_the_same_h(hpo_run: dict[str, Any]) -> None:
    files = list(Path(hpo_run["cache"]).glob("pretrain-*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as z:  # a plain npz: readable without pickle
        assert z["features"].dtype == np.float32 and z["features"].shape[1:] == (320, 4, 4)
    first = load_yaml_section(hpo_run["first"], "cloud_node")["train"]
    second = load_yaml_section(hpo_run["second"], "cloud_node")["train"]
    assert first == second
    prov = yaml.safe_load(Path(hpo_run["second"]).read_text())[writer.PROVENANCE_SECTION]["ros__parameters"]
    assert prov["data"]["features_cached"] is True
    assert hpo_run["warm"] < hpo_run["cold"]


def test_cloud_node_uses_the_written_hyperparameters(hpo_run: dict[str, Any], ros_context: Any) -> None:
    from rclpy.parameter import Parameter

    from edgesync_ros.ros.cloud_node import CloudNode

    path: Path = hpo_run["first"]
    train = load_yaml_section(path, "cloud_node")["train"]
    defaults = TrainConfig()
    assert train["lr"] != defaults.lr  # otherwise the check below could pass without the file being read
    node = CloudNode(context=ros_context, parameter_overrides=[
        Parameter("hyperparameters_file", value=str(path)), Parameter("model.head", value="none")])
    try:
        assert node.train_cfg.lr == train["lr"]
        assert node.train_cfg.momentum == train["momentum"]
        assert node.train_cfg.weight_decay == train["weight_decay"]
        assert node.train_cfg.batch_size == train["batch_size"]
        assert node.train_cfg.max_epochs == defaults.max_epochs  # not searched: the cloud's own limit stays
    finally:
        node.destroy_node()


def test_file_passed_with_params_file_sets_only_cloud_train(hpo_run: dict[str, Any]) -> None:
    """ROS itself parses the whole file (both sections) and applies only train.* to cloud_node."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from edgesync_ros.ros.cloud_node import CloudNode

    path: Path = hpo_run["first"]
    train = load_yaml_section(path, "cloud_node")["train"]
    prov = yaml.safe_load(path.read_text())[writer.PROVENANCE_SECTION]["ros__parameters"]
    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]),
               args=["--ros-args", "--params-file", str(path)])
    try:
        # hyperparameters_file "": the h under test is this file, not the installed default.
        node = CloudNode(context=context, parameter_overrides=[
            Parameter("model.head", value="none"), Parameter("hyperparameters_file", value="")])
        try:
            assert node.train_cfg.lr == train["lr"] and node.train_cfg.batch_size == train["batch_size"]
            assert node.get_parameter("train.momentum").value == train["momentum"]
            assert not node.has_parameter("trials") and not node.has_parameter("data.frames_total")
        finally:
            node.destroy_node()
        # The provenance is valid ROS parameters too: a node of that name would receive it.
        reader = Node(writer.PROVENANCE_SECTION, context=context,
                      automatically_declare_parameters_from_overrides=True)
        try:
            assert reader.get_parameter("trials").value == prov["trials"]
            assert reader.get_parameter("data.frames_total").value == prov["data"]["frames_total"]
        finally:
            reader.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


# -- pieces, on synthetic features ---------------------------------------------------------------------------
def _table(rows_per_frame: dict[str, list[int]]) -> regions.RegionTable:
    """A table whose videos have the given number of regions on consecutive frames."""
    video, pos, ids = [], [], []
    for v, counts in rows_per_frame.items():
        for p, n in enumerate(counts):
            video += [v] * n
            pos += [p] * n
            ids += [f"{v}#{p}"] * n
    n = len(video)
    g = torch.Generator().manual_seed(0)
    return regions.RegionTable(
        features=torch.randn(n, 4, generator=g), labels=torch.arange(n) % 3,
        video=np.array(video, dtype=np.str_), frame_pos=np.array(pos, dtype=np.int64),
        frame_id=np.array(ids, dtype=np.str_), frames={v: len(c) for v, c in rows_per_frame.items()},
    )  # fmt: skip


def test_segments_are_consecutive_frames_with_enough_samples() -> None:
    table = _table({"a": [3, 3, 3, 3, 1], "b": [1, 1], "c": [0, 5, 5]})
    segs = windows.video_segments(table, segment_frames=2, min_samples=4, log=lambda _m: None)
    assert set(segs) == {"a", "c"}  # b has 2 regions < 4: dropped
    assert [int(s.labels.numel()) for s in segs["a"]] == [6, 7]  # frames {0,1}, then {2,3} + the short tail {4}
    assert [s.name for s in segs["a"]] == ["a/0", "a/1"]
    assert sum(int(s.labels.numel()) for s in segs["c"]) == 10
    with pytest.raises(InsufficientDataError):
        windows.video_segments(_table({"b": [1, 1]}), 2, 4, log=lambda _m: None)


def test_window_pairs_are_a_window_and_the_next() -> None:
    table = _table({"v": [2, 2, 3, 3, 3, 9], "w": [3, 0, 2, 2], "x": [5, 1]})
    pairs = windows.window_pairs(table, window_regions=5, log=lambda _m: None)
    assert [(a.name, b.name) for a, b in pairs] == [("v/w0", "v/w1"), ("w/w0", "w/w1")]  # x: next window too small
    # v: frames 0-2 (7 regions: frame 2 is not split), then frames 3-4 (6); w: frames 0 and 2 (5), then frame 3 (2)
    assert [(int(a.labels.numel()), int(b.labels.numel())) for a, b in pairs] == [(7, 6), (5, 2)]


def test_search_data_never_comes_from_evaluation_sources() -> None:
    assert sources.hpo_video_name("vtest", 600) == "vtest"
    assert sources.hpo_video_name("still/darknet", 0) == "stills"
    assert sources.hpo_video_name("dashcam/challenge01", 8) == "challenge01"
    with pytest.raises(ConfigError, match="evaluation data"):
        sources.hpo_video_name("vtest", 599)
    with pytest.raises(ConfigError, match="not a pretraining source"):
        sources.hpo_video_name("dashcam/challenge03", 0)
    with pytest.raises(ConfigError, match="not an evaluation clip"):
        next(sources.window_frames(sources.WindowDataConfig(), ["challenge01"]))


def test_cache_round_trip_and_key(tmp_path: Path) -> None:
    table = _table({"a": [2, 3]})
    path = tmp_path / "t.npz"
    table.save(path, "k1")
    back = regions.RegionTable.load(path, "k1")
    assert torch.equal(back.features, table.features) and torch.equal(back.labels, table.labels)
    assert back.video.tolist() == table.video.tolist() and back.frames == table.frames
    with pytest.raises(ValueError, match="another key"):
        regions.RegionTable.load(path, "k2")
    f = tmp_path / "clip.bin"
    f.write_bytes(b"abc")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"w")
    k1 = cache.cache_key("pretrain", {"stride": 4}, [f], weights, 0)
    assert k1 == cache.cache_key("pretrain", {"stride": 4}, [f], weights, 0)
    assert k1 != cache.cache_key("pretrain", {"stride": 5}, [f], weights, 0)
    f.write_bytes(b"abd")  # same size, new content
    os.utime(f, ns=(1, 1))
    assert k1 != cache.cache_key("pretrain", {"stride": 4}, [f], weights, 0)


def test_prune_keeps_the_newest_files_of_a_kind(tmp_path: Path) -> None:
    for i, name in enumerate(["pretrain-a", "pretrain-b", "pretrain-c", "windows-a"]):
        (tmp_path / f"{name}.npz").write_bytes(b"x")
        os.utime(tmp_path / f"{name}.npz", ns=(i * 10**9, i * 10**9))
    deleted = cache.prune_cache(tmp_path, "pretrain", keep=2)
    assert [p.name for p in deleted] == ["pretrain-a.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrain-b.npz", "pretrain-c.npz", "windows-a.npz"]


def test_param_values_are_valid_ros_parameters() -> None:
    value = writer.param_value(
        {"a b": np.float64(0.5), "ints": (1, 2), "mixed": [1, 2.5], "odd": [1, "x"], "empty": [], "none": None}
    )
    assert value == {"a_b": 0.5, "ints": [1, 2], "mixed": [1.0, 2.5], "odd": ["1", "x"], "empty": "none",
                     "none": "none"}  # fmt: skip
    assert type(value["a_b"]) is float


def test_written_file_holds_plain_values_and_round_trips_through_the_loader(tmp_path: Path) -> None:
    """Numpy scalars in h or the provenance become plain YAML values the cloud's loader reads back."""
    path = writer.write_hyperparameters(
        tmp_path / "config" / "hyperparameters.yaml",
        {"lr": np.float64(0.02), "momentum": np.float64(0.85), "batch_size": np.int64(16)},  # type: ignore[dict-item]
        {"data": ["vtest", "bikes"], "segments": np.int64(12), "best_score": np.float64(0.91), "seed": 3},
    )
    text = path.read_text(encoding="utf-8")
    assert "numpy" not in text and "!!python" not in text and "0.9100 after" in text
    prov = yaml.safe_load(text)[writer.PROVENANCE_SECTION]["ros__parameters"]
    assert prov["data"] == ["vtest", "bikes"] and prov["segments"] == 12 and prov["seed"] == 3
    cfg = TrainConfig.from_mapping(load_yaml_section(path, "cloud_node")["train"])
    assert cfg.lr == 0.02 and cfg.momentum == pytest.approx(0.85) and cfg.batch_size == 16
    assert not list(path.parent.glob(".*"))  # the atomic write left no temporary file behind


class _SlowHead(nn.Module):
    """A linear head whose forward takes a while, so progress bars redraw between trials."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.03)
        return self.fc(x)


def test_searches_with_visible_progress_bars_run_every_trial() -> None:
    # core.hpo's skopt callback returns tqdm.update's value; True (a redraw) would stop the search early.
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 3
    seg = Segment("s", torch.randn(24, 4, generator=g) + labels[:, None].float(), labels)
    cfg = TrainConfig(max_epochs=2, patience=1, batch_size=8)
    res = search_segment(_SlowHead(), seg, cfg, SearchSpace(), n_calls=4, seed=0, clock=time.perf_counter,
                         n_initial_points=2, progress=True)
    assert len(res.trials) == 4


def test_online_comparison_scores_offline_and_each_budget() -> None:
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 4, generator=g) * 3

    def seg(name: str, n: int) -> Segment:
        y = torch.arange(n) % 3
        return Segment(name, centres[y] + torch.randn(n, 4, generator=g), y)

    ticks = iter(range(1_000_000))  # a deterministic clock: 1 ms per reading
    scores = compare.compare_online(
        nn.Linear(4, 3), [(seg("v/w0", 40), seg("v/w1", 30))], TrainConfig(max_epochs=20, patience=5, batch_size=8),
        {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}, (2, 3), SearchSpace(), seed=0,
        clock=lambda: next(ticks) / 1000.0, progress=False,
    )  # fmt: skip
    assert [s.method for s in scores] == ["offline", "online2", "online3"]
    assert scores[0].profile_seconds == 0.0 and scores[1].profile_seconds > 0 and scores[2].profile_seconds > 0
    assert scores[0].next_accuracy > 0.6  # well-separated classes: the trained head generalises to the next window
    summary = compare.summarize(scores)
    assert set(summary) == {"offline", "online2", "online3"} and summary["offline"]["windows"] == 1.0
    assert "mean" in report.comparison_table(scores)


def test_default_out_is_the_checkout_config() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert writer.default_out() == repo / "config" / "hyperparameters.yaml"


def test_shipped_hyperparameters_file_is_loadable() -> None:
    """The checked-in config/hyperparameters.yaml (from a full `edgesync hpo` run) is accepted by the cloud."""
    path = Path(__file__).resolve().parents[2] / "config" / "hyperparameters.yaml"
    train = load_yaml_section(path, "cloud_node")["train"]
    TrainConfig.from_mapping(train)
    prov = yaml.safe_load(path.read_text())[writer.PROVENANCE_SECTION]["ros__parameters"]
    assert prov["options"]["max_frames"] == "none"  # a full run, not a quick one
    assert prov["trials"] >= 5 * prov["options"]["trials"]


@pytest.fixture(autouse=True)
def _restore_progress() -> Iterator[None]:
    original = core_hpo._progress
    yield
    core_hpo._progress = original
