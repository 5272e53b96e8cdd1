"""The audit log behind the real service: every call logged, exported over gRPC by an
auditor, verified, replayed after a restart, submissions and retractions, and free of
raw values."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pandas as pd
import pytest

from matcher.audit import AuditEntry, read_jsonl
from matcher.cli import main

from service_helpers import client, encode, make_keyring, people, running, submit


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyring(tmp_path_factory.mktemp("keys"))


def _search(keys: Path, port: int, df: pd.DataFrame, case: str) -> int:
    with client(keys, port, "F03", "assessor") as c:
        res, _ = c.find(encode(df, "F03"), purpose="vetting", case_reference=case)
    return sum(len(r.matches) for r in res)


def _raw_values(df: pd.DataFrame) -> set[str]:
    cols = ["forename", "surname", "date_of_birth", "postcode"]
    return {str(v) for c in cols for v in df[c]} | {str(v) for v in df["id"]}


def test_service_log_exports_verifies_and_replays(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    df = people(24, seed=11)
    out = tmp_path / "audit.jsonl"
    f01 = encode(df, "F01")
    with running(keys, url) as (_, port):
        submit(keys, port, f01)
        submit(keys, port, encode(df.iloc[:8], "F02"))
        hits = _search(keys, port, df.iloc[:6], "case 1")
        with client(keys, port, "F01", "submitter") as c:
            c.retract("F01", f01.record_refs[:3])
            with pytest.raises(grpc.RpcError) as refused:  # a submitter may not search
                c.find(encode(df.iloc[:1], "F01"), purpose="vetting", case_reference="x")
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        hits += _search(keys, port, df.iloc[:6], "case 2")
    with running(keys, url) as (_, port):  # a restart rebuilds the index from the store
        submit(keys, port, encode(df.iloc[10:20], "F02"))
        hits += _search(keys, port, df.iloc[:14], "case 3")
        with client(keys, port, "F02", "assessor") as c, pytest.raises(grpc.RpcError):
            list(c.read_audit())  # only auditors read the log
        args = ["audit", "export", "--keys", str(keys), "--server", f"127.0.0.1:{port}"]
        assert main([*args, "--force", "F01", "-o", str(out)]) == 0
    assert hits > 20

    entries = [i for i in read_jsonl(out) if isinstance(i, AuditEntry)]
    by_rpc = [(e.event.rpc, e.event.category, e.event.outcome) for e in entries]
    assert ("FindMatches", "consultation", "denied") in by_rpc
    assert ("ReadAuditLog", "audit", "denied") in by_rpc
    assert ("RetractRecords", "erasure", "ok") in by_rpc
    assert ("SubmitBatch", "collection", "ok") in by_rpc
    assert by_rpc[-1] == ("ReadAuditLog", "audit", "ok")  # reading is itself audited
    denied = next(e for e in entries if e.event.outcome == "denied")
    assert denied.event.caller_role == "submitter" and denied.event.caller_force == "F01"

    capsys.readouterr()
    # The export ends with a checkpoint over the ReadAuditLog entry itself: fully signed.
    assert main(["audit", "verify", str(out), "--keys", str(keys), "--strict"]) == 0
    assert main(["audit", "replay", str(out), "--store", url, "--keys", str(keys)]) == 0
    assert "replayed 3 searches" in capsys.readouterr().out

    # No name, date of birth, postcode or subject id anywhere: neither in the export
    # (encodings aside, whose base64 letters may spell anything) nor in any report.
    texts = []
    for line in out.read_text().splitlines():
        record = json.loads(line)
        record.pop("query_encodings", None)
        texts.append(json.dumps(record))
    for fmt in ("json", "csv", "html"):
        assert main(["audit", "report", str(out), "--format", fmt]) == 0
        texts.append(capsys.readouterr().out)
    blob = "\n".join(texts)
    leaked = sorted(v for v in _raw_values(df) if v in blob)
    assert leaked == []
