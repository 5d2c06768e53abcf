from __future__ import annotations

import json
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesync_ros.core.bank import AccuracyBank
from edgesync_ros.core.config import BankConfig
from edgesync_ros.core.errors import ConfigError, InvalidInputError


def test_empty_bank_never_divides_by_zero():
    bank = AccuracyBank()
    assert len(bank) == 0 and bank.total_seen == 0
    assert bank.segment_accuracies().shape == (0,)
    assert bank.recent_accuracy is None
    assert not bank.is_full


def test_only_complete_segments_before_full():
    bank = AccuracyBank(90, 10)
    bank.extend([1] * 8)
    assert bank.segment_accuracies().shape == (0,)  # 8 < l = 9
    assert bank.recent_accuracy == 1.0
    bank.append(0)  # 9 bits: one segment, newest-aligned
    np.testing.assert_allclose(bank.segment_accuracies(), [8 / 9])
    bank.extend([1] * 9 + [0, 0])  # 20 bits: two complete segments from the newest, 2 oldest bits wait
    # newest first: [0,0,1,1,1,1,1,1,1] | [1,1,0,1,1,1,1,1,1] | (1,1)
    np.testing.assert_allclose(bank.segment_accuracies(), [7 / 9, 8 / 9])
    assert bank.recent_accuracy == pytest.approx(17 / 20)


def test_fifo_drops_the_oldest_and_segment_zero_is_newest():
    bank = AccuracyBank(90, 10)
    bank.extend([0] * 10)  # will fall out
    bank.extend([1] * 81 + [0] * 9)
    assert len(bank) == 90 and bank.total_seen == 100 and bank.is_full
    acc = bank.segment_accuracies()
    assert acc.shape == (10,)
    assert acc[0] == 0.0 and np.all(acc[1:] == 1.0)
    assert bank.recent_accuracy == pytest.approx(0.9)


def test_extend_longer_than_capacity_keeps_the_newest():
    bank = AccuracyBank(6, 2)
    bank.extend(np.array([1, 1, 1, 0, 0, 0, 1, 0], dtype=np.int64))
    assert bank.bits().tolist() == [0, 1, 0, 0, 0, 1]  # newest first
    np.testing.assert_allclose(bank.segment_accuracies(), [1 / 3, 1 / 3])
    assert bank.total_seen == 8


def test_bool_bits_and_rejections_leave_the_bank_unchanged():
    bank = AccuracyBank(9, 3)
    bank.extend([True, False, True])
    before = bank.to_dict()
    for bad in ([2], [-1], [0.5], np.array([[1, 0]])):
        with pytest.raises(InvalidInputError):
            bank.extend(bad)
    assert bank.to_dict() == before


def test_geometry_is_validated():
    with pytest.raises(ConfigError, match="divisible"):
        AccuracyBank(90, 7)
    assert AccuracyBank.from_config(BankConfig(capacity=20, segments=4)).segment_length == 5


def test_padded_bits_is_read_only_and_newest_first():
    bank = AccuracyBank(6, 2)
    bank.extend([1, 0])
    view = bank.padded_bits()
    assert view.tolist() == [0, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        view[0] = 1


def test_to_dict_from_dict_round_trip_is_json_safe():
    bank = AccuracyBank(90, 10)
    bank.extend([1, 0, 1] * 40)
    data = json.loads(json.dumps(bank.to_dict()))
    again = AccuracyBank.from_dict(data)
    assert again.bits().tolist() == bank.bits().tolist()
    assert again.total_seen == 120 and len(again) == 90
    np.testing.assert_array_equal(again.segment_accuracies(), bank.segment_accuracies())


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"format": "x"}, "format"),
        ({"bits": [0, 2]}, "only 0 and 1"),
        ({"bits": [1] * 91}, "at most 90"),
        ({"total_seen": 1}, "total_seen"),
        ({"segments": 7}, "divisible"),
    ],
)
def test_from_dict_rejects_malformed_snapshots(patch, match):
    data = AccuracyBank(90, 10).to_dict()
    data["bits"] = [1, 0, 1]
    data["total_seen"] = 3
    data.update(patch)
    with pytest.raises(ConfigError, match=match):
        AccuracyBank.from_dict(data)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([(6, 2), (6, 3), (90, 10), (10, 1)]),
    st.lists(st.lists(st.booleans(), max_size=25), max_size=12),
)
def test_bank_matches_a_reference_deque(geometry, batches):
    capacity, segments = geometry
    bank = AccuracyBank(capacity, segments)
    ref: deque[int] = deque(maxlen=capacity)
    total = 0
    for batch in batches:
        bank.extend(batch)
        ref.extend(int(b) for b in batch)
        total += len(batch)
    newest_first = list(ref)[::-1]
    assert bank.bits().tolist() == newest_first
    assert bank.total_seen == total and len(bank) == len(ref)
    seg_len = capacity // segments
    complete = len(ref) // seg_len
    expected = [np.mean(newest_first[i * seg_len : (i + 1) * seg_len]) for i in range(complete)]
    np.testing.assert_allclose(bank.segment_accuracies(), expected)
