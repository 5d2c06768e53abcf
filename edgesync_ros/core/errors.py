"""Exceptions raised by edgesync_ros.

Every class says when it is raised. Nodes catch :class:`EdgeSyncError` at the callback boundary,
log the message (throttled) and keep running; services answer ``success=False`` with it.
"""

from __future__ import annotations


class EdgeSyncError(Exception):
    """Raised when any edgesync_ros operation fails in an expected, reportable way."""


class ConfigError(EdgeSyncError, ValueError):
    """Raised when a configuration value is missing, of the wrong type or out of range."""


class AssetNotFoundError(EdgeSyncError, FileNotFoundError):
    """Raised when a packaged weight, video or still cannot be found on this machine."""


class InvalidImageError(EdgeSyncError, ValueError):
    """Raised when an image (array or message) has an unusable encoding, size, dtype or layout."""


class InvalidRegionError(InvalidImageError):
    """Raised when a region (box) of a frame is malformed, empty or lies entirely outside the frame."""


class WeightsError(ConfigError):
    """Raised when a configured weights/head file is missing, unreadable or does not match the architecture."""


class InvalidInputError(EdgeSyncError, ValueError):
    """Raised when an array or tensor passed to a core function has the wrong shape, dtype or values."""


class InsufficientDataError(EdgeSyncError, ValueError):
    """Raised when there are too few labelled samples to split into training and validation sets."""


class RollbackUnavailableError(EdgeSyncError):
    """Raised when a rollback is requested but no previous head is kept."""


class UpdateRejectedError(EdgeSyncError, ValueError):
    """Raised when a head update fails validation; nothing of it was applied to the model."""


class ModelNotLoadedError(EdgeSyncError, RuntimeError):
    """Raised when a managed node is asked to use its model while it is not configured (none is loaded)."""


class VisionMsgsMissingError(EdgeSyncError, ImportError):
    """Raised when a vision_msgs message is asked for where vision_msgs is not installed."""


class DigestMismatchError(UpdateRejectedError):
    """Raised when a head update's SHA-256 digest or HMAC does not match its contents."""


class EdgeMismatchError(UpdateRejectedError):
    """Raised when a head update is addressed to another edge."""


class ArchitectureMismatchError(UpdateRejectedError):
    """Raised when a head update was made for another model architecture."""


class StaleVersionError(UpdateRejectedError):
    """Raised when a head update's version is not newer than the version already applied."""


class BaseVersionMismatchError(UpdateRejectedError):
    """Raised when a head update was trained from another version than the one applied (policy must_match)."""


class UnknownTensorError(UpdateRejectedError):
    """Raised when a head update names a tensor that is not part of the model's head."""


class DuplicateTensorError(UpdateRejectedError):
    """Raised when a head update carries the same tensor name twice."""


class MissingTensorError(UpdateRejectedError):
    """Raised when a head update lacks some of the head's tensors (updates are all or nothing)."""


class ShapeMismatchError(UpdateRejectedError):
    """Raised when a head update's tensor shape differs from the model's tensor of that name."""


class DtypeError(UpdateRejectedError):
    """Raised when a head update's tensor has an unknown dtype code."""


class DataLengthError(UpdateRejectedError):
    """Raised when a head update's tensor data length does not match its shape and dtype."""


class NonFiniteTensorError(UpdateRejectedError):
    """Raised when a head tensor holds NaN or infinity (on encoding or on applying)."""


class BagError(EdgeSyncError):
    """Raised when a rosbag2 file cannot be opened, read or written, or holds unexpected messages."""


class StateError(EdgeSyncError):
    """Raised when a state directory holds a document or tensor file that cannot be read back."""
