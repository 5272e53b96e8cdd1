"""Blocking tokens plus LSH: candidates, quality measures and the exhaustive fallback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from matcher.errors import InputError
from matcher.lsh import (
    LshBand,
    LshConfig,
    _positions,
    candidate_pairs,
    find_pairs,
    lsh_keys,
    pair_quality,
    record_keys,
)
from matcher.schema import FieldSpec, LinkageSchema, default_schema
from matcher.similarity import dice_candidates


def _filters(rng: np.random.Generator, n: int, words: int, density: float) -> NDArray[np.uint64]:
    bits = rng.random((n, words * 64)) < density
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def _no_tokens(n: int) -> list[NDArray[np.uint64]]:
    return [np.zeros(0, np.uint64) for _ in range(n)]


def _pairs(i: NDArray[np.int64], j: NDArray[np.int64]) -> set[tuple[int, int]]:
    return set(zip(i.tolist(), j.tolist(), strict=True))


def test_keys_are_deterministic_and_equal_for_equal_filters() -> None:
    rng = np.random.default_rng(1)
    x = _filters(rng, 20, 16, 0.3)
    x[7] = x[3]
    cfg = LshConfig.for_schema(default_schema())
    k1 = lsh_keys(x, cfg)
    assert k1.shape == (20, cfg.n_tables)
    np.testing.assert_array_equal(k1, lsh_keys(x.copy(), cfg))
    np.testing.assert_array_equal(k1[7], k1[3])
    # unrelated random filters almost never share a key
    assert (k1[0] == k1[1]).sum() == 0


def test_near_duplicates_collide_and_tokens_join() -> None:
    rng = np.random.default_rng(2)
    a = _filters(rng, 200, 16, 0.3)
    b = a ^ _filters(rng, 200, 16, 0.01)  # 1% of bits flipped: Dice about 0.97
    tokens_a = [np.array([i], np.uint64) for i in range(200)]
    tokens_b = [np.array([1000 + i], np.uint64) for i in range(200)]
    tokens_b[5] = np.array([17], np.uint64)  # b[5] shares a token with a[17]
    i, j = candidate_pairs(a, tokens_a, b, tokens_b, config=LshConfig.whole_filter(16))
    found = _pairs(i, j)
    assert sum((r, r) in found for r in range(200)) >= 195
    assert (17, 5) in found
    # few chance collisions among 40 000 unrelated pairs
    assert len(found) < 400
    assert np.all(np.diff(i * 200 + j) > 0)  # sorted, distinct


def test_self_join_matches_two_sided_join() -> None:
    rng = np.random.default_rng(3)
    base = _filters(rng, 40, 4, 0.3)
    x = np.concatenate([base, base ^ _filters(rng, 40, 4, 0.02)])
    tokens = [np.array([r % 7], np.uint64) for r in range(80)]
    cfg = LshConfig.whole_filter(4, tables=6, hashes=3)
    si, sj = candidate_pairs(x, tokens, x, tokens, self_join=True, config=cfg)
    assert np.all(si < sj)
    ti, tj = candidate_pairs(x, tokens, x, tokens, config=cfg)
    two_sided = {(min(p), max(p)) for p in _pairs(ti, tj) if p[0] != p[1]}
    assert _pairs(si, sj) == two_sided


def test_oversized_blocks_are_skipped() -> None:
    rng = np.random.default_rng(4)
    x = _filters(rng, 100, 2, 0.3)
    common = [np.array([42], np.uint64) for _ in range(100)]
    cfg = LshConfig((), max_block_pairs=100)
    assert len(candidate_pairs(x, common, x, common, self_join=True, config=cfg)[0]) == 0
    cfg = LshConfig((), max_block_pairs=10_000)
    assert len(candidate_pairs(x, common, x, common, self_join=True, config=cfg)[0]) == 4950


def test_record_keys_keep_tokens_apart_from_lsh() -> None:
    x = np.zeros((2, 2), np.uint64)
    cfg = LshConfig.whole_filter(2, tables=1, hashes=1)
    keys, rows = record_keys(x, [np.array([5], np.uint64), np.zeros(0, np.uint64)], cfg)
    assert rows.tolist() == [0, 1, 0]
    assert len(set(keys.tolist())) == 2
    with pytest.raises(InputError):
        record_keys(x, [np.zeros(0, np.uint64)], cfg)


def test_pair_quality() -> None:
    q = pair_quality(
        (np.array([0, 0, 1]), np.array([1, 2, 2])),
        (np.array([0, 2]), np.array([1, 3])),
        4,
        4,
        self_join=True,
    )
    assert (q.candidates, q.true_pairs, q.found, q.comparable) == (3, 2, 1, 6)
    assert q.pair_completeness == 0.5
    assert q.reduction_ratio == 0.5
    empty = pair_quality((np.zeros(0, np.int64),) * 2, (np.zeros(0, np.int64),) * 2, 0, 0)
    assert empty.pair_completeness == 1.0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.5, 0.7, 0.9]), st.booleans())
def test_blocked_pairs_are_exact_pairs(seed: int, threshold: float, self_join: bool) -> None:
    rng = np.random.default_rng(seed)
    a = _filters(rng, 60, 4, 0.3)
    b = a if self_join else a[rng.permutation(60)] ^ _filters(rng, 60, 4, 0.03)
    tokens = [np.array([r % 9], np.uint64) for r in range(60)]
    exact = find_pairs(a, tokens, b, tokens, threshold, self_join=self_join, strategy="exhaustive")
    blocked = find_pairs(a, tokens, b, tokens, threshold, self_join=self_join, strategy="blocked")
    reference = dice_candidates(a, b, threshold, self_join=self_join)
    for u, v in zip(exact, reference, strict=True):
        np.testing.assert_array_equal(u, v)
    got = dict(
        zip(
            zip(blocked[0].tolist(), blocked[1].tolist(), strict=True),
            blocked[2].tolist(),
            strict=True,
        )
    )
    want = dict(
        zip(zip(exact[0].tolist(), exact[1].tolist(), strict=True), exact[2].tolist(), strict=True)
    )
    assert got.items() <= want.items()


def test_auto_uses_the_exhaustive_kernel_for_small_inputs() -> None:
    rng = np.random.default_rng(6)
    a = _filters(rng, 300, 16, 0.3)
    b = a ^ _filters(rng, 300, 16, 0.1)
    auto = find_pairs(a, None, b, None, 0.6, config=LshConfig((LshBand(0, 1, 0, 1),)))
    exact = dice_candidates(a, b, 0.6)
    for u, v in zip(auto, exact, strict=True):
        np.testing.assert_array_equal(u, v)


def test_multi_span_bands_sample_each_span() -> None:
    band = LshBand(0, 2, tables=3, hashes=2, bin_size=8, also=((5, 6, 1), (9, 12, 2)))
    cfg = LshConfig((band,))
    assert band.hashes_per_table == 5
    pos = _positions(cfg)
    assert pos.shape == (3, 5, 8)
    assert np.all((pos[:, :2] >= 0) & (pos[:, :2] < 128))
    assert np.all((pos[:, 2] >= 320) & (pos[:, 2] < 384))
    assert np.all((pos[:, 3:] >= 576) & (pos[:, 3:] < 768))
    # a table's key depends on every span of the table and on nothing else
    rng = np.random.default_rng(11)
    x = _filters(rng, 1, 16, 0.3)
    y = x.copy()
    y[0, 2:5] ^= np.uint64(2**64 - 1)  # words outside every span
    np.testing.assert_array_equal(lsh_keys(x, cfg), lsh_keys(y, cfg))
    y[0, 9:12] = 0  # the last span empty, then full: its MinHashes differ
    z = y.copy()
    z[0, 9:12] = np.uint64(2**64 - 1)
    assert np.all(lsh_keys(y, cfg) != lsh_keys(z, cfg))
    with pytest.raises(InputError):
        LshConfig((LshBand(0, 2, also=((15, 17, 1),)),)).validate(16)
    with pytest.raises(InputError):
        LshConfig((LshBand(0, 2, also=((3, 4, 0),)),)).validate(16)


def test_for_schema_pairs_fields_and_falls_back() -> None:
    schema = default_schema()
    cfg = LshConfig.for_schema(schema)
    seg = {s.name: (s.word_offset, s.word_offset + s.words) for s in schema.segments}
    spans = {sp[:2] for b in cfg.bands for sp in b.spans}
    assert spans == {seg[f] for f in ("forename", "surname", "address", "town")}
    assert cfg.n_tables == 24
    assert LshConfig.for_schema(schema, recall="high").n_tables > cfg.n_tables
    cfg.validate(schema.total_words)
    # a schema without those fields gets whole-filter tables
    only_dates = LinkageSchema(
        name="dates", fields=(FieldSpec("date_of_birth", "date", ("date_of_birth",), 128, 4),)
    )
    (band,) = LshConfig.for_schema(only_dates).bands
    assert (band.word_start, band.word_stop, band.also) == (0, 2, ())
    # recipes that need a missing field are left out
    no_town = LinkageSchema(name="no-town", fields=schema.fields[:-1])
    assert all(sp[1] <= 15 for b in LshConfig.for_schema(no_town).bands for sp in b.spans)


def test_bad_input() -> None:
    x = np.zeros((3, 2), np.uint64)
    with pytest.raises(InputError):
        candidate_pairs(x, None, np.zeros((3, 3), np.uint64), None)
    with pytest.raises(InputError):
        candidate_pairs(x, None, x[:2], None, self_join=True)
    with pytest.raises(InputError) as err:
        lsh_keys(x, LshConfig((LshBand(0, 5),)))
    assert err.value.field == "lsh"
    with pytest.raises(InputError):
        find_pairs(x, None, x, None, 0.5, strategy="fast")  # type: ignore[arg-type]


@pytest.mark.slow
def test_completeness_on_febrl() -> None:
    from matcher.datasets import build_multiforce, true_cross_force_pairs
    from matcher.encoding import encode_frame
    from matcher.keys import LinkageSecret

    schema = default_schema()
    df = build_multiforce("febrl4", n_forces=2, seed=1)
    batch = encode_frame(df, schema, LinkageSecret(1, b"s" * 32), "ALL").batch
    row = {str(v): r for r, v in enumerate(df["id"])}
    true = sorted((row[x], row[y]) for x, y in true_cross_force_pairs(df))
    ti = np.array([min(p) for p in true])
    tj = np.array([max(p) for p in true])
    for recall, target, rr in (("balanced", 0.995, 0.99), ("high", 0.996, 0.985)):
        cand = candidate_pairs(
            batch.filters,
            batch.blocking_tokens,
            batch.filters,
            batch.blocking_tokens,
            self_join=True,
            config=LshConfig.for_schema(schema, recall=recall),  # type: ignore[arg-type]
        )
        q = pair_quality(cand, (ti, tj), len(df), len(df), self_join=True)
        assert q.pair_completeness >= target
        assert q.reduction_ratio >= rr
