"""Shared, session-scoped models and real frames for the model-zoo tests (loading once keeps them fast)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesync_ros import assets
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig
from edgesync_ros.models.teacher import NanoDetTeacher


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {path}"
    return img


@pytest.fixture(scope="session")
def edge_model() -> EdgeModel:
    return EdgeModel(EdgeModelConfig(device="cpu"))


@pytest.fixture(scope="session")
def teacher() -> NanoDetTeacher:
    return NanoDetTeacher()


@pytest.fixture(scope="session")
def motorcycle() -> np.ndarray:
    return read_image(assets.skimage_data_dir() / "motorcycle_left.png")


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    return read_image(assets.skimage_data_dir() / "chelsea.png")


@pytest.fixture(scope="session")
def dog() -> np.ndarray:
    return read_image(assets.darknet_data_dir() / "dog.jpg")
