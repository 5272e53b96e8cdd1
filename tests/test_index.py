"""The in-memory match index: answers, atomic updates, tombstones, memory."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from matcher.errors import InputError
from matcher.index import Match, MatchIndex
from matcher.lsh import LshConfig
from matcher.schema import default_schema
from matcher.similarity import dice_topk_reference

W = 16


def _filters(rng: np.random.Generator, n: int, density: float = 0.3) -> NDArray[np.uint64]:
    bits = rng.random((n, W * 64)) < density
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def _refs(n: int) -> list[str]:
    return [secrets.token_hex(16) for _ in range(n)]


def _tokens(n: int, start: int = 0) -> list[NDArray[np.uint64]]:
    return [np.array([start + i], np.uint64) for i in range(n)]


def _key(matches: list[Match]) -> list[tuple[str, str, float]]:
    return [(m.force, m.record_ref, m.score) for m in matches]


def test_small_index_answers_exactly() -> None:
    rng = np.random.default_rng(1)
    idx = MatchIndex(W)
    forces, refs, rows = [], [], []
    for b in range(4):
        f = _filters(rng, 50)
        r = _refs(50)
        assert idx.add(f"batch{b}", f"F{b % 2}", r, f, _tokens(50))
        forces += [f"F{b % 2}"] * 50
        refs += r
        rows.append(f)
    stored = np.concatenate(rows)
    subjects = stored[[3, 77, 150]] ^ _filters(rng, 3, 0.02)
    got = idx.query(subjects, k=5, threshold=0.2)
    q, j, s = dice_topk_reference(subjects, stored, 200, 0.2)
    for x in range(3):
        want = sorted(
            ((-sc, refs[jj], forces[jj]) for qq, jj, sc in zip(q, j, s, strict=True) if qq == x),
        )[:5]
        assert _key(got[x]) == [(f, r, -neg) for neg, r, f in want]
    assert got[0][0].score > 0.9
    assert len(idx) == 200
    assert idx.version == 4


def test_exclude_force_and_threshold() -> None:
    rng = np.random.default_rng(2)
    f = _filters(rng, 10)
    idx = MatchIndex(W)
    idx.add("a", "F01", _refs(10), f, _tokens(10))
    idx.add("b", "F02", _refs(10), f, _tokens(10))
    res = idx.query_one(f[4], k=10, threshold=0.99)
    assert sorted(m.force for m in res) == ["F01", "F02"]
    res = idx.query_one(f[4], k=10, threshold=0.99, exclude_force="F01")
    assert [m.force for m in res] == ["F02"]
    assert idx.query_one(f[4], k=0) == []
    assert idx.query_one(f[4], exclude_force="NOBODY", threshold=0.99)[0].score == 1.0


def test_ties_break_by_reference_whatever_the_layout() -> None:
    rng = np.random.default_rng(3)
    x = _filters(rng, 1)
    idx = MatchIndex(W)
    refs = sorted(_refs(12))
    order = rng.permutation(12)
    for b in range(3):
        part = order[b * 4 : (b + 1) * 4]
        idx.add(f"b{b}", "F01", [refs[p] for p in part], np.repeat(x, 4, axis=0), _tokens(4))
    res = idx.query_one(x[0], k=5)
    assert [m.record_ref for m in res] == refs[:5]
    idx.compact()
    assert [m.record_ref for m in idx.query_one(x[0], k=5)] == refs[:5]


def test_retract_hides_records_at_once_and_compact_drops_them() -> None:
    rng = np.random.default_rng(4)
    f = _filters(rng, 100)
    refs = _refs(100)
    idx = MatchIndex(W)
    idx.add("a", "F01", refs, f, _tokens(100))
    before = idx.memory_bytes()
    v = idx.version
    assert idx.retract("F02", refs[:10]) == 0  # not F02's records
    assert idx.version == v
    assert idx.retract("F01", [*refs[:10], secrets.token_hex(16)]) == 10
    assert idx.version == v + 1
    assert idx.retract("F01", refs[:10]) == 0
    assert len(idx) == 90
    for r in range(10):
        assert all(m.record_ref != refs[r] for m in idx.query_one(f[r], k=3))
    assert idx.query_one(f[50], k=1)[0].record_ref == refs[50]
    snapshot = [_key(m) for m in idx.query(f[::7], k=4, threshold=0.3)]
    idx.compact()
    assert idx.memory_bytes() < before
    assert [_key(m) for m in idx.query(f[::7], k=4, threshold=0.3)] == snapshot
    # a retracted reference may be added again
    assert idx.add("again", "F01", refs[:1], f[:1], _tokens(1))
    assert idx.query_one(f[0], k=1)[0].record_ref == refs[0]


def test_add_is_idempotent_and_validates() -> None:
    rng = np.random.default_rng(5)
    f = _filters(rng, 3)
    refs = _refs(3)
    idx = MatchIndex(W)
    assert idx.add("a", "F01", refs, f, _tokens(3))
    assert not idx.add("a", "F01", refs, f, _tokens(3))
    assert len(idx) == 3
    bad: list[tuple[Callable[[], object], str]] = [
        (lambda: idx.add("b", "F01", refs, f, _tokens(3)), "record_ref"),
        (lambda: idx.add("c", "F01", ["xyz"] * 3, f, _tokens(3)), "record_ref"),
        (lambda: idx.add("d", "F01", [refs[0][:-1] + "g", *_refs(2)], f, _tokens(3)), "record_ref"),
        (lambda: idx.add("e", "F01", [refs[0], refs[0], refs[1]], f, _tokens(3)), "record_ref"),
        (lambda: idx.add("f", "F01", _refs(3), f[:, :8], _tokens(3)), "filter"),
        (lambda: idx.add("g", "F01", _refs(3), f, _tokens(2)), "blocking_tokens"),
        (lambda: idx.add("h", "", _refs(3), f, _tokens(3)), "force"),
        (lambda: idx.query(f[:, :8]), "filter"),
        (lambda: idx.query(f, k=-1), "k"),
    ]
    for call, field in bad:
        with pytest.raises(InputError) as err:
            call()
        assert err.value.field == field
    assert len(idx) == 3  # nothing half-applied
    assert idx.add("empty", "F01", [], np.zeros((0, W), np.uint64), [])
    assert idx.version == 1


def test_blocked_segments_find_near_duplicates() -> None:
    rng = np.random.default_rng(6)
    n = 3000
    f = _filters(rng, n)
    refs = _refs(n)
    exact = MatchIndex(W)
    blocked = MatchIndex(W, exhaustive_below=0, lsh=LshConfig.whole_filter(W))
    for idx in (exact, blocked):
        idx.add("a", "F01", refs, f, _tokens(n))
    picks = rng.choice(n, 40, replace=False)
    subjects = f[picks] ^ _filters(rng, 40, 0.02)
    got = blocked.query(subjects, k=3, threshold=0.5)
    want = exact.query(subjects, k=3, threshold=0.5)
    hits = sum(bool(g) and g[0].record_ref == refs[p] for g, p in zip(got, picks, strict=True))
    assert hits >= 38
    for g, w in zip(got, want, strict=True):
        assert set(_key(g)) <= set(_key(w))
    # a shared token finds a record that LSH alone would not
    unrelated = _filters(rng, 1)[0]
    plain = blocked.query_one(unrelated, k=100)
    assert len(plain) < 100  # only LSH bucket mates were scored
    seen = {m.record_ref for m in plain}
    target = next(r for r in range(n) if refs[r] not in seen)
    res = blocked.query_one(unrelated, k=100, tokens=np.array([target], np.uint64))
    assert refs[target] in {m.record_ref for m in res}


def test_segments_merge_logarithmically() -> None:
    rng = np.random.default_rng(7)
    idx = MatchIndex(W)
    for b in range(64):
        idx.add(f"b{b}", "F01", _refs(8), _filters(rng, 8), _tokens(8))
    assert len(idx) == 512
    assert len(idx._snap.segments) <= 7


def test_readers_never_see_half_a_batch() -> None:
    rng = np.random.default_rng(8)
    x = _filters(rng, 1)
    idx = MatchIndex(W)
    batch = 25
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            n = len(idx.query_one(x[0], k=10_000, threshold=1.0))
            if n % batch:
                errors.append(f"saw {n} copies")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    added: list[list[str]] = []
    for b in range(40):
        refs = _refs(batch)
        idx.add(f"b{b}", "F01", refs, np.repeat(x, batch, axis=0), _tokens(batch))
        added.append(refs)
        if b % 3 == 2:
            idx.retract("F01", added.pop(0))
        if b % 10 == 9:
            idx.compact()
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert len(idx.query_one(x[0], k=10_000, threshold=1.0)) == len(added) * batch


def test_memory_per_record_within_budget() -> None:
    rng = np.random.default_rng(9)
    n = 40_000
    f = _filters(rng, n, 0.28)
    idx = MatchIndex(W, lsh=LshConfig.for_schema(default_schema()))
    tokens = [rng.integers(0, 2**63, 5, dtype=np.uint64) for _ in range(n)]
    idx.add("a", "F01", _refs(n), f, tokens)
    assert idx.memory_bytes() / n <= 300


def test_oversized_blocks_are_passed_over() -> None:
    rng = np.random.default_rng(10)
    f = _filters(rng, 300)
    refs = _refs(300)
    common = [np.array([5], np.uint64) for _ in range(300)]
    small = MatchIndex(W, exhaustive_below=0, lsh=LshConfig(()), max_bucket=1000)
    tiny = MatchIndex(W, exhaustive_below=0, lsh=LshConfig(()), max_bucket=100)
    for idx in (small, tiny):
        idx.add("a", "F01", refs, f, common)
    subject = _filters(rng, 1)[0]
    assert len(small.query_one(subject, k=500, tokens=np.array([5], np.uint64))) == 300
    assert tiny.query_one(subject, k=500, tokens=np.array([5], np.uint64)) == []


def test_record_index_takes_the_schema_tables() -> None:
    from matcher.service.matching import RecordIndex

    schema = default_schema()
    with_schema = RecordIndex(schema.total_words, schema=schema)
    assert with_schema._matches.lsh == LshConfig.for_schema(schema)
    assert RecordIndex(schema.total_words)._matches.lsh == LshConfig.whole_filter(W)
    # a schema of another width is not applied to the filters
    assert RecordIndex(8, schema=schema)._matches.lsh == LshConfig.whole_filter(8)
