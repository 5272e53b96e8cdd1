"""The record-level kernels (soundex ids, value ids, flips, blocking tokens) against plain
Python references, and the distribution of the randomized-response flips."""

from __future__ import annotations

import hashlib
import secrets

import jellyfish
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher import _fastencode as fe
from matcher import normalise as nz
from matcher.batch import TokenLists
from matcher.datasets import build_multiforce
from matcher.encoding import NormalisedRecord, encode_frame, harden, normalise_frame
from matcher.encoding import _fastblock as fb
from matcher.encoding._encoder import forename_roots
from matcher.keys import LinkageSecret
from matcher.schema import Hardening, default_schema

from handmade import handmade_frame

M64 = (1 << 64) - 1
LETTERS = "abcdefghijklmnopqrstuvwxyz"


# --------------------------------------------------------------------------- references
def _soundex_id(code: str) -> int:
    """The soundex id as the encoder first computed it (one name at a time)."""
    b = code.encode()
    if len(b) <= 7:
        return int.from_bytes(b + b"\x01", "little")
    return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little") | 1


def _name_code(name: str) -> int:
    return _soundex_id(jellyfish.soundex("".join(nz.name_parts(name))))


def _root_code(name: str) -> int:
    return _soundex_id(jellyfish.soundex(nz.canonical_forename(nz.name_parts(name)[0])))


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def _siphash24(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 as its paper specifies it."""
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D]
    v += [k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(count: int) -> None:
        for _ in range(count):
            v[0] = (v[0] + v[1]) & M64
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & M64
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & M64
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & M64
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    tail = len(msg) % 8
    last = msg[len(msg) - tail :] + bytes(7 - tail) + bytes([len(msg) & 0xFF])
    for j in range(0, len(msg) - tail, 8):
        w = int.from_bytes(msg[j : j + 8], "little")
        v[3] ^= w
        rounds(2)
        v[0] ^= w
    w = int.from_bytes(last, "little")
    v[3] ^= w
    rounds(2)
    v[0] ^= w
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _sip_words(key: bytes, *words: int) -> int:
    return _siphash24(key, b"".join(w.to_bytes(8, "little") for w in words))


def _fmix(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    return h ^ (h >> 33)


def _text_id(text: str) -> int:
    """The value id of a text, written plainly from its description."""
    b = text.encode("utf-8", "surrogatepass")
    h = 0x243F6A8885A308D3 ^ ((len(b) * 0x9E3779B97F4A7C15) & M64)
    for j in range(0, len(b), 8):
        w = (int.from_bytes(b[j : j + 8], "little") * 0x87C37B91114253D5) & M64
        h ^= (_rotl(w, 31) * 0x4CF5AD432745937F) & M64
        h = (_rotl(h, 27) * 5 + 0x52DCE729) & M64
    return _fmix(h ^ len(b)) or 1


def test_the_siphash_reference_gives_the_papers_vector() -> None:
    assert _siphash24(bytes(range(16)), bytes(range(15))) == 0xA129CA6149BE45E5


# --------------------------------------------------------------------------- soundex
SOUNDEX_EDGES = [
    "a", "h", "w", "y", "hw", "ahb", "awb", "ehwb", "bhb", "bwb", "bhwb", "byb", "bab",
    "pfister", "tymczak", "ashcraft", "honeyman", "lloyd", "aeiou", "schw", "cws", "hb",
    "robert", "rupert", "rubin", "x" * 200, "a b", " b", "b ", "  ", "", "mc donald",
    "o brien", "q", "zz zz", "jackson", "washington", "lee", "gutierrez",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet=LETTERS + " ", max_size=24), max_size=20))
def test_soundex_kernel_equals_jellyfish_on_letters_and_spaces(names: list[str]) -> None:
    names = names + SOUNDEX_EDGES
    assert fb.name_codes(names).tolist() == [_name_code(n) for n in names]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=12))
def test_soundex_kernel_equals_jellyfish_on_any_text(names: list[str]) -> None:
    # anything outside a-z and the space takes the reference: the result is the same
    names = [*names, "zoë", "o'brien", "anne-marie", "a\tb", "ß", "ÿ", "x\x00y"]
    assert fb.name_codes(names).tolist() == [_name_code(n) for n in names]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=LETTERS + " -", min_size=1, max_size=16), max_size=12))
def test_root_codes_equal_jellyfish(roots: list[str]) -> None:
    roots = [*roots, "mary ann", "h", "ashcraft"]  # a root is taken as it is (spaces too)
    want = [_soundex_id(jellyfish.soundex(r)) for r in roots]
    assert fb.root_codes(roots).tolist() == want


def test_forename_roots_are_the_canonical_forenames_of_the_first_parts() -> None:
    names = [*list(nz.nickname_table())[:300], "bill smith", "peggy sue", "zed", "alex"]
    assert forename_roots(names) == [nz.canonical_forename(nz.name_parts(n)[0]) for n in names]
    codes = fb.root_codes(forename_roots(names)).tolist()
    assert codes == [_root_code(n) for n in names]


# --------------------------------------------------------------------------- value ids
@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), unique=True, max_size=20))
def test_value_ids_equal_the_plain_hash(texts: list[str]) -> None:
    assert fb.value_ids(texts).tolist() == [_text_id(t) for t in texts]


def test_value_ids_are_pinned_and_never_zero() -> None:
    # a pure function of the value, the same in every process and run
    assert fb.value_ids(["smith", "", "a\x00"]).tolist() == [
        15987070487521481243,
        8848935107335307795,
        8359681976948303900,
    ]
    assert fb.value_ids(["a"]).tolist() != fb.value_ids(["a\x00"]).tolist()
    assert fb.value_ids(["a\udc80"]).tolist() == [_text_id("a\udc80")]  # a lone surrogate
    assert fb.value_ids([]).shape == (0,)


def test_value_ids_of_dates_postcodes_and_name_lists() -> None:
    assert fb.value_ids([(1990, 1, 2), (2001, 12, 31)]).tolist() == [
        19900102 + (1 << 40),
        20011231 + (1 << 40),
    ]
    pc = nz.normalise_postcode("sw1a 1aa")
    assert pc is not None
    assert fb.value_ids([pc]).tolist() == [_text_id(pc.full)]
    assert fb.value_ids([("ann", "jo")]).tolist() == [_text_id("ann\x1fjo")]


# --------------------------------------------------------------------------- tables
def test_or_rows_ors_the_listed_table_rows() -> None:
    rng = np.random.default_rng(1)
    table = rng.integers(0, 2**63, (7, 3)).astype(np.uint64)
    rows = rng.integers(-1, 7, (50, 4))
    masks = rng.integers(0, 2**63, (50, 3)).astype(np.uint64)
    want = masks.copy()
    for i, j in np.argwhere(rows >= 0).tolist():
        want[i] |= table[rows[i, j]]
    fb.or_rows(masks, rows, table)
    assert np.array_equal(masks, want)


# --------------------------------------------------------------------------- flips
def _reference_flips(seed: int, words: int, p: float) -> np.ndarray:
    """The flips of one row, from the description: a binomial count by inverse CDF,
    then distinct positions from the splitmix64 stream, ``width`` bits each."""
    cdf, _ = fb._binomial_table(64 * words, p)
    nbits = 64 * words
    width = (nbits - 1).bit_length()
    state = _fmix(seed)

    def draw() -> int:
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    u = (draw() >> 11) / 2.0**53
    k = int(np.searchsorted(cdf, u, side="right"))
    chosen: set[int] = set()
    while len(chosen) < k:
        z = draw()
        for _ in range(64 // width):
            pos = z >> (64 - width)
            z = (z << width) & M64
            if pos < nbits and pos not in chosen:
                chosen.add(pos)
                if len(chosen) == k:
                    break
    bits = np.zeros(nbits, dtype=np.uint8)
    bits[sorted(chosen)] = 1
    return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)


@pytest.mark.parametrize(("words", "p"), [(16, 0.02), (3, 0.05), (5, 0.3), (1, 0.45)])
def test_flips_equal_the_reference(words: int, p: float) -> None:
    seeds = np.array([0, 1, 2**63, 12345, 2**64 - 1], dtype=np.uint64)
    got = harden(np.zeros((len(seeds), words), dtype=np.uint64), seeds, "rr", p)
    for row, seed in zip(got, seeds.tolist(), strict=True):
        assert np.array_equal(row, _reference_flips(seed, words, p))


def _chi2(counts: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic over bins with at least 5 expected (tails pooled), and its
    degrees of freedom."""
    keep = expected >= 5
    lo, hi = np.flatnonzero(keep)[[0, -1]]
    obs = np.r_[counts[:lo].sum(), counts[lo : hi + 1], counts[hi + 1 :].sum()]
    exp = np.r_[expected[:lo].sum(), expected[lo : hi + 1], expected[hi + 1 :].sum()]
    obs, exp = obs[exp > 0], exp[exp > 0]
    return float(((obs - exp) ** 2 / exp).sum()), len(exp) - 1


@pytest.mark.parametrize(("words", "p"), [(16, 0.02), (3, 0.1)])
def test_flip_counts_and_bits_follow_independent_bernoulli(words: int, p: float) -> None:
    # fixed seeds: the statistics are the same on every run, so the bounds cannot flake;
    # each bound is far out in its chi-square tail (about six standard deviations)
    n = 20_000
    nbits = 64 * words
    seeds = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(7)
    bits = np.unpackbits(
        harden(np.zeros((n, words), dtype=np.uint64), seeds, "rr", p).view(np.uint8),
        axis=1,
        bitorder="little",
    )
    # the number of flips in a row is Binomial(nbits, p)
    cdf, _ = fb._binomial_table(nbits, p)
    pmf = np.diff(np.r_[0.0, cdf])
    stat, df = _chi2(np.bincount(bits.sum(1), minlength=nbits + 1).astype(float), n * pmf)
    assert stat < df + 6 * (2 * df) ** 0.5
    # every bit flips with probability p
    per_bit = bits.sum(0).astype(float)
    stat = float(((per_bit - n * p) ** 2 / (n * p * (1 - p))).sum())
    assert stat < nbits + 6 * (2 * nbits) ** 0.5
    assert np.abs(per_bit - n * p).max() < 6 * (n * p * (1 - p)) ** 0.5
    # and independently of the others: two bits flip together with probability p * p
    both = (bits[:, : nbits // 2] & bits[:, nbits // 2 :]).sum() / (n * (nbits // 2))
    assert abs(both - p * p) < 6 * (p * p / (n * (nbits // 2))) ** 0.5


def test_a_rows_flips_depend_on_its_seed_alone() -> None:
    seeds = np.array([5, 9, 5, 5], dtype=np.uint64)
    flipped = harden(np.zeros((4, 16), dtype=np.uint64), seeds, "rr", 0.02)
    assert np.array_equal(flipped[0], flipped[2]) and np.array_equal(flipped[0], flipped[3])
    one = harden(np.zeros((1, 16), dtype=np.uint64), seeds[1:2], "rr", 0.02)
    assert np.array_equal(one[0], flipped[1])


def test_flips_xor_the_input() -> None:
    rng = np.random.default_rng(3)
    filters = rng.integers(0, 2**63, (100, 16)).astype(np.uint64)
    seeds = rng.integers(0, 2**63, 100).astype(np.uint64)
    noise = harden(np.zeros_like(filters), seeds, "rr", 0.02)
    assert np.array_equal(harden(filters, seeds, "rr", 0.02), filters ^ noise)


# --------------------------------------------------------------------------- seeds
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(0, 40), st.binary(min_size=16, max_size=16))
def test_record_seeds_equal_siphash(m: int, n: int, key: bytes) -> None:
    rng = np.random.default_rng(m * 100 + n)
    cols = rng.integers(0, 2**64, (m, n), dtype=np.uint64)
    got = fe.siphash_columns(fe.sipkey(key), cols)
    assert got.tolist() == [_sip_words(key, *cols[:, r].tolist()) for r in range(n)]


# --------------------------------------------------------------------------- blocking
def _reference_block_tokens(key: bytes, parts: dict[str, np.ndarray]) -> list[list[int]]:
    """Each record's tokens, one at a time (see ``fe.block_token_kernel``)."""
    out = []
    for r in range(len(parts["yob"])):
        y = int(parts["yob"][r])
        codes = [int(parts[c][r]) for c in ("fn", "sn", "root") if parts[c][r]]
        oth = int(parts["oth"][r])
        others = (
            parts["oth_codes"][parts["oth_off"][oth] : parts["oth_off"][oth + 1]].tolist()
            if oth >= 0
            else []
        )
        toks = set()
        if y:
            toks |= {_sip_words(key, 1, c, y) for c in codes + others}
        if len(codes) >= 2:
            toks.add(_sip_words(key, 2, min(codes[:2]), max(codes[:2])))
        if parts["dsk"][r]:
            toks.add(_sip_words(key, 3, int(parts["dsk"][r]), 0))
        if parts["pc"][r]:
            toks.add(_sip_words(key, 4, int(parts["pc"][r]), 0))
        out.append(sorted(toks))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**32), st.binary(min_size=16, max_size=16))
def test_block_kernel_equals_the_reference(n: int, seed: int, key: bytes) -> None:
    # few distinct components, many zeros: repeats, absences and other names all occur
    rng = np.random.default_rng(seed)
    pool = np.array([0, 0, 1, 2, 3, 2**64 - 1], dtype=np.uint64)
    parts = {c: pool[rng.integers(0, len(pool), n)] for c in ("yob", "fn", "sn", "root")}
    parts |= {c: pool[rng.integers(0, len(pool), n)] for c in ("dsk", "pc")}
    lists = [pool[rng.integers(1, len(pool), rng.integers(0, 5))] for _ in range(4)]
    parts["oth"] = rng.integers(-1, len(lists), n).astype(np.int64)
    parts["oth_off"] = np.cumsum([0, *map(len, lists)]).astype(np.int64)
    parts["oth_codes"] = np.concatenate(lists).astype(np.uint64)
    flat, offsets = fe.block_token_kernel(fe.sipkey(key), np.arange(1, 5, dtype=np.uint64), parts)
    got = [t.tolist() for t in TokenLists(flat, offsets)]
    assert got == _reference_block_tokens(key, parts)


def _record_tokens(rec: NormalisedRecord, key: bytes) -> list[int]:
    """A record's blocking tokens from its normalised values, as first implemented
    (jellyfish soundex a name at a time), with the postcode's value id."""
    parts = {
        "yob": rec.date_of_birth[0] if rec.date_of_birth else 0,
        "fn": _name_code(rec.forename) if rec.forename else 0,
        "sn": _name_code(rec.surname) if rec.surname else 0,
        "root": _root_code(rec.forename) if rec.forename else 0,
        "dsk": 0,
        "pc": _text_id(rec.postcode.full) if rec.postcode is not None else 0,
    }
    if rec.date_of_birth:
        y, m, d = rec.date_of_birth
        parts["dsk"] = y * 10_000 + min(m, d) * 100 + max(m, d)
    arrays = {k: np.array([v], dtype=np.uint64) for k, v in parts.items()}
    arrays["oth"] = np.array([0], dtype=np.int64)
    arrays["oth_off"] = np.array([0, len(rec.other_names)], dtype=np.int64)
    arrays["oth_codes"] = np.array([_name_code(o) for o in rec.other_names], dtype=np.uint64)
    return _reference_block_tokens(key, arrays)[0]


def test_blocking_tokens_equal_the_one_record_reference_on_febrl() -> None:
    df = build_multiforce("febrl4", n_forces=2, seed=3).head(1200).copy()
    hand = handmade_frame()
    df = pd.concat([df, hand[[c for c in df.columns if c in hand.columns]]], ignore_index=True)
    df.loc[7, "forename"] = "Zoë"
    df.loc[10, "middle_names"] = "Anne-Marie; Jo"
    df["id"] = [f"R{i}" for i in range(len(df))]
    secret = LinkageSecret(1, secrets.token_bytes(32))
    key = secret.derive("block", "tokens")[:16]
    schema = default_schema(Hardening(mode="none"))
    got = encode_frame(df, schema, secret, "F01").batch.blocking_tokens
    records, _ = normalise_frame(df, schema)
    assert [t.tolist() for t in got] == [_record_tokens(rec, key) for rec in records]
