"""Tampering with an exported audit log is detected, and the first bad entry is named."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from matcher.audit import (
    AuditEvent,
    AuditLog,
    VerifyReport,
    canonical_json,
    export_from_store,
    verify,
)
from matcher.audit._model import checkpoint_digest, entry_hash
from matcher.errors import AuditError

KEY = Ed25519PrivateKey.generate()


def event(i: int) -> AuditEvent:
    return AuditEvent(
        rpc=["FindMatches", "SubmitBatch", "RetractRecords"][i % 3],
        category=["consultation", "collection", "erasure"][i % 3],
        outcome="ok" if i % 5 else "denied",
        status_code="OK" if i % 5 else "PERMISSION_DENIED",
        caller_force=f"{i % 4:02d}",
        caller_role="assessor",
        caller_cert_fingerprint=f"{i % 4:064x}",
        purpose="SAFEGUARDING",
        case_reference=f"C/{i}",
        query_encodings=["AAECAwQFBgc="],
        results=[{"subject": 0, "force": "02", "record_ref": f"r{i}", "score": i / 7, "band": "x"}],
        store_version=i,
        details={"batch_id": f"b{i}", "records": i},
    )


def make_log(tmp: Path, n: int, every: int, close: bool = True) -> Path:
    url = f"sqlite:///{tmp / 'store.db'}"
    log = AuditLog.open(url, KEY, checkpoint_every=every)
    for i in range(n):
        log.append(event(i))
    out = tmp / "audit.jsonl"
    if close:
        log.close()
        export_from_store(url, out)
    else:
        out.write_text("".join(line + "\n" for line in log.read_lines(seal=False)))
        log._closed = True  # leave without the closing checkpoint, as a crash would
        log._stop.set()
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_log(tmp_path_factory.mktemp("small"), 5, 2).read_bytes()


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_log(tmp_path_factory.mktemp("large"), 40, 10).read_bytes()


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def check(data: bytes | list[bytes], tmp_path: Path, **kw: bool) -> VerifyReport:
    path = tmp_path / "t.jsonl"
    path.write_bytes(data if isinstance(data, bytes) else b"".join(x + b"\n" for x in data))
    return verify(path, KEY.public_key(), **kw)


def test_clean_log_verifies(large: bytes, tmp_path: Path) -> None:
    report = check(large, tmp_path, strict=True)
    assert report.ok and report.entries == 40 and report.checkpoints == 4
    assert report.last_seq == 40 and report.unsigned_tail == 0


def _flip_everywhere(data: bytes, positions: list[int], rng: random.Random) -> None:
    line_starts = [0] + [i + 1 for i, b in enumerate(data) if b == 0x0A]
    for pos in positions:
        new = rng.choice([b for b in range(256) if b != data[pos]])
        tampered = data[:pos] + bytes([new]) + data[pos + 1 :]
        report = verify([*_split(tampered)], KEY.public_key())
        assert not report.ok, f"a change at byte {pos} went unnoticed"
        line = max(i for i, start in enumerate(line_starts) if start <= pos) + 1
        assert report.problem is not None and report.problem.line == line, (pos, report.problem)


def _split(data: bytes) -> list[bytes]:
    # What verify() does for a file: split on "\n"; an unterminated last line is bad.
    parts = data.split(b"\n")
    if parts[-1] == b"":
        return parts[:-1]
    return [*parts[:-1], parts[-1] + b"\x00"]


def test_every_single_byte_change_in_a_small_log_is_caught(small: bytes) -> None:
    rng = random.Random(5)
    _flip_everywhere(small, list(range(len(small))), rng)


def test_random_byte_changes_in_a_large_log_are_caught(large: bytes) -> None:
    rng = random.Random(62)
    _flip_everywhere(large, rng.sample(range(len(large)), 1500), rng)


def test_same_value_in_another_spelling_is_caught(small: bytes, tmp_path: Path) -> None:
    lines = lines_of(small)
    record = json.loads(lines[0])
    respelled = json.dumps(record, sort_keys=True).encode()  # spaces after separators
    report = check([respelled, *lines[1:]], tmp_path)
    assert not report.ok and "canonical" in str(report.problem)
    upper = lines[2].replace(b'"signature":"', b'"signature":"', 1)
    sig_at = upper.index(b'"signature":"') + len(b'"signature":"')
    upper = upper[:sig_at] + upper[sig_at : sig_at + 128].upper() + upper[sig_at + 128 :]
    report = check([lines[0], lines[1], upper, *lines[3:]], tmp_path)
    assert not report.ok and "hex" in str(report.problem)


def test_deleted_entry_is_named(large: bytes, tmp_path: Path) -> None:
    lines = lines_of(large)
    report = check(lines[:5] + lines[6:], tmp_path)  # line 6 is entry seq 6
    assert not report.ok
    assert str(report.problem) == "line 6 (entry seq 7): sequence number is 7, 6 expected"
    with pytest.raises(AuditError, match=r"line 6 \(entry seq 7\)"):
        report.raise_for_problem()
    first_gone = check(lines[1:], tmp_path)
    assert "sequence number is 2, 1 expected" in str(first_gone.problem)


def test_deleted_entry_before_a_checkpoint_is_caught(large: bytes, tmp_path: Path) -> None:
    lines = lines_of(large)
    assert json.loads(lines[10])["type"] == "checkpoint"
    report = check(lines[:9] + lines[10:], tmp_path)
    assert "checkpoint covers seq 10 but the log is at seq 9" in str(report.problem)


def test_swapped_entries_are_caught(large: bytes, tmp_path: Path) -> None:
    lines = lines_of(large)
    swapped = [*lines[:3], lines[4], lines[3], *lines[5:]]
    report = check(swapped, tmp_path)
    assert str(report.problem).startswith("line 4 (entry seq 5): sequence number is 5")
    # Swapping the content but keeping the sequence numbers breaks the hashes instead.
    a, b = json.loads(lines[3]), json.loads(lines[4])
    a["seq"], b["seq"] = b["seq"], a["seq"]
    swapped = [*lines[:3], canonical_json(b).encode(), canonical_json(a).encode(), *lines[5:]]
    assert "prev_hash" in str(check(swapped, tmp_path).problem)


def _rechain(lines: list[bytes], edit_line: int) -> list[bytes]:
    """Edit one entry and recompute every later hash and checkpoint link (no key)."""
    out, head, cp = [], None, None
    for n, raw in enumerate(lines):
        rec = json.loads(raw)
        if rec["type"] == "entry":
            if n == edit_line:
                rec["purpose"] = "SOMETHING_ELSE"
            if head is not None:
                rec["prev_hash"] = head
            rec["hash"] = entry_hash(rec)
            head = rec["hash"]
        else:
            rec["head_hash"] = head
            if cp is not None:
                rec["prev_checkpoint"] = cp
            cp = checkpoint_digest(rec)
        out.append(canonical_json(rec).encode())
    return out


def test_rewritten_and_rehashed_history_fails_at_the_checkpoint(
    large: bytes, tmp_path: Path
) -> None:
    report = check(_rechain(lines_of(large), 3), tmp_path)
    assert str(report.problem) == "line 11 (checkpoint at seq 10): checkpoint signature is invalid"


def test_forged_checkpoints_are_caught(large: bytes, tmp_path: Path) -> None:
    lines = lines_of(large)
    rec = json.loads(lines[10])
    mallory = Ed25519PrivateKey.generate()
    body = {k: v for k, v in rec.items() if k != "signature"}
    forged = {**body, "signature": mallory.sign(canonical_json(body).encode()).hex()}
    report = check([*lines[:10], canonical_json(forged).encode(), *lines[11:]], tmp_path)
    assert "signature is invalid" in str(report.problem)
    from matcher.audit import key_id

    own = {**body, "key_id": key_id(mallory.public_key())}
    own["signature"] = mallory.sign(canonical_json(own).encode()).hex()
    report = check([*lines[:10], canonical_json(own).encode(), *lines[11:]], tmp_path)
    assert "signed by an unknown key" in str(report.problem)
    # The right key, but over a head the chain never had.
    fake = {**body, "head_hash": "0" * 64}
    fake["signature"] = KEY.sign(canonical_json(fake).encode()).hex()
    report = check([*lines[:10], canonical_json(fake).encode(), *lines[11:]], tmp_path)
    assert "head_hash does not match" in str(report.problem)


def test_deleted_checkpoint_is_caught(large: bytes, tmp_path: Path) -> None:
    lines = lines_of(large)
    report = check(lines[:21] + lines[22:], tmp_path)  # the checkpoint at seq 20
    assert "does not follow the previous checkpoint" in str(report.problem)


def test_truncated_tail_is_reported(tmp_path: Path) -> None:
    path = make_log(tmp_path, 25, 10, close=False)
    lines = lines_of(path.read_bytes())
    report = check(lines, tmp_path)
    assert report.ok and report.unsigned_tail == 5 and report.last_checkpoint_seq == 20
    cut = check(lines[:-3], tmp_path)
    assert cut.ok and cut.unsigned_tail == 2 and cut.last_seq == 22
    strict = check(lines[:-3], tmp_path, strict=True)
    assert "2 entries after the last checkpoint" in str(strict.problem)
    # A closed log ends in a checkpoint; cutting it off leaves an unsigned tail again.
    closed = lines_of(make_log(tmp_path / "c", 25, 10).read_bytes())
    assert check(closed, tmp_path, strict=True).ok
    assert check(closed[:-1], tmp_path).unsigned_tail == 5
    assert not check(closed[:-1], tmp_path, strict=True).ok


def test_partial_export_needs_the_partial_flag(tmp_path: Path) -> None:
    make_log(tmp_path, 12, 5)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    export_from_store(url, tmp_path / "part.jsonl", since_seq=6)
    assert not verify(tmp_path / "part.jsonl", KEY.public_key()).ok
    report = verify(tmp_path / "part.jsonl", KEY.public_key(), partial=True, strict=True)
    assert report.ok and report.first_seq == 7 and report.entries == 6


def test_wrong_public_key(large: bytes, tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    path = tmp_path / "a.jsonl"
    path.write_bytes(large)
    assert "unknown key" in str(verify(path, other).problem)
    assert verify(path, [other, KEY.public_key()]).ok


def test_rows_edited_in_the_database_are_caught(tmp_path: Path) -> None:
    make_log(tmp_path, 6, 3)
    db = tmp_path / "store.db"
    conn = sqlite3.connect(db)
    try:
        # Someone with file access drops the triggers and rewrites a row.
        conn.execute("DROP TRIGGER audit_entries_no_update")
        body = json.loads(conn.execute("SELECT body FROM audit_entries WHERE seq=2").fetchone()[0])
        body["caller_force"] = "99"
        conn.execute("UPDATE audit_entries SET body=? WHERE seq=2", (canonical_json(body),))
        conn.commit()
    finally:
        conn.close()
    export_from_store(f"sqlite:///{db}", tmp_path / "out.jsonl")
    report = verify(tmp_path / "out.jsonl", KEY.public_key())
    assert str(report.problem) == "line 2 (entry seq 2): hash does not match the entry's content"


def test_empty_and_garbage_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    assert verify(empty, KEY.public_key()).ok
    assert not verify(empty, KEY.public_key(), strict=True).ok
    for junk in [b"[]\n", b"\n", b'{"type":"other"}\n', b"\xff\n", b"not json\n"]:
        empty.write_bytes(junk)
        report = verify(empty, KEY.public_key())
        assert not report.ok and report.problem is not None and report.problem.line == 1


@pytest.mark.slow
def test_every_single_byte_change_in_a_larger_log_is_caught(tmp_path: Path) -> None:
    data = make_log(tmp_path, 30, 7).read_bytes()  # about 25 kB, one check per byte
    _flip_everywhere(data, list(range(len(data))), random.Random(99))
