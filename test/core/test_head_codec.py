from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct
import threading

import numpy as np
import pytest
import torch
import torchvision

from edgesync_ros.core import errors
from edgesync_ros.core.config import TrainConfig
from edgesync_ros.core.head_codec import (
    DTYPE_BFLOAT16,
    DTYPE_FLOAT16,
    DTYPE_FLOAT32,
    HeadApplier,
    HeadPayload,
    TensorRecord,
    canonical_bytes,
    compute_digest,
    decode_head,
    encode_head,
    sign_payload,
)
from edgesync_ros.core.heads import head_state, split_model
from edgesync_ros.core.training import train_head

ARCH = "mobilenet_v2"
KEY = b"fleet-secret"


def make_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=7).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so buffers matter in the comparisons
        for name, t in head_state(model, ARCH).items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                t.normal_()
    return model


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    return make_model(1)


@pytest.fixture
def edge() -> torch.nn.Module:
    return make_model(0)


def full_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model, snapshot):
    now = model.state_dict()
    assert now.keys() == snapshot.keys()
    for k, v in snapshot.items():
        assert torch.equal(now[k], v), k


def test_dtype_codes_match_the_tensorblob_message():
    assert (DTYPE_FLOAT32, DTYPE_FLOAT16, DTYPE_BFLOAT16) == (0, 1, 2)


def test_fp32_round_trip_is_bit_exact_and_in_place(edge, trained):
    payload = encode_head(trained, ARCH, "cam1", version=1, base_version=0)
    assert all(r.dtype_code == DTYPE_FLOAT32 for r in payload.tensors)
    applier = HeadApplier(edge, ARCH, "cam1")
    live = {n: t for n, t in list(edge.named_parameters()) + list(edge.named_buffers())}
    ptrs = {n: live[n].data_ptr() for n in head_state(edge, ARCH)}
    backbone_before = {
        k: v.clone() for k, v in edge.state_dict().items() if not k.startswith(("features.18.", "classifier."))
    }
    applier.apply(payload)
    assert applier.version == 1
    want = head_state(trained, ARCH)
    got = head_state(edge, ARCH)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
        assert live[name].data_ptr() == ptrs[name], name  # same storage, no new tensors
    for k, v in backbone_before.items():
        assert torch.equal(edge.state_dict()[k], v), k
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _, h_edge = split_model(edge, ARCH)
        _, h_trained = split_model(trained, ARCH)
        b_edge, _ = split_model(edge, ARCH)
        feats = b_edge(x)
        assert torch.equal(h_edge(feats), h_trained(feats))


def test_fp16_error_is_bounded_and_payload_under_1mb(edge, trained):
    payload = encode_head(trained, ARCH, "cam1", version=1, base_version=0, dtype="float16")
    assert all(r.dtype_code == DTYPE_FLOAT16 for r in payload.tensors)
    assert payload.nbytes <= 1_000_000
    assert payload.nbytes == 2 * sum(t.numel() for t in head_state(trained, ARCH).values())
    decoded = decode_head(payload)
    for name, ref in head_state(trained, ARCH).items():
        err = (decoded[name] - ref).abs()
        # float16: relative error <= 2^-11 for normal numbers, absolute <= 2^-25 near zero (subnormals)
        assert bool((err <= ref.abs() * 2.0**-11 + 2.0**-25).all()), name
    HeadApplier(edge, ARCH, "cam1").apply(payload)
    for name, t in head_state(edge, ARCH).items():
        torch.testing.assert_close(t, decoded[name], rtol=0, atol=0)


def test_bf16_round_trip_error_is_bounded(trained):
    payload = encode_head(trained, ARCH, "cam1", version=1, base_version=0, dtype="bfloat16")
    decoded = decode_head(payload)
    for name, ref in head_state(trained, ARCH).items():
        assert payload.tensors[0].dtype_code == DTYPE_BFLOAT16
        assert bool(((decoded[name] - ref).abs() <= ref.abs() * 2.0**-8 + 1e-38).all()), name


def test_digest_is_sha256_or_hmac_of_canonical_bytes(trained):
    plain = encode_head(trained, ARCH, "cam1", version=3, base_version=2)
    assert plain.digest == hashlib.sha256(canonical_bytes(plain)).digest()
    keyed = encode_head(trained, ARCH, "cam1", version=3, base_version=2, key=KEY)
    assert keyed.digest == hmac.new(KEY, canonical_bytes(keyed), hashlib.sha256).digest()
    assert keyed.digest != plain.digest and len(keyed.digest) == 32


def test_canonical_bytes_cover_every_field_but_not_the_statistics(trained):
    p = encode_head(trained, ARCH, "cam1", version=3, base_version=2, validation_accuracy=0.5)
    base = canonical_bytes(p)
    t0 = p.tensors[0]
    variants = [
        dataclasses.replace(p, edge_id="cam2"),
        dataclasses.replace(p, architecture="resnet18"),
        dataclasses.replace(p, version=4),
        dataclasses.replace(p, base_version=1),
        dataclasses.replace(p, tensors=[dataclasses.replace(t0, name=t0.name + "x"), *p.tensors[1:]]),
        dataclasses.replace(p, tensors=[dataclasses.replace(t0, shape=(*t0.shape[:-1], 1, 1)), *p.tensors[1:]]),
        dataclasses.replace(p, tensors=[dataclasses.replace(t0, dtype_code=1), *p.tensors[1:]]),
        dataclasses.replace(p, tensors=[dataclasses.replace(t0, data=b"\x01" + t0.data[1:]), *p.tensors[1:]]),
        dataclasses.replace(p, tensors=list(reversed(p.tensors))),
    ]
    for v in variants:
        assert canonical_bytes(v) != base
    assert canonical_bytes(dataclasses.replace(p, validation_accuracy=0.9, train_samples=5)) == base
    assert canonical_bytes(dataclasses.replace(p, digest=b"\x00" * 32)) == base


def replace_tensor(p: HeadPayload, index: int, **changes) -> list[TensorRecord]:
    tensors = list(p.tensors)
    tensors[index] = dataclasses.replace(tensors[index], **changes)
    return tensors


def nan_record(record: TensorRecord) -> TensorRecord:
    arr = np.frombuffer(record.data, dtype="<f4").copy()
    arr[0] = np.nan
    return dataclasses.replace(record, data=arr.tobytes())


def tampered(p: HeadPayload) -> HeadPayload:
    data = bytearray(p.tensors[-1].data)
    data[5] ^= 0x01
    return dataclasses.replace(p, tensors=replace_tensor(p, -1, data=bytes(data)))  # digest NOT recomputed


REJECTIONS = {
    "tampered byte": (lambda p: tampered(p), errors.DigestMismatchError, "digest does not match"),
    "bad hmac key": (lambda p: sign_payload(p, b"other-key"), errors.DigestMismatchError, "HMAC-SHA256"),
    "unsigned (no key)": (lambda p: sign_payload(p, None), errors.DigestMismatchError, "HMAC"),
    "short digest": (lambda p: dataclasses.replace(p, digest=p.digest[:16]), errors.DigestMismatchError, "32 bytes"),
    "wrong shape": (
        lambda p: sign_payload(
            dataclasses.replace(p, tensors=replace_tensor(p, -1, shape=(1, 7), data=p.tensors[-1].data)),
            KEY,
        ),
        errors.ShapeMismatchError,
        r"classifier.1.bias.*shape \(1, 7\).*needs \(7,\)",
    ),
    "unknown name": (
        lambda p: sign_payload(
            dataclasses.replace(p, tensors=[*p.tensors, TensorRecord("features.0.0.weight", (1,), 0, b"\0" * 4)]),
            KEY,
        ),
        errors.UnknownTensorError,
        "features.0.0.weight",
    ),
    "missing tensor": (
        lambda p: sign_payload(dataclasses.replace(p, tensors=p.tensors[:-1]), KEY),
        errors.MissingTensorError,
        "classifier.1.bias",
    ),
    "duplicate tensor": (
        lambda p: sign_payload(dataclasses.replace(p, tensors=[*p.tensors, p.tensors[0]]), KEY),
        errors.DuplicateTensorError,
        "more than once",
    ),
    "nan": (
        lambda p: sign_payload(dataclasses.replace(p, tensors=[*p.tensors[:-1], nan_record(p.tensors[-1])]), KEY),
        errors.NonFiniteTensorError,
        "NaN or infinity",
    ),
    "unknown dtype code": (
        lambda p: sign_payload(dataclasses.replace(p, tensors=replace_tensor(p, 0, dtype_code=7)), KEY),
        errors.DtypeError,
        "unknown dtype code 7",
    ),
    "short data": (
        lambda p: sign_payload(
            dataclasses.replace(p, tensors=replace_tensor(p, -1, data=p.tensors[-1].data[:-4])), KEY
        ),
        errors.DataLengthError,
        "24 data bytes, expected 28",
    ),
    "stale version": (
        lambda p: sign_payload(dataclasses.replace(p, version=5), KEY),
        errors.StaleVersionError,
        "version 5 is not newer than the applied version 5",
    ),
    "older version": (
        lambda p: sign_payload(dataclasses.replace(p, version=2), KEY),
        errors.StaleVersionError,
        "not newer",
    ),
    "wrong edge": (
        lambda p: sign_payload(dataclasses.replace(p, edge_id="cam9"), KEY),
        errors.EdgeMismatchError,
        "'cam9', this is edge 'cam1'",
    ),
    "wrong architecture": (
        lambda p: sign_payload(dataclasses.replace(p, architecture="resnet18"), KEY),
        errors.ArchitectureMismatchError,
        "resnet18",
    ),
    "base version mismatch": (
        lambda p: sign_payload(dataclasses.replace(p, base_version=4), KEY),
        errors.BaseVersionMismatchError,
        "trained from version 4, the applied version is 5",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_each_bad_update_is_rejected_and_the_model_untouched(case, edge, trained):
    mutate, error, match = REJECTIONS[case]
    applier = HeadApplier(edge, ARCH, "cam1", version=5, key=KEY, base_version_policy="must_match")
    good = encode_head(trained, ARCH, "cam1", version=6, base_version=5, key=KEY)
    bad = mutate(good)
    snapshot = full_state(edge)
    with pytest.raises(error, match=match) as info:
        applier.apply(bad)
    assert isinstance(info.value, errors.UpdateRejectedError)
    assert_untouched(edge, snapshot)
    assert applier.version == 5 and applier.previous_version is None
    applier.apply(good)  # the applier is still usable afterwards
    assert applier.version == 6


def test_base_version_policy_any_accepts_a_gap(edge, trained):
    applier = HeadApplier(edge, ARCH, "cam1", version=5)
    applier.apply(encode_head(trained, ARCH, "cam1", version=9, base_version=2))
    assert applier.version == 9


def test_rollback_restores_previous_tensors_and_version_exactly(edge, trained):
    original = {k: v.clone() for k, v in head_state(edge, ARCH).items()}
    applier = HeadApplier(edge, ARCH, "cam1", version=0)
    with pytest.raises(errors.RollbackUnavailableError):
        applier.rollback()
    applier.apply(encode_head(trained, ARCH, "cam1", version=1, base_version=0))
    v1 = {k: v.clone() for k, v in head_state(edge, ARCH).items()}
    third = make_model(2)
    applier.apply(encode_head(third, ARCH, "cam1", version=2, base_version=1, dtype="float16"))
    assert applier.previous_version == 1
    assert applier.rollback() == 1
    assert applier.version == 1
    for k, v in head_state(edge, ARCH).items():
        assert torch.equal(v, v1[k]), k
    with pytest.raises(errors.RollbackUnavailableError, match="no previous head"):
        applier.rollback()
    fresh = HeadApplier(make_model(0), ARCH, "cam1")
    fresh.apply(encode_head(trained, ARCH, "cam1", version=1, base_version=0))
    fresh.rollback()
    for k, v in head_state(fresh.model, ARCH).items():
        assert torch.equal(v, original[k]), k


def test_restore_serves_an_older_head_in_place_and_keeps_the_newest_version(edge, trained):
    v0 = {k: v.detach().clone() for k, v in head_state(edge, ARCH).items()}
    applier = HeadApplier(edge, ARCH, "cam1", version=0)
    applier.apply(encode_head(trained, ARCH, "cam1", version=1, base_version=0))
    v1 = {k: v.clone() for k, v in head_state(edge, ARCH).items()}
    applier.restore(v0, 0)  # a local switch back to the head this robot served first
    assert (applier.version, applier.highest_version, applier.previous_version) == (0, 1, 1)
    for k, v in head_state(edge, ARCH).items():
        assert torch.equal(v, v0[k]), k
    with pytest.raises(errors.StaleVersionError, match="not newer than v1"):  # v1 again only by restore or rollback
        applier.apply(encode_head(trained, ARCH, "cam1", version=1, base_version=0))
    with pytest.raises(errors.StaleVersionError, match="never applied here"):
        applier.restore(v1, 2)
    with pytest.raises(errors.MissingTensorError):
        applier.restore({k: v for k, v in list(v1.items())[1:]}, 1)
    bad = {k: v.clone() for k, v in v1.items()}
    next(t for t in bad.values() if t.is_floating_point()).view(-1)[0] = float("nan")
    with pytest.raises(errors.NonFiniteTensorError):
        applier.restore(bad, 1)
    for k, v in head_state(edge, ARCH).items():  # refused restores left the model alone
        assert torch.equal(v, v0[k]), k
    assert applier.rollback() == 1  # the rollback undoes the switch
    for k, v in head_state(edge, ARCH).items():
        assert torch.equal(v, v1[k]), k


def test_apply_waits_for_the_lock(edge, trained):
    applier = HeadApplier(edge, ARCH, "cam1")
    payload = encode_head(trained, ARCH, "cam1", version=1, base_version=0)
    applier.lock.acquire()  # e.g. a forward pass in progress
    try:
        worker = threading.Thread(target=applier.apply, args=(payload,))
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive() and applier.version == 0
    finally:
        applier.lock.release()
    worker.join(timeout=10)
    assert not worker.is_alive() and applier.version == 1


def test_encode_rejects_non_finite_and_fp16_overflow(trained):
    model = make_model(3)
    with torch.no_grad():
        model.classifier[1].bias[0] = 1e5  # finite in float32, infinite in float16
    encode_head(model, ARCH, "cam1", version=1, base_version=0)
    with pytest.raises(errors.NonFiniteTensorError, match="classifier.1.bias.*float16"):
        encode_head(model, ARCH, "cam1", version=1, base_version=0, dtype="float16")
    with torch.no_grad():
        model.classifier[1].bias[0] = float("nan")
    with pytest.raises(errors.NonFiniteTensorError):
        encode_head(model, ARCH, "cam1", version=1, base_version=0)
    with pytest.raises(errors.ConfigError, match="uint32"):
        encode_head(trained, ARCH, "cam1", version=-1, base_version=0)
    with pytest.raises(errors.ConfigError, match="edge_id"):
        encode_head(trained, ARCH, "", version=1, base_version=0)
    with pytest.raises(errors.InvalidInputError, match="uint32|0, 4294967295"):
        HeadPayload("cam1", ARCH, 2**32, 0, [], b"")


def test_trained_head_state_dict_encodes_and_applies(edge, clock_factory):
    _, head = split_model(edge, ARCH)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 7
    feats = torch.randn(40, 320, 2, 2, generator=g).relu() + labels.view(-1, 1, 1, 1)
    res = train_head(head, feats, labels, TrainConfig(max_epochs=2, patience=5), clock_factory())
    payload = encode_head(res.state_dict, ARCH, "cam1", version=1, base_version=0, key=KEY)
    assert {r.name for r in payload.tensors} == set(head_state(edge, ARCH))
    applier = HeadApplier(edge, ARCH, "cam1", key=KEY)
    applier.apply(payload)
    for name, t in head_state(edge, ARCH).items():
        assert torch.equal(t, res.state_dict[name]), name


def test_canonical_layout_is_length_prefixed():
    p = HeadPayload("e", "a", 1, 0, [TensorRecord("w", (2,), 0, b"\0" * 8)], b"")
    raw = canonical_bytes(p)
    assert raw.startswith(b"edgesync.head/1\x00" + struct.pack("<I", 1) + b"e" + struct.pack("<I", 1) + b"a")
    assert compute_digest(p) == hashlib.sha256(raw).digest()


def test_what_an_update_claims_is_checked_before_it_is_hashed(edge, trained, monkeypatch):
    from edgesync_ros.core import head_codec

    applier = HeadApplier(edge, ARCH, "cam1", key=KEY)
    good = encode_head(trained, ARCH, "cam1", version=1, base_version=0, key=KEY)
    first = good.tensors[0]
    huge = dataclasses.replace(first, shape=(len(first.data) * 4,), data=first.data * 16)  # 16x the data
    wrong_length = dataclasses.replace(first, data=first.data + b"\0" * 4)

    def no_hashing(*args, **kwargs):
        raise AssertionError("the digest was computed before the cheap checks")

    monkeypatch.setattr(head_codec, "verify_digest", no_hashing)
    with pytest.raises(errors.ShapeMismatchError, match="the model needs"):
        applier.apply(dataclasses.replace(good, tensors=[huge, *good.tensors[1:]]))
    with pytest.raises(errors.DataLengthError, match="data bytes, expected"):
        applier.apply(dataclasses.replace(good, tensors=[wrong_length, *good.tensors[1:]]))
    with pytest.raises(errors.EdgeMismatchError):
        applier.check_claims(dataclasses.replace(good, edge_id="cam2").claims)
    applier.check_claims(good.claims)  # a well-formed update passes the cheap checks


def test_a_rolled_back_version_is_never_applied_again(edge, trained):
    applier = HeadApplier(edge, ARCH, "cam1", version=5, key=KEY)
    v6 = encode_head(trained, ARCH, "cam1", version=6, base_version=5, key=KEY)
    applier.apply(v6)
    assert applier.rollback() == 5
    assert (applier.version, applier.highest_version) == (5, 6)
    assert not applier.accepts_version(6)
    with pytest.raises(errors.StaleVersionError, match="never applied twice"):
        applier.apply(v6)  # the captured, validly signed v6, replayed
    applier.apply(encode_head(trained, ARCH, "cam1", version=7, base_version=5, key=KEY))
    assert (applier.version, applier.highest_version) == (7, 7)
    # The newest version survives a restart through the caller's state: the new applier refuses it too.
    again = HeadApplier(make_model(0), ARCH, "cam1", version=5, key=KEY, highest_version=7)
    with pytest.raises(errors.StaleVersionError, match="not newer than v7"):
        again.apply(encode_head(trained, ARCH, "cam1", version=7, base_version=5, key=KEY))
    again.apply(encode_head(trained, ARCH, "cam1", version=8, base_version=5, key=KEY))


def test_rejection_messages_stay_short_whatever_the_sender_writes(edge, trained):
    applier = HeadApplier(edge, ARCH, "cam1")
    good = encode_head(trained, ARCH, "cam1", version=1, base_version=0)
    with pytest.raises(errors.EdgeMismatchError) as far:
        applier.check_claims(dataclasses.replace(good, edge_id="x" * 1_000_000).claims)
    junk = [TensorRecord("y" * 10_000 + str(i), (1,), 0, b"\0" * 4) for i in range(1000)]
    with pytest.raises(errors.UnknownTensorError) as unknown:
        applier.check_claims(dataclasses.replace(good, tensors=[*good.tensors, *junk]).claims)
    assert len(str(far.value)) < 300 and len(str(unknown.value)) < 1000
    assert "995 more" in str(unknown.value)
