"""The fast Dice kernels return exactly what the plain references return."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from matcher.errors import InputError
from matcher.similarity import (
    dice_candidates,
    dice_candidates_reference,
    dice_topk,
    dice_topk_reference,
    popcounts,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _filters(rng: np.random.Generator, n: int, words: int, density: float) -> NDArray[np.uint64]:
    bits = rng.random((n, words * 64)) < density
    packed = np.packbits(bits, axis=1, bitorder="little")
    return packed.view("<u8").astype(np.uint64).reshape(n, words)


def _near_copies(
    rng: np.random.Generator, x: NDArray[np.uint64], flips: float
) -> NDArray[np.uint64]:
    """Copies of ``x`` with a few bits flipped, so that thresholds have pairs to find."""
    noise = _filters(rng, x.shape[0], x.shape[1], flips)
    return x ^ noise


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[NDArray[np.uint64], NDArray[np.uint64], float]:
    seed = draw(st.integers(0, 2**32 - 1))
    words = draw(st.sampled_from([1, 2, 3, 5, 16, 17]))
    n = draw(st.integers(0, 70))
    m = draw(st.integers(0, 70))
    density = draw(st.sampled_from([0.0, 0.02, 0.1, 0.3, 0.5, 0.9]))
    threshold = draw(st.sampled_from([0.0, 0.1, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0]))
    rng = np.random.default_rng(seed)
    a = _filters(rng, n, words, density)
    if m and n and draw(st.booleans()):
        base = a[rng.integers(0, n, size=m)]
        b = _near_copies(rng, base, draw(st.sampled_from([0.0, 0.01, 0.05])))
    else:
        b = _filters(rng, m, words, density)
    return a, b, threshold


def _same(x: tuple[NDArray[np.generic], ...], y: tuple[NDArray[np.generic], ...]) -> None:
    for u, v in zip(x, y, strict=True):
        np.testing.assert_array_equal(u, v)


@SETTINGS
@given(_inputs(), st.sampled_from([None, 1, 2]))
def test_candidates_match_reference(
    inputs: tuple[NDArray[np.uint64], NDArray[np.uint64], float], threads: int | None
) -> None:
    a, b, t = inputs
    _same(dice_candidates(a, b, t, threads=threads), dice_candidates_reference(a, b, t))


@SETTINGS
@given(_inputs())
def test_self_join_matches_reference(
    inputs: tuple[NDArray[np.uint64], NDArray[np.uint64], float],
) -> None:
    a, _, t = inputs
    fast = dice_candidates(a, a, t, self_join=True)
    _same(fast, dice_candidates_reference(a, a, t, self_join=True))
    assert np.all(fast[0] < fast[1])


@SETTINGS
@given(_inputs(), st.integers(0, 80))
def test_topk_matches_reference(
    inputs: tuple[NDArray[np.uint64], NDArray[np.uint64], float], k: int
) -> None:
    a, b, t = inputs
    _same(dice_topk(a, b, k, t), dice_topk_reference(a, b, k, t))


def test_many_hits_per_row_overflow_buffers() -> None:
    # threshold 0 makes every pair a hit: rows overflow their fixed buffers
    rng = np.random.default_rng(7)
    a = _filters(rng, 150, 16, 0.3)
    b = _filters(rng, 5000, 16, 0.3)
    _same(dice_candidates(a, b, 0.0), dice_candidates_reference(a, b, 0.0))
    _same(dice_candidates(a, b, 0.4), dice_candidates_reference(a, b, 0.4))


def test_popcounts() -> None:
    x = np.array([[0, 1], [3, 2**64 - 1], [0, 0]], dtype=np.uint64)
    assert popcounts(x).tolist() == [1, 66, 0]
    assert popcounts(np.zeros((0, 16), np.uint64)).shape == (0,)
    # enough words for the multithreaded kernel, not only the serial one
    big = _filters(np.random.default_rng(2), 5000, 16, 0.3)
    np.testing.assert_array_equal(popcounts(big), np.bitwise_count(big).sum(axis=1))


def test_invariants() -> None:
    rng = np.random.default_rng(3)
    a = _filters(rng, 60, 16, 0.2)
    a[5] = 0
    b = _near_copies(rng, a, 0.05)
    i, j, s = dice_candidates(a, b, 0.0)
    ri, rj, rs = dice_candidates(b, a, 0.0)
    m1 = np.zeros((60, 60))
    m2 = np.zeros((60, 60))
    m1[i, j] = s
    m2[ri, rj] = rs
    np.testing.assert_array_equal(m1, m2.T)  # symmetric
    assert np.all((s >= 0) & (s <= 1))
    _, _, diag = dice_candidates(a, a, 0.0)
    d = diag.reshape(60, 60).diagonal()
    assert d[5] == 0.0  # empty against empty
    assert np.all(np.delete(d, 5) == 1.0)


def test_empty_and_edges() -> None:
    z = np.zeros((0, 16), np.uint64)
    one = np.ones((1, 16), np.uint64)
    for out in (dice_candidates(z, one, 0.5), dice_candidates(one, z, 0.5), dice_topk(z, one, 3)):
        assert all(len(x) == 0 for x in out)
    assert dice_topk(one, one, 0)[0].shape == (0,)
    _, _, s = dice_candidates(one, one, 1.0)
    assert s.tolist() == [1.0]


def test_pops_are_reused() -> None:
    rng = np.random.default_rng(5)
    a = _filters(rng, 20, 4, 0.3)
    pa = popcounts(a)
    _same(
        dice_candidates(a, a, 0.5, pop_a=pa, pop_b=pa, self_join=True),
        dice_candidates_reference(a, a, 0.5, self_join=True),
    )
    _same(dice_topk(a, a, 2, pop_b=pa), dice_topk_reference(a, a, 2))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (
            lambda: dice_candidates(np.zeros((2, 2), np.uint64), np.zeros((2, 3), np.uint64), 0.5),
            "b",
        ),
        (
            lambda: dice_candidates(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.uint64), 0.5),
            "a",
        ),
        (
            lambda: dice_candidates(np.zeros((2, 2), np.uint64), np.zeros((2, 2), np.uint64), 1.5),
            "threshold",
        ),
        (lambda: dice_topk(np.zeros((2, 2), np.uint64), np.zeros((2, 2), np.uint64), -1), "k"),
        (
            lambda: dice_candidates(
                np.zeros((2, 2), np.uint64), np.zeros((3, 2), np.uint64), 0.5, self_join=True
            ),
            "b",
        ),
        (
            lambda: dice_candidates(
                np.zeros((2, 2), np.uint64), np.zeros((2, 2), np.uint64), 0.5, threads=0
            ),
            "threads",
        ),
    ],
)
def test_bad_input(call: object, field: str) -> None:
    with pytest.raises(InputError) as err:
        call()  # type: ignore[operator]
    assert err.value.field == field


@pytest.mark.parametrize("threads", [1, 2])
def test_large_inputs_use_every_schedule(threads: int) -> None:
    # enough rows for cache-tiled super-groups, few rows for chunked b, many hits per task
    rng = np.random.default_rng(11)
    a = _filters(rng, 1100, 16, 0.25)
    b = np.concatenate([_near_copies(rng, a[:700], 0.03), _filters(rng, 2500, 16, 0.25)])
    for t in (0.0, 0.3, 0.8):
        _same(dice_candidates(a, b, t, threads=threads), dice_candidates_reference(a, b, t))
    _same(
        dice_candidates(a, a, 0.7, self_join=True, threads=threads),
        dice_candidates_reference(a, a, 0.7, self_join=True),
    )
    _same(dice_candidates(a[:3], b, 0.2, threads=threads), dice_candidates_reference(a[:3], b, 0.2))
    for k in (1, 7):
        _same(dice_topk(a, b, k, 0.5, threads=threads), dice_topk_reference(a, b, k, 0.5))
        _same(dice_topk(a[:5], b, k, threads=threads), dice_topk_reference(a[:5], b, k))
