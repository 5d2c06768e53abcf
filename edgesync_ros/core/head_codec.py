"""EdgeSync head codec: a model head <-> named little-endian tensors with a digest, and a safe in-place apply.

After Algorithm 2 the cloud ships only the retrained head (:mod:`edgesync_ros.core.heads`) to the edge. A
:class:`HeadPayload` mirrors the ROS ``HeadUpdate`` message: edge id, architecture, ``version``, the
``base_version`` it was trained from, one :class:`TensorRecord` per head tensor (parameters **and**
BatchNorm running statistics) and a 32-byte digest.

**Canonical bytes and digest.** :func:`canonical_bytes` serialises, in order, a format tag, the edge id,
architecture, version, base_version and, for every tensor in payload order, its name, shape, dtype code and
data, each length-prefixed little-endian so no two payloads share an encoding. The training statistics
(validation accuracy, sample count, seconds) are informational and *not* covered. The digest is SHA-256 of
those bytes, or HMAC-SHA256 with a fleet key; verification uses :func:`hmac.compare_digest`.

**Dtype codes** match ``TensorBlob``: 0 = float32, 1 = float16, 2 = bfloat16, data row-major little-endian.
float16 halves the payload (MobileNetV2 head ≈ 0.42 M values → ≈ 0.85 MB) at a relative error ≤ 2⁻¹¹.

**Applying.** :class:`HeadApplier` owns one edge model's head. :meth:`HeadApplier.apply` first checks what the
payload *claims* — edge id, architecture, version (newer than any version ever applied here, so a rolled-back
head is never re-applied by a replay), base_version policy, exactly the head's tensor names, dtype codes, shapes
and data lengths — which costs nothing per byte, then the digest, then that all values are finite; only then
does it copy all tensors with ``Tensor.copy_`` under ``torch.no_grad()``, so the update lands entirely or not at
all, into the same storage (``data_ptr`` unchanged: optimisers, CUDA graphs or exported views holding the
tensors stay valid). :meth:`HeadApplier.check_claims` runs the cheap checks alone, so a receiver can refuse an
oversized or misaddressed update before copying or hashing it. Decoding is numpy and CPU copies are chunked so
that an apply never wakes torch's intra-op thread pool, which competes with inference on a small edge device.
The previous head is kept for :meth:`HeadApplier.rollback`. Every rejection raises a specific
:class:`~edgesync_ros.core.errors.UpdateRejectedError` subclass saying why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from edgesync_ros.core.errors import (
    ArchitectureMismatchError,
    BaseVersionMismatchError,
    ConfigError,
    DataLengthError,
    DigestMismatchError,
    DtypeError,
    DuplicateTensorError,
    EdgeMismatchError,
    InvalidInputError,
    MissingTensorError,
    NonFiniteTensorError,
    RollbackUnavailableError,
    ShapeMismatchError,
    StaleVersionError,
    UnknownTensorError,
)
from edgesync_ros.core.heads import head_spec, head_state

DTYPE_FLOAT32 = 0
DTYPE_FLOAT16 = 1
DTYPE_BFLOAT16 = 2
WireDtype = Literal["float32", "float16", "bfloat16"]
BaseVersionPolicy = Literal["any", "must_match"]

_CODE_OF: dict[str, int] = {"float32": DTYPE_FLOAT32, "float16": DTYPE_FLOAT16, "bfloat16": DTYPE_BFLOAT16}
_ITEMSIZE: dict[int, int] = {DTYPE_FLOAT32: 4, DTYPE_FLOAT16: 2, DTYPE_BFLOAT16: 2}
_FORMAT_TAG = b"edgesync.head/1\x00"
_UINT32_MAX = 2**32 - 1
DIGEST_SIZE = 32


@dataclasses.dataclass(frozen=True)
class TensorRecord:
    """One named tensor: shape, dtype code (0 float32, 1 float16, 2 bfloat16), little-endian row-major data."""

    name: str
    shape: tuple[int, ...]
    dtype_code: int
    data: bytes

    def __post_init__(self) -> None:
        """Normalise ``shape`` to a tuple of ints (ROS gives a list or array)."""
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))


@dataclasses.dataclass(frozen=True)
class TensorClaim:
    """What one tensor of an update says about itself before its data is read: name, shape, dtype code, length."""

    name: str
    shape: tuple[int, ...]
    dtype_code: int
    nbytes: int


@dataclasses.dataclass(frozen=True)
class PayloadClaims:
    """What an update says about itself apart from its tensor data and digest; checkable before any copy or hash."""

    edge_id: str
    architecture: str
    version: int
    base_version: int
    tensors: tuple[TensorClaim, ...]


@dataclasses.dataclass(frozen=True)
class HeadPayload:
    """A head update as it travels (mirrors the ``HeadUpdate`` message); see the module docstring."""

    edge_id: str
    architecture: str
    version: int
    base_version: int
    tensors: Sequence[TensorRecord]
    digest: bytes
    validation_accuracy: float = 0.0
    train_samples: int = 0
    train_seconds: float = 0.0

    def __post_init__(self) -> None:
        """Check the versions are uint32; freeze the tensor list and digest (ROS gives a list and an array)."""
        for name in ("version", "base_version"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
                raise InvalidInputError(f"HeadPayload.{name} must be an integer in [0, {_UINT32_MAX}], got {value!r}")
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "digest", bytes(self.digest))

    @property
    def nbytes(self) -> int:
        """Return the total tensor data size in bytes."""
        return sum(len(t.data) for t in self.tensors)

    @property
    def claims(self) -> PayloadClaims:
        """Return what this payload claims about itself (see :meth:`HeadApplier.check_claims`)."""
        return PayloadClaims(self.edge_id, self.architecture, self.version, self.base_version,
                             tuple(TensorClaim(t.name, t.shape, t.dtype_code, len(t.data)) for t in self.tensors))


def _excerpt(text: str, limit: int = 80) -> str:
    """``repr`` of sender-chosen text, cut to ``limit`` characters, so an error message stays small."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(_excerpt(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _shape(shape: tuple[int, ...]) -> str:
    return str(shape) if len(shape) <= 8 else f"of {len(shape)} dimensions"


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _u32(len(raw)) + raw


def _canonical_parts(payload: HeadPayload) -> Iterator[bytes]:
    # Every variable-length field is length-prefixed, so distinct payloads never share a byte string.
    yield _FORMAT_TAG
    yield _text(payload.edge_id)
    yield _text(payload.architecture)
    yield struct.pack("<QQ", payload.version, payload.base_version)
    yield _u32(len(payload.tensors))
    for t in payload.tensors:
        yield _text(t.name)
        yield _u32(len(t.shape))
        yield struct.pack(f"<{len(t.shape)}Q", *t.shape)
        yield struct.pack("<BQ", t.dtype_code, len(t.data))
        yield t.data


def canonical_bytes(payload: HeadPayload) -> bytes:
    """Return the canonical byte string the digest covers (everything but the digest and the statistics)."""
    return b"".join(_canonical_parts(payload))


def compute_digest(payload: HeadPayload, key: bytes | None = None) -> bytes:
    """Return SHA-256 of :func:`canonical_bytes` (HMAC-SHA256 with ``key``), 32 bytes."""
    h = hmac.new(key, digestmod=hashlib.sha256) if key is not None else hashlib.sha256()
    for part in _canonical_parts(payload):
        h.update(part)
    return h.digest()


def sign_payload(payload: HeadPayload, key: bytes | None = None) -> HeadPayload:
    """Return ``payload`` with its digest recomputed (e.g. after editing a field, or to re-key it)."""
    return dataclasses.replace(payload, digest=compute_digest(payload, key))


def verify_digest(payload: HeadPayload, key: bytes | None = None) -> None:
    """Raise DigestMismatchError unless the payload's digest matches its contents (constant-time compare)."""
    kind = "HMAC-SHA256" if key is not None else "SHA-256"
    if len(payload.digest) != DIGEST_SIZE:
        raise DigestMismatchError(f"digest must be {DIGEST_SIZE} bytes, got {len(payload.digest)}")
    if not hmac.compare_digest(compute_digest(payload, key), payload.digest):
        hint = " (wrong or missing fleet key?)" if key is not None else ""
        raise DigestMismatchError(f"{kind} digest does not match the payload contents{hint}")


def tensor_to_record(name: str, tensor: Tensor, dtype: WireDtype = "float32") -> TensorRecord:
    """Encode one floating-point tensor as a TensorRecord in ``dtype``; NonFiniteTensorError on NaN/inf.

    The finiteness check runs after the cast, so a float16 overflow is caught here, not at the edge.
    """
    if dtype not in _CODE_OF:
        raise ConfigError(f"dtype must be one of {', '.join(_CODE_OF)}, got {dtype!r}")
    if not tensor.is_floating_point():
        raise InvalidInputError(f"tensor {name!r} has dtype {tensor.dtype}; only floating-point tensors are encoded")
    t = tensor.detach().to("cpu")
    code = _CODE_OF[dtype]
    if code == DTYPE_BFLOAT16:
        cast = t.to(torch.bfloat16).contiguous()
        finite = bool(torch.isfinite(cast).all())
        # numpy has no bfloat16: ship its 16-bit pattern as little-endian uint16.
        data = cast.view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    else:
        np_dtype = "<f4" if code == DTYPE_FLOAT32 else "<f2"
        with np.errstate(over="ignore"):  # an overflow becomes inf and is reported just below
            arr = t.numpy().astype(np_dtype)
        finite = bool(np.isfinite(arr).all())
        data = arr.tobytes(order="C")
    if not finite:
        raise NonFiniteTensorError(f"tensor {name!r} holds NaN or infinity after casting to {dtype}")
    return TensorRecord(name=name, shape=tuple(t.shape), dtype_code=code, data=data)


def record_to_array(record: TensorRecord) -> np.ndarray:
    """Decode a TensorRecord to a float32 numpy array of its shape (DtypeError / DataLengthError when malformed).

    Pure numpy on purpose: it runs on the calling thread only, so decoding on a busy edge device does not
    wake torch's intra-op thread pool (see :func:`_copy_serial_`).
    """
    if record.dtype_code not in _ITEMSIZE:
        raise DtypeError(
            f"tensor {record.name!r} has unknown dtype code {record.dtype_code} (0 float32, 1 float16, 2 bfloat16)"
        )
    if any(d < 0 for d in record.shape):
        raise ShapeMismatchError(f"tensor {record.name!r} has a negative dimension in shape {record.shape}")
    numel = math.prod(record.shape)
    expected = numel * _ITEMSIZE[record.dtype_code]
    if len(record.data) != expected:
        raise DataLengthError(
            f"tensor {record.name!r}: {len(record.data)} data bytes, expected {expected} for shape "
            f"{record.shape} and dtype code {record.dtype_code}"
        )
    if record.dtype_code == DTYPE_BFLOAT16:
        # bfloat16 is the upper half of a float32: shift the 16 bits up and reinterpret.
        bits = np.frombuffer(record.data, dtype="<u2").astype(np.uint32) << np.uint32(16)
        arr = bits.view(np.float32)
    else:
        np_dtype = "<f4" if record.dtype_code == DTYPE_FLOAT32 else "<f2"
        arr = np.frombuffer(record.data, dtype=np_dtype).astype(np.float32, copy=True)
    return arr.reshape(record.shape)


def record_to_tensor(record: TensorRecord) -> Tensor:
    """Decode a TensorRecord to a float32 CPU tensor (DtypeError / DataLengthError when malformed)."""
    return torch.from_numpy(record_to_array(record))


def decode_head(payload: HeadPayload) -> dict[str, Tensor]:
    """Decode every tensor of a payload to float32 (no digest or model checks; see :class:`HeadApplier`)."""
    return {r.name: record_to_tensor(r) for r in payload.tensors}


def _check_version(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise ConfigError(f"{name} must be an integer in [0, {_UINT32_MAX}] (uint32), got {value!r}")


def encode_head(
    model_or_state: nn.Module | Mapping[str, Tensor],
    arch: str,
    edge_id: str,
    version: int,
    base_version: int,
    dtype: WireDtype = "float32",
    key: bytes | None = None,
    validation_accuracy: float = 0.0,
    train_samples: int = 0,
    train_seconds: float = 0.0,
) -> HeadPayload:
    """Encode a head into a signed :class:`HeadPayload`.

    ``model_or_state`` is the whole model, or a state dict keyed like the model's (e.g.
    ``TrainResult.state_dict`` of a head from :func:`~edgesync_ros.core.heads.split_model`, or a full model
    state dict). Only the head's floating-point tensors are encoded, in state-dict order; integer buffers
    (``num_batches_tracked``) are skipped. ``key`` switches the digest from SHA-256 to HMAC-SHA256.
    """
    spec = head_spec(arch)
    if not edge_id:
        raise ConfigError("edge_id must not be empty")
    _check_version("version", version)
    _check_version("base_version", base_version)
    if isinstance(model_or_state, nn.Module):
        state: Mapping[str, Tensor] = head_state(model_or_state, arch)
    else:
        state = {k: v for k, v in model_or_state.items() if spec.owns(k) and v.is_floating_point()}
    if not state:
        raise MissingTensorError(f"no {arch} head tensors found (expected names under {', '.join(spec.head_prefixes)})")
    records = [tensor_to_record(name, t, dtype) for name, t in state.items()]
    unsigned = HeadPayload(
        edge_id=edge_id,
        architecture=arch,
        version=version,
        base_version=base_version,
        tensors=records,
        digest=b"",
        validation_accuracy=float(validation_accuracy),
        train_samples=int(train_samples),
        train_seconds=float(train_seconds),
    )
    return sign_payload(unsigned, key)


# torch runs an element-wise CPU op on its OpenMP pool when it has more than 32,768 elements (its grain size);
# chunks of at most that size keep every copy_ on the calling thread, off the pool inference is using.
_SERIAL_CHUNK = 32_768


def _copy_serial_(dst: Tensor, src: Tensor) -> None:
    """``dst.copy_(src)`` in place, chunked on CPU so that it never uses torch's intra-op thread pool."""
    if dst.device.type != "cpu" or not dst.is_contiguous() or dst.numel() <= _SERIAL_CHUNK:
        dst.copy_(src)
        return
    flat_dst = dst.view(-1)
    flat_src = src.reshape(-1)
    for start in range(0, flat_dst.numel(), _SERIAL_CHUNK):
        flat_dst[start : start + _SERIAL_CHUNK].copy_(flat_src[start : start + _SERIAL_CHUNK])


def _clone_serial(t: Tensor) -> Tensor:
    out = torch.empty_like(t, memory_format=torch.contiguous_format)
    with torch.no_grad():
        _copy_serial_(out, t.detach())
    return out


class HeadApplier:
    """Validates head updates for one edge model and applies them in place, all or nothing, with rollback.

    ``lock`` is a :class:`threading.Lock` held while tensors are copied (and during :meth:`rollback`); an
    inference thread that takes it around its forward pass never sees a half-updated head. Do not call
    :meth:`apply` while holding the lock in the same thread.
    """

    def __init__(
        self,
        model: nn.Module,
        arch: str,
        edge_id: str,
        version: int = 0,
        key: bytes | None = None,
        base_version_policy: BaseVersionPolicy = "any",
        highest_version: int = 0,
    ) -> None:
        """Guard ``model`` (architecture ``arch``) of edge ``edge_id``, whose head is at ``version``.

        ``base_version_policy="must_match"`` accepts only updates trained from the version applied now;
        ``"any"`` accepts any newer version. ``highest_version`` is the newest version this edge ever applied
        (persisted by the caller across restarts): no update at or below it is applied again, even after a
        rollback, so a replayed old update cannot undo the rollback.
        """
        if base_version_policy not in ("any", "must_match"):
            raise ConfigError(f"base_version_policy must be 'any' or 'must_match', got {base_version_policy!r}")
        if not edge_id:
            raise ConfigError("edge_id must not be empty")
        _check_version("version", version)
        _check_version("highest_version", highest_version)
        self.model = model
        self.arch = arch
        self.edge_id = edge_id
        self.key = key
        self.base_version_policy: BaseVersionPolicy = base_version_policy
        self.lock = threading.Lock()
        self._version = version
        self._highest = max(version, highest_version)
        self._targets = self._head_tensors()
        self._previous: tuple[dict[str, Tensor], int] | None = None

    def _head_tensors(self) -> dict[str, Tensor]:
        # The live parameters/buffers themselves (not state_dict views), so copy_ writes into the model.
        names = set(head_state(self.model, self.arch))
        live: dict[str, Tensor] = {}
        for name, param in self.model.named_parameters():
            if name in names:
                live[name] = param
        for name, buf in self.model.named_buffers():
            if name in names:
                live[name] = buf
        return live

    @property
    def version(self) -> int:
        """Return the version of the head applied now."""
        return self._version

    @property
    def highest_version(self) -> int:
        """Return the newest version ever applied here (above :attr:`version` after a rollback)."""
        return self._highest

    @property
    def previous_version(self) -> int | None:
        """Return the version :meth:`rollback` would restore, or ``None``."""
        return None if self._previous is None else self._previous[1]

    @property
    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Return the head tensor names and shapes an update must carry."""
        return {name: tuple(t.shape) for name, t in self._targets.items()}

    def accepts_version(self, version: int) -> bool:
        """Return whether an update of ``version`` would pass the version check now."""
        return version > self._highest

    def check_claims(self, claims: PayloadClaims) -> None:
        """Check everything an update claims about itself, at a cost independent of its data size.

        Raises EdgeMismatchError, ArchitectureMismatchError, StaleVersionError, BaseVersionMismatchError,
        DuplicateTensorError, UnknownTensorError, MissingTensorError, DtypeError, ShapeMismatchError or
        DataLengthError. An update that passes carries exactly the head's tensors, so its data size is bounded by
        the model before anything copies or hashes it.
        """
        if claims.edge_id != self.edge_id:
            raise EdgeMismatchError(f"update is for edge {_excerpt(claims.edge_id)}, this is edge {self.edge_id!r}")
        if claims.architecture != self.arch:
            raise ArchitectureMismatchError(
                f"update is for architecture {_excerpt(claims.architecture)}, this model is {self.arch!r}"
            )
        self._check_versions(claims.version, claims.base_version)
        self._check_names([t.name for t in claims.tensors])
        for t in claims.tensors:
            want = tuple(self._targets[t.name].shape)
            if t.dtype_code not in _ITEMSIZE:
                raise DtypeError(
                    f"tensor {t.name!r} has unknown dtype code {t.dtype_code} (0 float32, 1 float16, 2 bfloat16)"
                )
            if t.shape != want:
                raise ShapeMismatchError(f"tensor {t.name!r} has shape {_shape(t.shape)}, the model needs {want}")
            expected = math.prod(want) * _ITEMSIZE[t.dtype_code]
            if t.nbytes != expected:
                raise DataLengthError(
                    f"tensor {t.name!r}: {t.nbytes} data bytes, expected {expected} for shape {want} and dtype "
                    f"code {t.dtype_code}"
                )

    def _check_names(self, names: list[str]) -> None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise DuplicateTensorError(f"tensor {_excerpt(name)} appears more than once in the update")
            seen.add(name)
        unknown = sorted(seen - self._targets.keys())
        if unknown:
            raise UnknownTensorError(f"update names tensor(s) not in the {self.arch} head: {_names(unknown)}")
        missing = sorted(self._targets.keys() - seen)
        if missing:
            raise MissingTensorError(f"update lacks head tensor(s) {', '.join(missing)}; updates are all or nothing")

    def validate(self, payload: HeadPayload) -> dict[str, Tensor]:
        """Check everything about ``payload`` against this model; return the decoded tensors or raise.

        Raises what :meth:`check_claims` raises, then DigestMismatchError, then NonFiniteTensorError: the checks
        that cost nothing per byte come first, so an oversized or misaddressed update is never hashed. Does not
        touch the model.
        """
        self.check_claims(payload.claims)
        verify_digest(payload, self.key)
        decoded: dict[str, Tensor] = {}
        for record in payload.tensors:
            value = record_to_array(record)
            if not np.isfinite(value).all():
                raise NonFiniteTensorError(f"tensor {record.name!r} holds NaN or infinity")
            decoded[record.name] = torch.from_numpy(value)
        return decoded

    def _check_versions(self, version: int, base_version: int) -> None:
        if version <= self._version:
            raise StaleVersionError(f"update version {version} is not newer than the applied version {self._version}")
        if version <= self._highest:
            raise StaleVersionError(
                f"update version {version} is not newer than v{self._highest}, the newest version applied here "
                f"(rolled back to v{self._version} since): an update is never applied twice"
            )
        if self.base_version_policy == "must_match" and base_version != self._version:
            raise BaseVersionMismatchError(
                f"update was trained from version {base_version}, the applied version is {self._version}"
            )

    def apply(self, payload: HeadPayload) -> None:
        """Validate ``payload`` completely, then copy all its tensors into the model in place.

        On any problem a specific UpdateRejectedError is raised and the model is unchanged. On success the
        version becomes ``payload.version`` and the previous head is kept for :meth:`rollback`.
        """
        decoded = self.validate(payload)  # decoding and hashing outside the lock: inference keeps running
        with self.lock:
            # Re-check the version under the lock: another thread may have applied an update meanwhile.
            self._check_versions(payload.version, payload.base_version)
            self._swap_in(decoded, payload.version)
            self._highest = max(self._highest, payload.version)

    def _swap_in(self, tensors: Mapping[str, Tensor], version: int) -> None:
        """Copy ``tensors`` in, all or nothing, keeping the head they replace for :meth:`rollback` (under the lock)."""
        snapshot = {name: _clone_serial(t) for name, t in self._targets.items()}
        try:
            self._copy_in(tensors)
        except Exception:
            self._copy_in(snapshot)  # all or nothing, even if a copy fails half-way
            raise
        self._previous = (snapshot, self._version)
        self._version = int(version)

    def _copy_in(self, tensors: Mapping[str, Tensor]) -> None:
        with torch.no_grad():
            for name, target in self._targets.items():
                _copy_serial_(target, tensors[name])

    def restore(self, state: Mapping[str, Tensor], version: int) -> None:
        """Serve a head this robot applied before, from its own head cache, under that head's version, in place.

        Local, so no payload or digest: ``state`` must hold exactly the head's tensors (names and shapes) with finite
        values, and ``version`` must be one this robot has applied (at most :attr:`highest_version`). The head
        serving now becomes the previous one (:meth:`rollback` returns to it); :attr:`highest_version` stays, so
        the cloud's next update is still only a newer one. Raises the :meth:`check_claims` errors, StaleVersionError
        or NonFiniteTensorError, with the model unchanged.
        """
        _check_version("version", version)
        if version > self._highest:
            raise StaleVersionError(f"v{version} was never applied here (newest v{self._highest}): only a head this "
                                    f"robot served before can be restored")
        self._check_names(list(state))
        for name, t in state.items():
            if tuple(t.shape) != tuple(self._targets[name].shape):
                raise ShapeMismatchError(f"tensor {name!r} has shape {_shape(tuple(t.shape))}, the model needs "
                                         f"{tuple(self._targets[name].shape)}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise NonFiniteTensorError(f"tensor {name!r} holds NaN or infinity")
        with self.lock:
            self._swap_in(state, version)

    def rollback(self) -> int:
        """Restore the head and version from before the last :meth:`apply`; return the restored version.

        Only one level is kept: a second rollback without an apply in between raises RollbackUnavailableError.
        :attr:`highest_version` stays: only an update newer than the rolled-back one applies afterwards.
        """
        with self.lock:
            if self._previous is None:
                raise RollbackUnavailableError("no previous head to roll back to")
            snapshot, version = self._previous
            self._copy_in(snapshot)
            self._version = version
            self._previous = None
            return version
