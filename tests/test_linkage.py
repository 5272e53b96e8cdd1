from __future__ import annotations

import secrets

import numpy as np
import pytest

from matcher.encoding import encode_frame
from matcher.errors import EpochError, FingerprintError, InputError
from matcher.evaluate import evaluate_frame
from matcher.keys import LinkageSecret
from matcher.linkage import link_batches, token_pairs
from matcher.schema import Hardening, default_schema

from handmade import handmade_frame


def test_evaluate_finds_exactly_the_known_answer() -> None:
    report = evaluate_frame(handmade_frame(), force_column="force", truth_column="person")
    assert (report.tp, report.fp, report.fn) == (11, 0, 0)
    assert report.f1 == 1.0
    assert report.forces == 3 and report.records == 24


def test_evaluate_plain_encodings_also_work() -> None:
    report = evaluate_frame(handmade_frame(), schema=default_schema(Hardening(mode="none")))
    assert report.f1 == 1.0


def test_evaluate_needs_its_columns() -> None:
    with pytest.raises(InputError, match="person"):
        evaluate_frame(handmade_frame().drop(columns=["person"]))
    with pytest.raises(InputError, match="town"):
        evaluate_frame(handmade_frame().drop(columns=["town"]))


def _batches(epochs: tuple[int, int] = (1, 1)) -> list:
    df = handmade_frame()
    key = secrets.token_bytes(32)
    out = []
    for force, epoch in zip(("WY", "GM"), epochs, strict=True):
        part = df[df.force == force]
        out.append(encode_frame(part, default_schema(), LinkageSecret(epoch, key), force).batch)
    return out


def test_link_reports_cross_force_pairs_with_scores() -> None:
    batches = _batches()
    result = link_batches(batches, default_schema())
    assert set(result.pairs.columns) == {
        "force_a",
        "record_ref_a",
        "force_b",
        "record_ref_b",
        "score",
    }
    assert (result.pairs.force_a != result.pairs.force_b).all()
    assert result.pairs.score.between(0, 1).all()
    # WY and GM share p01, p02, p05, p07
    assert len(result.pairs) == 4
    refs = set(batches[0].record_refs) | set(batches[1].record_refs)
    assert set(result.pairs.record_ref_a) <= refs


def test_link_refuses_mixed_epochs_and_schemas() -> None:
    with pytest.raises(EpochError):
        link_batches(_batches((1, 2)), default_schema())
    with pytest.raises(FingerprintError):
        link_batches(_batches(), default_schema(Hardening(mode="none")))
    with pytest.raises(InputError):
        link_batches(_batches()[:1], default_schema())


def test_token_pairs_joins_rows_sharing_a_token() -> None:
    toks = [
        np.array([1, 2], np.uint64),
        np.array([3], np.uint64),
        np.array([2], np.uint64),
        np.array([], np.uint64),
        np.array([3, 9], np.uint64),
    ]
    i, j = token_pairs(toks)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(0, 2), (1, 4)}


def test_evaluate_keeps_forces_apart_whose_names_clean_to_the_same_code() -> None:
    df = handmade_frame()
    df.loc[df.force == "WY", "force"] = "W Y"
    df.loc[df.force == "GM", "force"] = "WY"  # the old code cleaning merged these two forces
    report = evaluate_frame(df)
    assert report.forces == 3
    assert (report.tp, report.fp, report.fn) == (11, 0, 0)
