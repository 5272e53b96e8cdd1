"""Identity and the role matrix: every rpc against every role, TLS failures, bad input."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from matcher.batch import EncodedBatch
from matcher.pki import TlsFiles, create_ca, issue_client_cert, load_client_tls, load_signing_key
from matcher.service import ROLE_MATRIX, MatcherClient, MatcherServer
from matcher.service.client import secure_channel

from service_helpers import (
    FORCES,
    ROLES,
    client,
    config,
    encode,
    make_keyring,
    people,
    running,
    submit,
)

Call = Callable[[MatcherClient, str], object]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyring(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def svc(
    keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MatcherServer, int]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    with running(keys, url, config=config(calls_per_minute=10_000)) as sp:
        # Records of F02 for the retraction calls below (one per role that may try).
        submit(keys, sp[1], encode(people(40, seed=11), "F02"))
        yield sp


def _subjects() -> EncodedBatch:
    return encode(people(1, seed=12), "F01")


def _submit(c: MatcherClient, force: str, keys: Path) -> object:
    return c.submit(encode(people(2, seed=13), force), load_signing_key(keys, force))


def _retract(c: MatcherClient, force: str, server: MatcherServer) -> object:
    # A live record of the caller's own force, so that an allowed call succeeds.
    snap = server.core.index.snapshot()
    fid = snap.forces.index(force) if force in snap.forces else -1
    rows = [i for i in range(snap.n) if snap.live[i] and snap.force_ids[i] == fid]
    ref = snap.refs[rows[0]] if rows else "0" * 32
    return c.retract(force, [ref])


def _watch(c: MatcherClient) -> object:
    stream = c.watch(_subjects(), purpose="vetting", case_reference="c")
    first = next(iter(stream))
    stream.cancel()
    return first


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("rpc", sorted(ROLE_MATRIX))
def test_role_matrix(rpc: str, role: str, keys: Path, svc: tuple[MatcherServer, int]) -> None:
    server, port = svc
    force = "F02"
    with client(keys, port, force, role) as c:
        calls: dict[str, Callable[[], object]] = {
            "SubmitBatch": lambda: _submit(c, force, keys),
            "RetractRecords": lambda: _retract(c, force, server),
            "FindMatches": lambda: c.find(
                _subjects(),
                purpose="vetting",
                case_reference="c",
            ),
            "Watch": lambda: _watch(c),
            "ReadAuditLog": lambda: list(c.read_audit()),
            "GetInfo": c.info,
        }
        if role in ROLE_MATRIX[rpc]:
            assert calls[rpc]() is not None
        else:
            with pytest.raises(grpc.RpcError) as exc:
                calls[rpc]()
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert role in (exc.value.details() or "")
    # Every call, allowed or denied, is in the audit log.
    last = server.audit.log.read_lines(0)  # type: ignore[union-attr]
    entries = [
        line for line in last if f'"rpc":"{rpc}"' in line and f'"caller_role":"{role}"' in line
    ]
    assert entries
    outcome = "ok" if role in ROLE_MATRIX[rpc] else "denied"
    assert f'"outcome":"{outcome}"' in entries[-1]


def test_no_client_certificate(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    _, port = svc
    creds = grpc.ssl_channel_credentials(root_certificates=(keys / "ca.pem").read_bytes())
    with (
        grpc.secure_channel(f"127.0.0.1:{port}", creds) as ch,
        pytest.raises(grpc.RpcError) as exc,
    ):
        MatcherClient(ch, timeout=10).info()
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_certificate_from_another_ca(
    keys: Path, svc: tuple[MatcherServer, int], tmp_path: Path
) -> None:
    _, port = svc
    create_ca(tmp_path)
    issue_client_cert(tmp_path, "F01", "assessor")
    rogue = load_client_tls(tmp_path, "F01", "assessor")
    tls = TlsFiles((keys / "ca.pem").read_bytes(), rogue.cert, rogue.key)
    with secure_channel(f"127.0.0.1:{port}", tls) as ch, pytest.raises(grpc.RpcError) as exc:
        MatcherClient(ch, timeout=10).info()
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    # And a client that trusts another CA refuses the server.
    good = load_client_tls(keys, "F01", "assessor")
    tls = TlsFiles((tmp_path / "ca.pem").read_bytes(), good.cert, good.key)
    with secure_channel(f"127.0.0.1:{port}", tls) as ch, pytest.raises(grpc.RpcError) as exc:
        MatcherClient(ch, timeout=10).info()
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def _raw_find(c: MatcherClient, **overrides: object) -> grpc.RpcError:
    from matcher.service.servicer import pb

    subj = encode(people(1, seed=14), "F01")
    req = {
        "purpose": pb.SearchPurpose(purpose=pb.PURPOSE_VETTING, case_reference="case 9"),
        "encoding": pb.QueryEncoding(
            epoch=1, schema_fingerprint=subj.schema_fingerprint, filter_bits=1024
        ),
        "subjects": [pb.Subject(subject_id="s", filter=subj.filters[0].astype("<u8").tobytes())],
    }
    req.update(overrides)
    with pytest.raises(grpc.RpcError) as exc:
        c._uu("FindMatches", pb.FindMatchesRequest(**req), pb.FindMatchesResponse)
    return exc.value


def test_bad_queries_get_fitting_codes(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    from matcher.service.servicer import pb

    _, port = svc
    fp = encode(people(1, seed=1), "F01").schema_fingerprint
    secret_case = "Jane Doe 1970"
    with client(keys, port, "F01", "assessor") as c:
        cases = [
            ({"purpose": pb.SearchPurpose(case_reference="x")}, "INVALID_ARGUMENT", "purpose"),
            (
                {"purpose": pb.SearchPurpose(purpose=1, case_reference="")},
                "INVALID_ARGUMENT",
                "case_reference",
            ),
            (
                {"encoding": pb.QueryEncoding(epoch=7, schema_fingerprint=fp, filter_bits=1024)},
                "FAILED_PRECONDITION",
                "epoch",
            ),
            (
                {"encoding": pb.QueryEncoding(epoch=1, schema_fingerprint="ab", filter_bits=1024)},
                "FAILED_PRECONDITION",
                "schema_fingerprint",
            ),
            (
                {"subjects": [pb.Subject(subject_id="s", filter=b"\x01" * 100)]},
                "INVALID_ARGUMENT",
                "filter",
            ),
            ({"subjects": []}, "INVALID_ARGUMENT", "subjects"),
            (
                {"subjects": [pb.Subject(subject_id="s", filter=bytes(128))] * 101},
                "RESOURCE_EXHAUSTED",
                "subjects",
            ),
            (
                {"purpose": pb.SearchPurpose(purpose=99, case_reference=secret_case)},
                "INVALID_ARGUMENT",
                "purpose",
            ),
        ]
        for override, code, field in cases:
            err = _raw_find(c, **override)
            assert err.code().name == code, (override, err.details())
            assert field in (err.details() or "")
            assert secret_case not in (err.details() or "")


def test_quota_exhausted(keys: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with running(keys, url, config=config(subjects_per_minute=3)) as (_, port):
        subj = encode(people(2, seed=15), "F01")
        with client(keys, port, "F01", "assessor") as c:
            c.find(subj, purpose="vetting", case_reference="c")
            with pytest.raises(grpc.RpcError) as exc:
                c.find(subj, purpose="vetting", case_reference="c")
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Quotas are per identity: another assessor is unaffected.
        with client(keys, port, "F03", "assessor") as c:
            c.find(subj, purpose="vetting", case_reference="c")


def test_bad_batches_change_nothing_and_log_no_values(
    keys: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from matcher.service.servicer import pb

    caplog.set_level(logging.DEBUG)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    batch = encode(people(3, seed=16), "F01")
    key = load_signing_key(keys, "F01")
    with running(keys, url) as (server, port), client(keys, port, "F01", "submitter") as c:

        def stream(header: object, *chunks: object) -> grpc.RpcError:
            call = c.channel.stream_unary(
                "/matcher.v1.Matcher/SubmitBatch",
                request_serializer=pb.SubmitBatchRequest.SerializeToString,
                response_deserializer=pb.SubmitBatchResponse.FromString,
            )
            msgs = [pb.SubmitBatchRequest(header=header)] if header is not None else []
            msgs += [pb.SubmitBatchRequest(chunk=ch) for ch in chunks]
            with pytest.raises(grpc.RpcError) as exc:
                call(iter(msgs), timeout=10)
            return exc.value

        good = {
            "batch_id": batch.batch_id,
            "force": "F01",
            "epoch": 1,
            "schema_fingerprint": batch.schema_fingerprint,
            "filter_bits": 1024,
            "record_count": 3,
            "signature": bytes(64),
        }
        refs = batch.record_refs
        filt = batch.filters.astype("<u8").tobytes()
        chunk = pb.RecordChunk(record_refs=refs, filters=filt, token_counts=[0, 0, 0])
        cases = [
            (None, [chunk], "INVALID_ARGUMENT", "header"),
            ({**good, "epoch": 3}, [chunk], "FAILED_PRECONDITION", "epoch"),
            ({**good, "filter_bits": 512}, [chunk], "INVALID_ARGUMENT", "filter_bits"),
            ({**good, "record_count": 5}, [chunk], "INVALID_ARGUMENT", "record_count"),
            (
                good,
                [pb.RecordChunk(record_refs=refs, filters=filt[:-8], token_counts=[0] * 3)],
                "INVALID_ARGUMENT",
                "filters",
            ),
            (good, [chunk], "PERMISSION_DENIED", "signature"),
            ({**good, "batch_id": "xyz"}, [chunk], "INVALID_ARGUMENT", "batch_id"),
        ]
        for header, chunks, code, field in cases:
            err = stream(pb.BatchHeader(**header) if header else None, *chunks)
            assert err.code().name == code, (field, err.details())
            assert field in (err.details() or "")
        bad_refs = batch.__class__(**{**batch.__dict__, "record_refs": ["Not-A-Ref"] * 3})
        with pytest.raises(grpc.RpcError) as exc:
            c.submit(bad_refs, key)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Not-A-Ref" not in (exc.value.details() or "")
        assert server.core.store.version() == 0
        c.submit(batch, key)
    text = caplog.text
    for ref in batch.record_refs:
        assert ref not in text
    assert "Not-A-Ref" not in text


def test_every_force_and_role_has_one_identity(keys: Path) -> None:
    from matcher.pki import identity_from_pem

    for force in FORCES:
        for role in ROLES:
            pem = (keys / "clients" / f"{force}-{role}.pem").read_bytes()
            ident = identity_from_pem(pem)
            assert (ident.force, ident.role) == (force, role)


def test_oversized_message_is_refused(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    from matcher.service.servicer import pb

    server, port = svc
    before = server.core.store.version()
    with client(keys, port, "F01", "assessor") as c:
        huge = [pb.Subject(subject_id="s", filter=bytes(128 * 1024 * 1024 // 8))]
        req = pb.FindMatchesRequest(subjects=huge)
        with pytest.raises(grpc.RpcError) as exc:
            c._uu("FindMatches", req, pb.FindMatchesResponse)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.core.store.version() == before
