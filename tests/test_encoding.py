from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matcher.batch import EncodedBatch
from matcher.encoding import encode_frame
from matcher.errors import EncodingError, InputError
from matcher.keys import LinkageSecret
from matcher.schema import Hardening, default_schema
from matcher.similarity import popcounts

from handmade import handmade_frame

RAW_COLUMNS = [
    "forename",
    "surname",
    "middle_names",
    "aliases",
    "date_of_birth",
    "postcode",
    "address",
    "town",
]


def _secret(epoch: int = 1) -> LinkageSecret:
    return LinkageSecret(epoch, secrets.token_bytes(32))


def _dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = np.bitwise_count(a & b).sum(1)
    tot = np.bitwise_count(a).sum(1) + np.bitwise_count(b).sum(1)
    return 2 * inter / tot


def test_encodings_are_deterministic_under_one_key() -> None:
    df = handmade_frame()
    s = _secret()
    a = encode_frame(df, default_schema(), s, "WY")
    b = encode_frame(df, default_schema(), s, "WY")
    assert np.array_equal(a.batch.filters, b.batch.filters)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(a.batch.blocking_tokens, b.batch.blocking_tokens, strict=True)
    )
    # references are fresh random values every time: they reveal nothing
    assert set(a.batch.record_refs).isdisjoint(b.batch.record_refs)


@pytest.mark.parametrize("other", ["key", "epoch"])
def test_encodings_are_unrelated_under_another_key_or_epoch(other: str) -> None:
    df = handmade_frame()
    s = _secret()
    t = _secret() if other == "key" else LinkageSecret(2, s.secret)
    a = encode_frame(df, default_schema(), s, "WY").batch
    b = encode_frame(df, default_schema(), t, "WY").batch
    same_key = _dice(a.filters, a.filters[::-1])  # different records, same key
    cross = _dice(a.filters, b.filters)  # the same record under two keys
    # the same record under another key looks no more alike than two different records
    assert cross.mean() < same_key.mean() + 0.05
    assert cross.max() < 0.6
    assert not set(np.concatenate(a.blocking_tokens).tolist()) & set(
        np.concatenate(b.blocking_tokens).tolist()
    )


def test_batch_carries_epoch_and_fingerprint() -> None:
    res = encode_frame(handmade_frame(), default_schema(), _secret(3), "WY")
    assert res.batch.epoch == 3
    assert res.batch.schema_fingerprint == default_schema().fingerprint
    assert res.batch.filters.shape == (len(res.refs), 16)
    assert list(res.refs.columns) == ["record_ref", "id"]


def test_hardening_changes_bits_but_keeps_similar_records_similar() -> None:
    df = handmade_frame()
    s = _secret()
    plain = encode_frame(df, default_schema(Hardening(mode="none")), s, "WY").batch.filters
    hard = encode_frame(df, default_schema(), s, "WY").batch.filters
    assert not np.array_equal(plain, hard)
    flipped = np.bitwise_count(plain ^ hard).sum(1) / 1024
    assert 0.005 < flipped.mean() < 0.04
    # the first two rows are the same person (William / Bill Hartley)
    assert _dice(hard[[0]], hard[[1]])[0] > _dice(hard[[0]], hard[[5]])[0]


def test_equal_field_values_in_different_records_differ_after_hardening() -> None:
    # Frequency attacks count equal segments; hardening must break exact equality. (A
    # record's segment is left unflipped with probability 0.98 ** 128, about 7%, so one
    # pair of records is not enough: 200 "John"s, under a fixed secret.)
    n = 200
    df = pd.DataFrame(
        {"id": [f"r{i}" for i in range(n)], "forename": ["John"] * n,
         "surname": [f"sm{chr(97 + i // 26)}{chr(97 + i % 26)}th" for i in range(n)],
         "date_of_birth": [""] * n}
    )  # fmt: skip
    s = LinkageSecret(1, bytes(range(32)))
    seg = default_schema().segment("forename")
    sl = slice(seg.word_offset, seg.word_offset + seg.words)
    hard = encode_frame(df, default_schema(), s, "WY").batch.filters[:, sl]
    plain = encode_frame(df, default_schema(Hardening(mode="none")), s, "WY").batch.filters[:, sl]
    assert len(np.unique(plain, axis=0)) == 1
    assert len(np.unique(hard, axis=0)) > n // 2


def test_no_raw_value_reaches_the_encoded_file(tmp_path: Path) -> None:
    df = handmade_frame()
    res = encode_frame(df, default_schema(), _secret(), "WY")
    out = tmp_path / "out.parquet"
    res.batch.to_parquet(out)
    blob = out.read_bytes().lower()
    # the file's own vocabulary (column and metadata names) is not record content
    for word in (
        b"blocking_tokens",
        b"record_ref",
        b"schema_fingerprint",
        b"filter_bits",
        b"matcher-encoded-batch",
        b"parquet-cpp-arrow",
        b"batch_id",
    ):
        blob = blob.replace(word, b"")
    for col in RAW_COLUMNS:
        for value in df[col]:
            for token in str(value).lower().replace("/", " ").split():
                if len(token) >= 4:
                    assert token.encode() not in blob, (col, token)
    for rid in df["id"]:
        assert rid.encode() not in blob
    back = EncodedBatch.from_parquet(out)
    assert np.array_equal(back.filters, res.batch.filters)
    assert back.record_refs == res.batch.record_refs
    assert back.epoch == 1 and back.force == "WY"


def test_unparseable_values_are_reported_by_row_and_column_without_the_value() -> None:
    df = handmade_frame().head(3).copy()
    df.loc[1, "date_of_birth"] = "31st of Smarch"
    df.loc[2, "postcode"] = "99999999999999X"
    res = encode_frame(df, default_schema(), _secret(), "WY")
    where = {(i.row, i.column) for i in res.issues}
    assert where == {(1, "date_of_birth"), (2, "postcode")}
    text = " ".join(str(i) for i in res.issues)
    assert "Smarch" not in text and "99999999999999X" not in text
    # the record is still encoded, with the field missing
    dob = default_schema().segment("date_of_birth")
    row = res.batch.filters[1, dob.word_offset : dob.word_offset + dob.words]
    assert popcounts(row[None, :])[0] < 10
    assert len(res.batch) == 3


def test_missing_required_column_names_it() -> None:
    df = handmade_frame().drop(columns=["surname"])
    with pytest.raises(InputError, match="surname"):
        encode_frame(df, default_schema(), _secret(), "WY")


def test_optional_columns_may_be_absent() -> None:
    df = handmade_frame()[["id", "forename", "surname", "date_of_birth"]]
    res = encode_frame(df, default_schema(), _secret(), "WY")
    assert len(res.batch) == len(df)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pd.DataFrame(columns=["id", "forename", "surname", "date_of_birth"]), "no records"),
        (
            pd.DataFrame(
                {
                    "id": ["1", "1"],
                    "forename": ["a", "b"],
                    "surname": ["c", "d"],
                    "date_of_birth": ["", ""],
                }
            ),
            "duplicate",
        ),
        (pd.DataFrame({"forename": ["a"], "surname": ["c"], "date_of_birth": [""]}), "id"),
    ],
)
def test_bad_frames_are_refused(frame: pd.DataFrame, match: str) -> None:
    with pytest.raises(InputError, match=match):
        encode_frame(frame, default_schema(), _secret(), "WY")


def test_wrong_filter_shape_is_refused() -> None:
    with pytest.raises(EncodingError):
        EncodedBatch(
            "WY", 1, "f" * 64, 1024, ["a"], np.zeros((1, 8), np.uint64), [np.zeros(0, np.uint64)]
        )


@pytest.mark.parametrize("workers", [1, 2])
def test_slices_and_worker_processes_encode_as_one_pass(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    import matcher.encoding as enc
    from matcher.datasets import build_multiforce

    df = build_multiforce("febrl4", n_forces=2, seed=7).head(2500).reset_index(drop=True)
    df.loc[[10, 1900], "date_of_birth"] = "31st of Smarch"  # one issue in each of two slices
    schema, secret = default_schema(Hardening(mode="none")), LinkageSecret(1, bytes(32))
    whole = encode_frame(df, schema, secret, "F01", id_column=None)
    monkeypatch.setattr(enc, "_SLICE", 700)  # four slices
    sliced = encode_frame(df, schema, secret, "F01", id_column=None, workers=workers)
    assert (sliced.batch.filters == whole.batch.filters).all()
    assert [t.tolist() for t in sliced.batch.blocking_tokens] == [
        t.tolist() for t in whole.batch.blocking_tokens
    ]
    assert [(i.row, i.column) for i in sliced.issues] == [
        (10, "date_of_birth"),
        (1900, "date_of_birth"),
    ]
    assert [(i.row, i.column) for i in whole.issues] == [
        (10, "date_of_birth"),
        (1900, "date_of_birth"),
    ]
