"""core.persist: tensor files round-trip exactly (names, order, dtypes), torch.save files still load, damage raises."""

from __future__ import annotations

import json

import pytest
import torch

from edgesync_ros.core import persist
from edgesync_ros.core.errors import StateError


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(4, 8, generator=g)
    return {
        "head/features.18.0.weight": torch.randn(6, 3, 2, 2, generator=g).contiguous(memory_format=torch.channels_last),
        "head/classifier.1.bias": torch.randn(7, generator=g).half(),
        "labels": torch.arange(5),
        "empty": torch.zeros(0, dtype=torch.long),
        "a_view": shared[1],  # shares memory with "rows"
        "rows": shared,
        "transposed": torch.randn(3, 5, generator=g).t(),
    }


def test_tensors_round_trip_with_names_order_dtypes_and_values(tmp_path) -> None:
    written = _tensors()
    persist.save_tensors(tmp_path / "t.safetensors", written)
    read = persist.load_tensors(tmp_path / "t.safetensors")
    assert list(read) == list(written)  # the order given, not safetensors' layout order
    for name, tensor in written.items():
        assert read[name].dtype == tensor.dtype and read[name].shape == tensor.shape
        assert torch.equal(read[name], tensor), name


def test_a_file_written_by_torch_save_is_still_read(tmp_path) -> None:
    written = _tensors()
    torch.save(written, tmp_path / "tensors-00000003.pt")
    read = persist.load_tensors(tmp_path / "tensors-00000003.pt")
    assert list(read) == list(written)
    assert all(torch.equal(read[k], v) for k, v in written.items())


def test_damaged_or_foreign_tensor_files_raise_state_error(tmp_path) -> None:
    persist.save_tensors(tmp_path / "whole", _tensors())
    data = (tmp_path / "whole").read_bytes()
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    with pytest.raises(StateError, match="cannot read tensor file .*cut"):
        persist.load_tensors(tmp_path / "cut")
    (tmp_path / "noise").write_bytes(b"not a tensor file" * 10)
    with pytest.raises(StateError, match="cannot read tensor file .*noise"):
        persist.load_tensors(tmp_path / "noise")
    torch.save([torch.zeros(2)], tmp_path / "a_list.pt")
    with pytest.raises(StateError, match="does not hold a dict of tensors"):
        persist.load_tensors(tmp_path / "a_list.pt")
    with pytest.raises(StateError, match="cannot read tensor file .*missing"):
        persist.load_tensors(tmp_path / "missing")


def test_commit_then_restore_returns_the_last_commit_and_drops_older_tensor_files(tmp_path) -> None:
    torch.save({"x": torch.zeros(1)}, tmp_path / "tensors-00000001.pt")  # left by the earlier format
    persist.save_json(tmp_path / "state.json", {"generation": 1, "tensor_file": "tensors-00000001.pt"})
    doc, tensors = persist.restore(tmp_path) or ({}, {})
    assert doc["generation"] == 1 and torch.equal(tensors["x"], torch.zeros(1))

    persist.commit(tmp_path, {"generation": 2, "note": "second"}, {"x": torch.ones(3)})
    doc, tensors = persist.restore(tmp_path) or ({}, {})
    assert doc["note"] == "second" and doc["tensor_file"] == f"tensors-00000002{persist.TENSOR_SUFFIX}"
    assert torch.equal(tensors["x"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["state.json", doc["tensor_file"]])
    assert persist.restore(tmp_path / "nothing_here") is None


def test_restore_refuses_a_document_naming_a_path_outside_its_directory(tmp_path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"tensor_file": "../elsewhere.safetensors"}))
    with pytest.raises(StateError, match="names no valid tensor file"):
        persist.restore(tmp_path)
