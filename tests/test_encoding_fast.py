"""The vectorised encoder against plain per-record references, and its hardening stage."""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter

import jellyfish
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher import _fastencode as fe
from matcher import normalise as nz
from matcher.batch import TokenLists
from matcher.datasets import STANDARD_SETS, build_multiforce
from matcher.encoding import (
    NormalisedRecord,
    clear_caches,
    encode_frame,
    harden,
    normalise_frame,
)
from matcher.encoding import _dates as dt
from matcher.encoding._columns import _normalise_column
from matcher.encoding._encoder import _salt, _tokens_for
from matcher.keys import LinkageSecret
from matcher.schema import Hardening, LinkageSchema, default_schema

from handmade import handmade_frame

WORD = st.text(alphabet="abcdez019", min_size=1, max_size=8)


def _secret() -> LinkageSecret:
    return LinkageSecret(1, secrets.token_bytes(32))


def _reference_filters(
    schema: LinkageSchema, secret: LinkageSecret, records: list[NormalisedRecord]
) -> np.ndarray:
    """One record at a time from ``_tokens_for``: k * weight keyed BLAKE2b draws per token."""
    keys = {f.domain: secret.derive("field", f.domain) for f in schema.fields}
    bits = np.zeros((len(records), schema.total_bits), dtype=np.bool_)
    for r, rec in enumerate(records):
        for spec, seg in zip(schema.fields, schema.segments, strict=True):
            salt = _salt(spec, rec, schema.hardening.salt_field)
            for token, weight in _tokens_for(spec, rec):
                count = spec.k * weight
                msg = (salt + "\x1f" + token).encode()
                buf = b"".join(
                    hashlib.blake2b(
                        msg + c.to_bytes(2, "little"), key=keys[spec.domain], digest_size=64
                    ).digest()
                    for c in range((4 * count + 63) // 64)
                )
                for c in range(count):
                    pos = int.from_bytes(buf[4 * c : 4 * c + 4], "little") % spec.bits
                    bits[r, seg.word_offset * 64 + pos] = True
    packed = np.packbits(bits, axis=1, bitorder="little")
    return packed.view("<u8").astype(np.uint64)


def _sample() -> pd.DataFrame:
    df = build_multiforce("febrl4", n_forces=2, seed=3).head(1500).copy()
    hand = handmade_frame()
    df = pd.concat([df, hand[[c for c in df.columns if c in hand.columns]]], ignore_index=True)
    df.loc[3, "address"] = "12 St Albans Rd, High St & Co"  # context-dependent "st", "&"
    df.loc[4, "address"] = "Flat 2, 14 St. Mary's Rd"
    df.loc[5, "address"] = "n/a"
    df.loc[6, "date_of_birth"] = "31121999"  # ddmmyyyy
    df.loc[7, "forename"] = "Zoë"
    df.loc[8, "postcode"] = "2074"  # foreign
    df.loc[9, "postcode"] = "SW1A"  # outward only
    df.loc[10, "middle_names"] = "Anne-Marie; Jo"
    df["id"] = [f"R{i}" for i in range(len(df))]
    return df


# --------------------------------------------------------------------------- identities
@given(st.lists(WORD, min_size=1, max_size=6))
def test_padded_bigrams_are_the_union_of_the_words_padded_bigrams(words: list[str]) -> None:
    text = " ".join(words)
    assert fe.word_bigram_identity(text)
    assert set(fe.qgrams(text, 2)) == {g for w in words for g in fe.qgrams(w, 2)}


@pytest.mark.parametrize("salt", [None, "year_of_birth", "sex"])
def test_vectorised_filters_equal_the_per_record_reference(salt: str | None) -> None:
    df = _sample()
    schema = default_schema(Hardening(mode="none", salt_field=salt))
    secret = _secret()
    fast = encode_frame(df, schema, secret, "F01").batch.filters
    records, _ = normalise_frame(df, schema)
    assert np.array_equal(fast, _reference_filters(schema, secret, records))


def _column_matches(kind: str, raw: list[object], norm: object) -> None:
    """The column path gives each row the normaliser's value, and reports its failures."""
    col = _normalise_column(kind, pd.Series(raw, dtype=object))
    got = [col.values[c] if c >= 0 else None for c in col.codes.tolist()]
    assert len(set(map(repr, col.values))) == len(col.values)  # distinct values
    bad = set(col.bad_rows.tolist())
    for i, value in enumerate(raw):
        try:
            expected = norm(value)  # type: ignore[operator]
        except nz.UnparseableValue:
            assert got[i] is None and i in bad, value
            continue
        assert got[i] == (expected or None) and i not in bad, value


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [
                "12",
                "St",
                "st.",
                "Rd",
                "rd,",
                "&",
                "n/a",
                "Mary's",
                "unknown",
                "0",
                "007",
                "-",
                "ÅSA",
                "high",
                "street",
                ",",
                "Apt",
                "not",
                "known",
                "St,",
                "9",
            ]
        ),
        min_size=1,
        max_size=6,
    )
)
def test_address_pieces_read_as_the_normaliser_reads_them(pieces: list[str]) -> None:
    raw = " ".join(pieces)
    _column_matches("address", [raw, raw + " road", raw.upper()], nz.normalise_address)


@given(
    st.one_of(
        st.text(alphabet="0123456789", min_size=8, max_size=8),
        st.from_regex(r"[0-9]{4}[-/.][0-9]{2}[-/.][0-9]{2}", fullmatch=True),
        st.from_regex(r"[0-9]{2}[-/.][0-9]{2}[-/.][0-9]{4}", fullmatch=True),
        st.from_regex(r"(19|20)[0-9]{2}-(0[1-9]|1[0-9])-[0-3][0-9]", fullmatch=True),
        st.from_regex(r"[0-3][0-9]/[0-3][0-9]/(19|20)[0-9]{2}", fullmatch=True),
        st.text(alphabet="0123456789-/. ", min_size=8, max_size=10),
    )
)
def test_date_kernel_reads_as_the_parser(text: str) -> None:
    ok, ymd = dt.read_dates(pa.array([text], type=pa.string()))
    if ok[0]:  # (what the kernel does not read goes to the parser)
        assert tuple(ymd[0].tolist()) == nz.parse_date(text)


_DATE_TEXTS = [
    "12/03/1985", "1985-03-12", "19850312", "12.03.1985", "03/25/1985", "30-Jun-1984",
    "30 jun 1984", "30/JUN/1984", "30-Jun-84", "30-June-1984", "30-Jun-1984 ", " 30-Jun-1984",
    "30-Jun-19845", "30-Jxx-1984", "31-Feb-1849", "00-Jan-1990", "32-Jan-1990", "05-Sep-2100",
    "05-Sep-2101", "1985-03-12T10:00", "31st of Smarch", "", "n/a", "NaT", "31121999",
    "٣0-Jun-1984", "30-Jün-1984", "1985-13-13", "99999999",
]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_DATE_TEXTS), st.text(max_size=12)), max_size=30))
def test_date_column_equals_the_parser(texts: list[str]) -> None:
    _column_matches("date", [*texts, None, *_DATE_TEXTS], nz.parse_date)  # text: the kernel
    _column_matches("date", [*texts, None, float("nan"), 19850312, *_DATE_TEXTS], nz.parse_date)


_PIECES = [
    "12", "St", "st.", "Rd", "rd,", "&", "n/a", "Mary's", "unknown", "0", "007", "-", "ÅSA",
    "high", "street", "", ",", "Apt", "not", "known", "St,", "9", "NA", "st's", "o'", "a`b",
    "Flat", "Sq.", "#n/a", "Gdns", "1a", "x\u00a0y", "HIGH-ST", "The",
]  # fmt: skip


def test_address_column_equals_the_normaliser() -> None:
    df = _sample()
    rng = np.random.default_rng(5)
    made = [
        "".join(
            str(rng.choice(_PIECES)) + str(rng.choice([" ", "  ", "\t", ", ", "\x1f", "\u00a0"]))
            for _ in range(int(rng.integers(1, 7)))
        )
        for _ in range(3000)
    ]
    raw = [*df["address"].tolist(), None, "n/a", "12 St Albans Rd", "12  ,  Rd", "Flat 2, & Co"]
    raw += ["\tnot known" + " " * 20, "   ", "-" * 20, " N/A ", "n/a," * 5]  # missing or not
    raw += made
    _column_matches("address", raw, nz.normalise_address)
    _column_matches("address", raw[::-1], nz.normalise_address)  # from the caches
    _column_matches("address", [*raw, 12], nz.normalise_address)  # not all text


# --------------------------------------------------------------------------- fast names
# Pieces of names and towns: letters in mixed case, titles (also the ones that are
# surnames), placeholders, punctuation the normalisers treat specially, digits, other
# whitespace and non-ASCII text (which the fast paths leave to the normalisers).
_NAME_PIECES = [
    "ann", "SMITH", "O'Brien", "d`arcy", "Anne-Marie", "J.", "st", "St.", "Mr", "mrs",
    "DR", "dr.", "Jr", "III", "iv", "esq", "Cllr", "sir", "Sir", "DAME", "lord", "Lady",
    "master", "MSTR", "Rev", "n/a", "N/A", "na", "NaN", "none", "unknown", "not known",
    "#n/a", "n.a.", "nk", "unk", "null", "-", "'", "`", "&", ",", ";", "|", "/", ".", "?",
    "0", "12", "3rd", "x1y", "é", "Zoë", "\t", "\u00a0", "_", "a_b", "MacDonald", "von",
]  # fmt: skip
_GLUE = ["", " ", "  ", "-", "'", ".", ", ", "; ", " / ", "|", "&"]
NAME_TEXT = st.one_of(
    st.lists(st.sampled_from(_NAME_PIECES), max_size=5).flatmap(
        lambda parts: st.lists(
            st.sampled_from(_GLUE), min_size=len(parts) + 1, max_size=len(parts) + 1
        ).map(lambda glue: glue[0] + "".join(p + g for p, g in zip(parts, glue[1:], strict=True)))
    ),
    st.text(alphabet="abcXYZ -'`.,;/|&019\t", max_size=12),
    # not NUL (pandas' string table, which factorises text columns, ends a value there)
    # nor lone surrogates (not UTF-8; the column paths are not exact for them)
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=6,
    ),
)


def _name_list(value: object) -> tuple[str, ...]:
    return tuple(nz.split_names(value))


@settings(max_examples=40, deadline=None)
@given(st.lists(NAME_TEXT, min_size=40, max_size=120))
def test_cold_columns_equal_the_normalisers(values: list[str]) -> None:
    raw = [*values, None, *[v.upper() for v in values]]
    for kind, norm in (
        ("name", nz.normalise_name),
        ("town", nz.normalise_town),
        ("names", _name_list),
        ("address", nz.normalise_address),
        ("postcode", nz.normalise_postcode),
    ):
        clear_caches()  # the fast paths run on what is not cached
        _column_matches(kind, raw, norm)
        _column_matches(kind, raw, norm)  # and from the caches


@pytest.mark.parametrize("source", sorted({s for s, _ in STANDARD_SETS.values()}))
def test_cold_columns_equal_the_normalisers_on_febrl(source: str) -> None:
    df = build_multiforce(source, n_forces=3, seed=11)
    for column, kind, norm in (
        ("forename", "name", nz.normalise_name),
        ("surname", "name", nz.normalise_name),
        ("middle_names", "names", _name_list),
        ("aliases", "names", _name_list),
        ("town", "town", nz.normalise_town),
        ("address", "address", nz.normalise_address),
        ("postcode", "postcode", nz.normalise_postcode),
    ):
        clear_caches()
        _column_matches(kind, df[column].tolist(), norm)


# --------------------------------------------------------------------------- issues
def test_repeated_bad_values_are_reported_for_every_row() -> None:
    df = handmade_frame().head(6).copy()
    for row in (0, 2, 5):
        df.loc[row, "date_of_birth"] = "31st of Smarch"
    df.loc[2, "postcode"] = "99999999999999X"
    df.loc[4, "postcode"] = "99999999999999X"
    res = encode_frame(df, default_schema(), _secret(), "WY")
    got = [(i.row, i.column) for i in res.issues]
    assert got == [
        (0, "date_of_birth"),
        (2, "date_of_birth"),
        (2, "postcode"),
        (4, "postcode"),
        (5, "date_of_birth"),
    ]
    assert all("Smarch" not in str(i) and "9999" not in str(i) for i in res.issues)


# --------------------------------------------------------------------------- hardening
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**64 - 1), st.sampled_from([0.01, 0.02, 0.05]))
def test_hardening_is_deterministic_per_seed_and_flips_at_the_rate(seed: int, p: float) -> None:
    n = 400
    filters = np.zeros((n, 16), dtype=np.uint64)
    seeds = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(seed)
    a = harden(filters, seeds, "rr", p)
    assert np.array_equal(a, harden(filters, seeds, "rr", p))
    rate = np.bitwise_count(a).sum() / (n * 1024)
    sd = (p * (1 - p) / (n * 1024)) ** 0.5
    assert abs(rate - p) < 5 * sd
    # different seeds, different noise; the input is not modified
    assert not np.array_equal(a[0], a[1])
    assert not filters.any()
    assert harden(filters, seeds, "none", p) is filters


def test_flips_are_spread_over_every_bit() -> None:
    n = 20_000
    seeds = np.arange(n, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
    flipped = harden(np.zeros((n, 16), dtype=np.uint64), seeds, "rr", 0.02)
    bits = np.unpackbits(flipped.view(np.uint8), axis=1, bitorder="little")
    per_bit = bits.mean(0)
    assert abs(per_bit.mean() - 0.02) < 0.001
    assert per_bit.min() > 0.01 and per_bit.max() < 0.03


def test_equal_records_encode_equally_and_any_field_changes_the_noise() -> None:
    base = {"forename": "Ann", "surname": "Lee", "date_of_birth": "1990-01-02", "town": "Leeds"}
    df = pd.DataFrame([base, base, {**base, "town": "York"}, {**base, "surname": "Lea"}])
    df["id"] = ["a", "b", "c", "d"]
    s = _secret()
    hard = encode_frame(df, default_schema(), s, "WY").batch.filters
    plain = encode_frame(df, default_schema(Hardening(mode="none")), s, "WY").batch.filters
    assert np.array_equal(hard[0], hard[1])
    seg = default_schema().segment("forename")
    sl = slice(seg.word_offset, seg.word_offset + seg.words)
    for other in (2, 3):
        assert np.array_equal(plain[0, sl], plain[other, sl])
        assert not np.array_equal(hard[0] ^ plain[0], hard[other] ^ plain[other])


# --------------------------------------------------------------------------- blocking
def _string_tokens(rec: NormalisedRecord) -> set[str]:
    """The blocking tokens' plain meaning: which records share a token."""
    out: set[str] = set()
    yob = str(rec.date_of_birth[0]) if rec.date_of_birth else ""
    codes = [jellyfish.soundex("".join(nz.name_parts(n))) for n in (rec.forename, rec.surname) if n]
    if rec.forename:
        codes.append(jellyfish.soundex(nz.canonical_forename(nz.name_parts(rec.forename)[0])))
    if yob:
        out.update(f"NY:{c}:{yob}" for c in codes)
        out.update(f"NY:{jellyfish.soundex(n.replace(' ', ''))}:{yob}" for n in rec.other_names)
    if len(codes) >= 2:
        a, b = sorted(codes[:2])
        out.add(f"NN:{a}:{b}")
    if rec.date_of_birth:
        y, m, d = rec.date_of_birth
        out.add(f"DS:{y}:{min(m, d)}:{max(m, d)}")
    if rec.postcode is not None:
        out.add(f"P:{rec.postcode.full}")
    return out


def test_blocking_tokens_mean_the_same_as_their_plain_form() -> None:
    df = _sample()
    res = encode_frame(df, default_schema(), _secret(), "F01")
    records, _ = normalise_frame(df, default_schema())
    by_hash: dict[int, set[int]] = {}
    by_plain: dict[str, set[int]] = {}
    for r, (rec, toks) in enumerate(zip(records, res.batch.blocking_tokens, strict=True)):
        plain = _string_tokens(rec)
        assert len(toks) == len(plain) == len(set(toks.tolist()))
        for t in toks.tolist():
            by_hash.setdefault(t, set()).add(r)
        for t in plain:
            by_plain.setdefault(t, set()).add(r)
    # the same records share each token: a hashed token per plain token, and no more
    assert Counter(map(frozenset, by_hash.values())) == Counter(map(frozenset, by_plain.values()))


# --------------------------------------------------------------------------- kernels
@settings(max_examples=40, deadline=None)
@given(
    st.binary(min_size=1, max_size=64),
    st.lists(st.binary(max_size=100), min_size=1, max_size=8),
    st.binary(max_size=20),
    st.integers(0, 4),
)
def test_blake2b_kernel_equals_hashlib(
    key: bytes, bodies: list[bytes], prefix: bytes, tail: int
) -> None:
    msgs = [prefix + b + bytes(tail) for b in bodies]
    if any(not m for m in msgs):
        return
    blob = np.frombuffer(b"".join(bodies) + b"\0", dtype=np.uint8)
    starts = np.cumsum([0, *map(len, bodies)]).astype(np.int64)
    state = fe.blake2b_keyed_state(key)
    got = fe.b2_digests_masks(state, blob, starts, 16, 512, prefix=prefix, tail=tail)
    digests = b"".join(hashlib.blake2b(m, key=key, digest_size=64).digest() for m in msgs)
    assert np.array_equal(got, fe.positions_table(digests, len(msgs), 16, 512))


def test_token_lists_read_as_lists_of_arrays() -> None:
    rng = np.random.default_rng(0)
    lists = [rng.integers(0, 2**63, int(c)).astype(np.uint64) for c in rng.integers(0, 7, 300)]
    tokens = TokenLists.of(lists)
    assert len(tokens) == len(lists)
    for got, want in zip(tokens, lists, strict=True):
        assert got.dtype == np.uint64 and np.array_equal(got, want)
    for sl in (slice(10, 50), slice(None, None, 3), slice(-5, None), slice(7, 7)):
        assert [t.tolist() for t in tokens[sl]] == [t.tolist() for t in lists[sl]]
    assert tokens[-1].tolist() == lists[-1].tolist()
    with pytest.raises(IndexError):
        tokens[len(lists)]
    both = TokenLists.concat([tokens[:100], tokens[100:]])
    assert [t.tolist() for t in both] == [t.tolist() for t in lists]


def test_values_differing_after_a_nul_are_not_conflated() -> None:
    # pandas' fast string table stops at NUL; the encoder must not merge such values
    import pandas as pd

    from matcher.encoding._columns import _factorize

    codes, uniq = _factorize(pd.Series(["a", "a\x00b", None, "a"], dtype=object))
    assert codes.tolist() == [0, 1, -1, 0]
    assert list(uniq) == ["a", "a\x00b"]
