"""Head zoo: signatures, shortlist, selection against the current head, bounded and crash-safe storage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from edgesync_ros.core.config import ZooConfig
from edgesync_ros.core.errors import ConfigError, StateError
from edgesync_ros.core.zoo import HeadZoo, signature, signature_distance


def _features(rng: np.random.Generator, centre: np.ndarray, n: int = 12) -> torch.Tensor:
    """Backbone-shaped features [n, C, 2, 2] scattered around a per-channel centre (a "condition")."""
    x = centre[None, :, None, None] + 0.1 * rng.standard_normal((n, centre.size, 2, 2))
    return torch.from_numpy(x.astype(np.float32))


def _head(value: float) -> dict[str, torch.Tensor]:
    return {"classifier.1.weight": torch.full((3, 4), value), "classifier.1.bias": torch.zeros(3)}


def test_signatures_of_one_condition_are_nearer_than_of_another():
    rng = np.random.default_rng(0)
    night, day = rng.standard_normal(8), rng.standard_normal(8)
    a = signature(_features(rng, night), 3, labels=torch.tensor([0, 1] * 6))
    b = signature(_features(rng, night), 3, labels=torch.tensor([0, 1] * 6))
    c = signature(_features(rng, day), 3, labels=torch.tensor([2] * 12))
    assert a.hist.sum() == pytest.approx(1.0) and a.count == 12
    assert signature_distance(a, b, 1.0) < 0.1 < signature_distance(a, c, 1.0)
    probs = torch.softmax(torch.randn(12, 3), dim=1)
    assert signature(_features(rng, day), 3, probabilities=probs).hist.sum() == pytest.approx(1.0)
    with pytest.raises(StateError, match="labels or predicted"):
        signature(_features(rng, day), 3)


def test_the_head_of_the_recurring_condition_is_selected_when_it_beats_the_current_one(tmp_path):
    rng = np.random.default_rng(1)
    conditions = {name: rng.standard_normal(8) for name in ("day", "night", "rain", "fog", "snow", "dusk")}
    zoo = HeadZoo(tmp_path, ZooConfig(enabled=True, shortlist=2, margin=0.05))
    ids = {}
    for i, (name, centre) in enumerate(conditions.items()):
        sig = signature(_features(rng, centre), 3, labels=torch.tensor([i % 3] * 12))
        ids[name] = zoo.add(_head(float(i)), sig, robot="r1", version=i + 1, val_accuracy=0.8, now_s=float(i),
                            tag=name)
    window = signature(_features(rng, conditions["night"]), 3, labels=torch.tensor([1] * 12))
    assert zoo.shortlist(window)[0] == ids["night"]

    def evaluate(state: dict[str, torch.Tensor]) -> float:  # the night head (weights 1.0) fits the night window
        return 0.9 if float(state["classifier.1.weight"][0, 0]) == 1.0 else 0.3

    hit = zoo.select(window, evaluate, current_accuracy=0.5)
    assert hit.best is not None and hit.best.tag == "night" and hit.accuracy == pytest.approx(0.9)
    assert hit.scored == 2 and hit.seconds >= 0.0
    miss = zoo.select(window, evaluate, current_accuracy=0.88)  # 0.9 < 0.88 + margin: keep the current head
    assert miss.best is None and (zoo.hits, zoo.misses) == (1, 1)
    excluded = zoo.select(window, evaluate, current_accuracy=0.5, exclude=lambda h: h == ids["night"])
    assert excluded.best is None or excluded.best.tag != "night"
    loaded = zoo.load(ids["night"])
    assert loaded["classifier.1.weight"].dtype == torch.float16 and float(loaded["classifier.1.weight"][0, 0]) == 1.0


def test_the_least_useful_head_is_evicted_beyond_capacity(tmp_path):
    rng = np.random.default_rng(2)
    zoo = HeadZoo(tmp_path, ZooConfig(enabled=True, capacity=2))
    sig = signature(_features(rng, rng.standard_normal(8)), 3, labels=torch.tensor([0] * 12))
    first = zoo.add(_head(1.0), sig, "r1", 1, 0.8, now_s=0.0)
    second = zoo.add(_head(2.0), sig, "r1", 2, 0.8, now_s=1.0)
    zoo.mark_used(first, now_s=2.0)
    third = zoo.add(_head(3.0), sig, "r1", 3, 0.8, now_s=3.0)
    assert len(zoo) == 2
    with pytest.raises(StateError, match="not in the zoo"):
        zoo.load(second)  # never used: evicted before the used one
    assert zoo.entry(first).hits == 1 and zoo.entry(third).version == 3
    assert len(list((tmp_path / "heads").iterdir())) == 2


def test_the_zoo_survives_sigkill_and_repairs_half_done_writes(tmp_path):
    # A writer adding heads in a loop is killed; the reopened zoo is consistent: every row loads, no orphan file.
    script = textwrap.dedent(f"""
        import numpy as np, torch
        from edgesync_ros.core.config import ZooConfig
        from edgesync_ros.core.zoo import HeadZoo, signature
        zoo = HeadZoo({str(tmp_path)!r}, ZooConfig(enabled=True, capacity=5))
        rng = np.random.default_rng(0)
        i = 0
        while True:
            f = torch.from_numpy(rng.standard_normal((4, 8, 2, 2)).astype(np.float32))
            zoo.add({{"w": torch.randn(64, 64)}}, signature(f, 3, labels=torch.tensor([0, 1, 2, 0])), "r", i, 0.5,
                    float(i))
            i += 1
            if i == 3:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (tmp_path / "heads" / "orphan.pt").write_bytes(b"half a file")
    zoo = HeadZoo(tmp_path, ZooConfig(enabled=True, capacity=5))
    assert 3 <= len(zoo) <= 5
    names = {p.name for p in (tmp_path / "heads").iterdir()}
    assert "orphan.pt" not in names and len(names) == len(zoo)
    for hid in zoo.shortlist(signature(torch.randn(4, 8, 2, 2), 3, labels=torch.tensor([0, 1, 2, 0]))):
        assert zoo.load(hid)["w"].shape == (64, 64)


def test_zoo_config_is_validated():
    with pytest.raises(ConfigError, match="capacity"):
        ZooConfig(capacity=0)
    with pytest.raises(ConfigError, match="margin"):
        ZooConfig(margin=1.5)
