"""Training cost at each method's batch size: a fixed cost per optimiser step plus a cost per sample."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from edgesync_ros.eval import simulator as S
from edgesync_ros.eval.cost import CostMeter, CostProfile, step_and_sample_s


def test_step_and_sample_costs_are_fitted_through_two_batch_sizes():
    # 2 ms per step and 0.1 ms per sample: per-sample seconds at batch 8 = 0.002/8 + 1e-4, at 32 = 0.002/32 + 1e-4.
    step, sample = step_and_sample_s({32: 0.002 / 32 + 1e-4, 8: 0.002 / 8 + 1e-4})
    assert step == pytest.approx(0.002) and sample == pytest.approx(1e-4)
    assert step_and_sample_s({8: 1e-4, 32: 2e-4}) == (0.0, pytest.approx(2e-4))  # noise: no negative step cost


def test_the_meter_charges_one_step_per_training_forward():
    meter = CostMeter()
    module = nn.Linear(4, 2)
    handle = meter.attach(module, train_s=1e-3, eval_s=1e-4, step_s=0.05)
    meter.running = True
    module.train()
    module(torch.zeros(4, 4))
    module(torch.zeros(8, 4))
    module.eval()
    module(torch.zeros(10, 4))
    handle.remove()
    assert meter.elapsed == pytest.approx(2 * 0.05 + 12 * 1e-3 + 10 * 1e-4)


def test_small_batches_cost_more_simulated_training_time(settings, make_camera, edge_model):
    cam = make_camera(n_frames=60)
    cost = CostProfile("steps", 0.0, 0.0, 1e-4, 1e-5, 1e-5, 1e-6, train_s_per_step=0.01)
    sim = S.Simulation({"cam0": cam}, edge_model, cost)
    feats, labels = cam.features_float(np.arange(100)), torch.from_numpy(cam.gt[:100])
    try:
        secs = {}
        for b in (10, 32):
            cfg = dataclasses.replace(settings.train, batch_size=b, max_epochs=2, stopping="fixed_epochs")
            _, _, secs[b] = sim.train(sim.start_state, feats, labels, cfg)
    finally:
        sim.close()
    # 80 training samples for 2 epochs either way; 8 steps per epoch at batch 10, 3 at batch 32 (the 16 left over
    # form a batch of their own).
    assert secs[10] - secs[32] == pytest.approx(2 * (8 - 3) * 0.01)
