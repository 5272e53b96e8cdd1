"""The gRPC service end to end: real server on loopback, real TLS, real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from matcher.pki import load_signing_key
from matcher.service import MatcherClient, MatcherServer

import service_helpers
from service_helpers import (
    client,
    encode,
    make_keyring,
    people,
    running,
    submit,
)

store_url = service_helpers.store_url  # the shared per-backend fixture


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyring(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def svc(keys: Path, tmp_path: Path) -> Iterator[tuple[MatcherServer, int]]:
    with running(keys, f"sqlite:///{tmp_path / 'store.db'}") as sp:
        yield sp


def test_find_matches_in_other_forces(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    _, port = svc
    df = people(20, seed=1)
    submit(keys, port, encode(df, "F01"))
    submit(keys, port, encode(df.iloc[:5], "F02"))
    subjects = encode(df.iloc[[0, 7]], "F03")
    with client(keys, port, "F03", "assessor") as c:
        res, version = c.find(
            subjects, purpose="vetting", case_reference="case 1", subject_ids=["s0", "s7"]
        )
    assert version == 2
    assert [r.subject_id for r in res] == ["s0", "s7"]
    s0 = {m.force for m in res[0].matches if m.band == "strong"}
    assert s0 == {"F01", "F02"}
    assert {m.force for m in res[1].matches if m.band == "strong"} == {"F01"}
    best = res[0].matches[0]
    assert len(best.record_ref) == 32 and 0.0 <= best.score <= 1.0
    assert len(best.agreement) == 7


def test_own_force_excluded_unless_asked(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    _, port = svc
    df = people(5, seed=2)
    submit(keys, port, encode(df, "F01"))
    subjects = encode(df.iloc[:1], "F01")
    with client(keys, port, "F01", "assessor") as c:
        res, _ = c.find(subjects, purpose="safeguarding_child", case_reference="c")
        assert res[0].matches == []
        res, _ = c.find(
            subjects, purpose="safeguarding_child", case_reference="c", include_own_force=True
        )
        assert res[0].matches and res[0].matches[0].force == "F01"


def test_retraction_removes_at_once(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    server, port = svc
    df = people(6, seed=3)
    batch = encode(df, "F01")
    submit(keys, port, batch)
    subjects = encode(df.iloc[:1], "F02")
    with client(keys, port, "F02", "assessor") as a, client(keys, port, "F01", "submitter") as s:
        res, _ = a.find(subjects, purpose="vetting", case_reference="c")
        ref = res[0].matches[0].record_ref
        assert ref == batch.record_refs[0]
        out = s.retract("F01", [ref])
        assert out.retracted == 1 and out.store_version == 2
        res, _ = a.find(subjects, purpose="vetting", case_reference="c")
        assert ref not in {m.record_ref for m in res[0].matches}
    assert server.core.store.record_count() == 5


def test_idempotent_submission(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    server, port = svc
    batch = encode(people(4, seed=4), "F01")
    with client(keys, port, "F01", "submitter") as c:
        key = load_signing_key(keys, "F01")
        first = c.submit(batch, key, chunk_records=3)
        again = c.submit(batch, key, chunk_records=1)
    assert (first.already_applied, again.already_applied) == (False, True)
    assert first.store_version == again.store_version == 1
    assert server.core.store.record_count() == 4


def _code(exc: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    code: grpc.StatusCode = exc.value.code()
    return code


def test_bad_signature_changes_nothing(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    server, port = svc
    batch = encode(people(3, seed=5), "F01")
    with client(keys, port, "F01", "submitter") as c, pytest.raises(grpc.RpcError) as exc:
        c.submit(batch, load_signing_key(keys, "F02"))  # another force's key
    assert _code(exc) == grpc.StatusCode.PERMISSION_DENIED
    assert "signature" in (exc.value.details() or "")
    assert server.core.store.version() == 0


def test_submit_for_another_force_is_denied(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    server, port = svc
    batch = encode(people(3, seed=6), "F02")
    with client(keys, port, "F01", "submitter") as c, pytest.raises(grpc.RpcError) as exc:
        c.submit(batch, load_signing_key(keys, "F02"))
    assert _code(exc) == grpc.StatusCode.PERMISSION_DENIED
    assert "force" in (exc.value.details() or "")
    assert server.core.store.version() == 0


def test_retract_another_forces_records(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    server, port = svc
    batch = encode(people(3, seed=7), "F02")
    submit(keys, port, batch)
    with client(keys, port, "F01", "submitter") as c:
        with pytest.raises(grpc.RpcError) as exc:
            c.retract("F01", batch.record_refs[:1])
        assert _code(exc) == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as exc:
            c.retract("F02", batch.record_refs[:1])
        assert _code(exc) == grpc.StatusCode.PERMISSION_DENIED
    assert server.core.store.record_count() == 3


def test_restart_rebuilds_index(keys: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    df = people(8, seed=8)
    with running(keys, url) as (_, port):
        submit(keys, port, encode(df, "F01"))
    with running(keys, url) as (server, port):
        assert len(server.core.index) == 8 and server.core.store_version == 1
        with client(keys, port, "F02", "assessor") as c:
            res, _ = c.find(encode(df.iloc[:1], "F02"), purpose="vetting", case_reference="c")
        assert res[0].matches[0].force == "F01"


def test_get_info(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    server, port = svc
    with client(keys, port, "F03", "admin") as c:
        info = c.info()
    assert info.caller_force == "F03" and info.caller_role == "admin"
    assert list(info.epochs) == [1]
    assert list(info.schema_fingerprints) == [server.core.schema.fingerprint]
    assert info.filter_bits == 1024 and "VETTING" in info.purposes
    assert len(info.audit_public_key) == 32
    # The service runs without the linkage secret: its keyring holds none.
    assert not list(keys.glob("linkage-secret-*"))


def test_health_and_reflection(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, port = svc
    with client(keys, port, "F01", "auditor") as c:
        stub = health_pb2_grpc.HealthStub(c.channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service="matcher.v1.Matcher"))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(c.channel)
        out = list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {s.name for s in out[0].list_services_response.service}
        assert "matcher.v1.Matcher" in names


def test_subjects_are_numpy_round_trip(keys: Path, svc: tuple[MatcherServer, int]) -> None:
    # A subject's filter travels as bytes and comes back as the same words.
    server, port = svc
    batch = encode(people(2, seed=9), "F01")
    submit(keys, port, batch)
    snap = server.core.index.snapshot()
    assert np.array_equal(snap.filters[:2], batch.filters)


def test_client_needs_a_force_when_ambiguous(keys: Path) -> None:
    from matcher.errors import KeyringError

    with pytest.raises(KeyringError):
        MatcherClient.open("127.0.0.1:1", keys, role="assessor")


def test_whole_flow_on_both_stores(keys: Path, store_url: str) -> None:
    df = people(12, seed=30)
    f01, f02 = encode(df, "F01"), encode(df.iloc[:4], "F02")
    with running(keys, store_url) as (server, port):
        submit(keys, port, f01)
        submit(keys, port, f01)  # idempotent
        with client(keys, port, "F02", "submitter") as s:
            s.submit(f02, load_signing_key(keys, "F02"))
            s.retract("F02", f02.record_refs[:1])
        with client(keys, port, "F03", "assessor") as c:
            res, version = c.find(encode(df.iloc[:2], "F03"), purpose="vetting", case_reference="c")
        assert version == 3
        assert {m.force for m in res[0].matches} == {"F01"}  # F02's copy was retracted
        assert {m.force for m in res[1].matches} == {"F01", "F02"}
        assert server.core.store.record_count() == 15
        with client(keys, port, "F01", "auditor") as a:
            lines = [json for _, kind, json in a.read_audit() if kind == "entry"]
        assert any('"rpc":"FindMatches"' in line for line in lines)
    with running(keys, store_url) as (server, port):
        assert (server.core.store_version, len(server.core.index)) == (3, 15)


def test_audit_export_verify_and_replay(keys: Path, tmp_path: Path) -> None:
    from matcher.audit import (
        export_from_server,
        load_audit_public_key,
        read_jsonl,
        replay,
        verify,
    )
    from matcher.audit._store_replay import StoreReplayer

    url = f"sqlite:///{tmp_path / 'store.db'}"
    df = people(10, seed=40)
    f01 = encode(df, "F01")
    with running(keys, url) as (_, port):
        submit(keys, port, f01)
        with client(keys, port, "F02", "assessor") as c:
            c.find(encode(df.iloc[:3], "F02"), purpose="vetting", case_reference="c1")
            with client(keys, port, "F01", "submitter") as s:
                s.retract("F01", f01.record_refs[:1])
            res, _ = c.find(encode(df.iloc[:3], "F02"), purpose="vetting", case_reference="c2")
            assert f01.record_refs[0] not in {m.record_ref for r in res for m in r.matches}
        with client(keys, port, "F03", "submitter") as denied, pytest.raises(grpc.RpcError):
            list(denied.read_audit())
        out = tmp_path / "audit.jsonl"
        export_from_server(f"127.0.0.1:{port}", keys, out, force="F01")
    report = verify(out, load_audit_public_key(keys))
    assert report.ok, report
    text = out.read_text()
    assert '"outcome":"denied"' in text and '"rpc":"ReadAuditLog"' in text
    with StoreReplayer(url, keys_dir=keys) as replayer:
        rep = replay(read_jsonl(out), replayer)
    assert rep.ok and rep.replayed == 2, rep
