"""Tests for the FEBRL-based multi-force quality sets."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from matcher import datasets
from matcher.datasets import (
    COLUMNS,
    CORRUPTION_RATES,
    build_multiforce,
    read_set,
    split_by_force,
    true_cross_force_pairs,
)
from matcher.errors import InputError

UK_POSTCODE = re.compile(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}")
DATE_SHAPES = {
    "iso": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "dmy_slash": re.compile(r"\d{2}/\d{2}/\d{4}"),
    "compact": re.compile(r"\d{8}"),
    "dmy_mon": re.compile(r"\d{2}-(?:[A-Z][a-z]{2}|\d{2})-\d{4}"),
    "dmy_dot": re.compile(r"\d{2}\.\d{2}\.\d{4}"),
}


@pytest.fixture(scope="module")
def febrl3() -> pd.DataFrame:
    return build_multiforce("febrl3", n_forces=5, seed=11)


@pytest.fixture(scope="module")
def febrl4_log() -> tuple[pd.DataFrame, list[list[str]]]:
    return datasets._generate("febrl4", n_forces=6, seed=3, corruption=1.0)


def test_deterministic_for_the_same_arguments(febrl3: pd.DataFrame) -> None:
    again = build_multiforce("febrl3", n_forces=5, seed=11)
    pd.testing.assert_frame_equal(febrl3, again)
    other = build_multiforce("febrl3", n_forces=5, seed=12)
    assert not febrl3.equals(other)


def test_columns_ids_and_forces(febrl3: pd.DataFrame) -> None:
    assert tuple(febrl3.columns) == COLUMNS
    assert len(febrl3) == 5000
    assert febrl3["id"].is_unique
    assert not febrl3.isna().any().any()
    assert all(isinstance(v, str) for v in febrl3.to_numpy().ravel())
    assert set(febrl3["force"]) == {"F01", "F02", "F03", "F04", "F05"}
    assert febrl3["person"].str.fullmatch(r"rec-\d+").all()
    # each force holds a fair share
    sizes = febrl3["force"].value_counts()
    assert sizes.min() > 0.7 * len(febrl3) / 5


def test_true_pairs_are_cross_force_and_complete(febrl3: pd.DataFrame) -> None:
    pairs = true_cross_force_pairs(febrl3)
    person = dict(zip(febrl3["id"], febrl3["person"], strict=True))
    force = dict(zip(febrl3["id"], febrl3["force"], strict=True))
    for a, b in pairs:
        assert a < b
        assert person[a] == person[b]
        assert force[a] != force[b]
    expected = 0
    same_force = 0
    for _, group in febrl3.groupby("person"):
        forces = group["force"].tolist()
        for i in range(len(forces)):
            for j in range(i + 1, len(forces)):
                expected += forces[i] != forces[j]
                same_force += forces[i] == forces[j]
    assert len(pairs) == expected
    # within-force duplicates exist, but they are rare
    assert 0 < same_force < 0.1 * expected


def test_persons_spread_over_distinct_forces(febrl3: pd.DataFrame) -> None:
    spread = febrl3.groupby("person")["force"].agg(lambda s: s.nunique() == min(len(s), 5))
    assert spread.mean() > 0.8


def test_split_by_force(febrl3: pd.DataFrame) -> None:
    parts = split_by_force(febrl3)
    assert list(parts) == sorted(parts)
    assert sum(len(p) for p in parts.values()) == len(febrl3)
    for force, part in parts.items():
        assert set(part["force"]) == {force}
        assert list(part.index) == list(range(len(part)))


def test_uk_postcodes(febrl3: pd.DataFrame) -> None:
    codes = febrl3["postcode"]
    present = codes[codes != ""]
    assert present.str.fullmatch(UK_POSTCODE.pattern).all()
    assert 0.005 < (codes == "").mean() < 0.03


def test_postcode_mapping_is_stable_and_a_digit_typo_stays_similar() -> None:
    to_uk = datasets._postcode_mapper(random.Random("postcode:5"))
    r = random.Random(0)
    for _ in range(300):
        code = f"{r.randrange(10000):04d}"
        uk = to_uk(code)
        assert UK_POSTCODE.fullmatch(uk)
        assert to_uk(code) == uk
        pos = r.randrange(4)
        typo = code[:pos] + str((int(code[pos]) + r.randrange(1, 10)) % 10) + code[pos + 1 :]
        other = to_uk(typo)
        assert other != uk
        if pos > 0:  # district, sector or unit letter: one character at most changes
            outward, inward = uk.split()
            o_out, o_in = other.split()
            assert outward.rstrip("0123456789") == o_out.rstrip("0123456789")
            if pos == 1:
                assert inward == o_in
            else:
                assert outward == o_out
                assert sum(x != y for x, y in zip(inward, o_in, strict=True)) == 1


def test_each_force_has_one_date_format(febrl3: pd.DataFrame) -> None:
    formats = set()
    for force, part in split_by_force(febrl3).items():
        dates = part.loc[part["date_of_birth"] != "", "date_of_birth"]
        shapes = {name for name, rx in DATE_SHAPES.items() if dates.str.fullmatch(rx).mean() > 0.9}
        assert len(shapes) == 1, force
        formats |= shapes
    assert formats == set(DATE_SHAPES)
    assert febrl3["date_of_birth"].str.contains(r"-(?:Jan|Feb|Mar|Apr|May|Jun|Jul)-").any()


def test_sex_is_per_person_and_sometimes_missing(febrl3: pd.DataFrame) -> None:
    assert set(febrl3["sex"]) == {"F", "M", ""}
    known = febrl3[febrl3["sex"] != ""]
    assert (known.groupby("person")["sex"].nunique() == 1).all()
    assert 0.03 < (febrl3["sex"] == "").mean() < 0.07


def test_middle_names_aliases_and_titles_present(febrl3: pd.DataFrame) -> None:
    with_middle = febrl3.groupby("person")["middle_names"].agg(lambda s: (s != "").sum())
    sizes = febrl3.groupby("person").size()
    partly = (with_middle > 0) & (with_middle < sizes)
    assert partly.sum() > 50  # present in some of a person's records, missing in others
    assert (febrl3["aliases"] != "").mean() > 0.01
    assert febrl3["forename"].str.match(r"(?i)(?:mr|mrs|miss|ms|dr) ").mean() > 0.01
    assert febrl3["forename"].str.contains(r"[^\x00-\x7f]").any()  # accents


def test_hard_corruption_rates(febrl4_log: tuple[pd.DataFrame, list[list[str]]]) -> None:
    df, log = febrl4_log
    counts = Counter(k for applied in log for k in applied)
    dups = 5000
    for kind in ("transpose", "marriage", *(f"blank_{f}" for f in datasets._BLANKABLE)):
        rate = counts[kind] / dups
        assert 0.5 * CORRUPTION_RATES[kind] < rate < 1.5 * CORRUPTION_RATES[kind], kind
    assert counts["nickname"] > 0
    assert counts["dob_swap"] > 0
    hard = set(datasets._HARD)
    assert max(sum(k in hard for k in applied) for applied in log) <= 2
    for kind in ("alias", "title", "accent", "case"):
        rate = counts[kind] / len(df)
        assert 0.4 * CORRUPTION_RATES[kind] < rate < 1.6 * CORRUPTION_RATES[kind], kind


def test_corruptions_show_in_the_data(febrl4_log: tuple[pd.DataFrame, list[list[str]]]) -> None:
    df, log = febrl4_log
    clean = build_multiforce("febrl4", n_forces=6, seed=3, corruption=0.0)
    # ids, persons and forces do not depend on the corruption scale
    assert clean["id"].tolist() == df["id"].tolist()
    assert clean["person"].tolist() == df["person"].tolist()
    seen: Counter[str] = Counter()
    for i, applied in enumerate(log):
        hard = [k for k in applied if k in datasets._HARD]
        if len(hard) != 1 or "accent" in applied:
            continue  # check each corruption on its own
        dirty, base = df.iloc[i], clean.iloc[i]
        kind = hard[0]
        if kind == "transpose":
            assert _plain(dirty["surname"]) == _plain(base["forename"])
            assert _plain(dirty["forename"]) == _plain(base["surname"])
        elif kind == "dob_swap":
            assert dirty["date_of_birth"] != base["date_of_birth"]
        elif kind == "blank_town":
            assert dirty["town"] == "" != base["town"]
        elif kind == "marriage":
            assert _plain(dirty["surname"]) not in ("", _plain(base["surname"]))
        elif kind == "nickname":
            assert _plain(dirty["forename"]) != _plain(base["forename"])
        else:
            continue
        seen[kind] += 1
    assert min(seen.values()) > 0 and len(seen) == 5
    married = [i for i, a in enumerate(log) if "marriage" in a]
    with_alias = sum(df.iloc[i]["aliases"] != "" for i in married)
    assert 0.25 * len(married) < with_alias < 0.8 * len(married)


def _plain(value: str) -> str:
    words = value.casefold().split()
    if words and words[0] in {"mr", "mrs", "miss", "ms", "dr"}:
        words = words[1:]
    return " ".join(words)


def test_no_corruption_leaves_only_febrl_errors() -> None:
    df, log = datasets._generate("febrl3", n_forces=5, seed=2, corruption=0.0)
    assert not any(log)
    assert (df["sex"] != "").all()
    assert (df["postcode"] != "").all()
    assert (df["aliases"] == "").all()


def test_febrl4_is_one_to_one() -> None:
    two = build_multiforce("febrl4", n_forces=2, seed=1)
    assert len(two) == 10000
    forces = two.groupby("person")["force"].agg(lambda s: ",".join(sorted(s)))
    assert set(forces) == {"F01,F02"}
    assert len(true_cross_force_pairs(two)) == 5000
    six = build_multiforce("febrl4", n_forces=6, seed=1)
    assert (six.groupby("person").size() == 2).all()
    assert (six.groupby("person")["force"].nunique() == 2).all()
    assert six["force"].nunique() == 6
    assert len(true_cross_force_pairs(six)) == 5000


def test_febrl2_keeps_singletons() -> None:
    df = build_multiforce("febrl2", n_forces=7, seed=4)
    sizes = df.groupby("person").size()
    assert len(df) == 5000
    assert (sizes == 1).sum() > 3000
    assert df["force"].nunique() == 7


def test_read_set_round_trip(tmp_path: Path, febrl3: pd.DataFrame) -> None:
    path = tmp_path / "set.csv"
    febrl3.to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_set(path), febrl3)
    febrl3.drop(columns="town").to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        read_set(path)
    assert info.value.field == "town"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source": "febrl5", "n_forces": 5, "seed": 0}, "source"),
        ({"source": "febrl3", "n_forces": 1, "seed": 0}, "n_forces"),
        ({"source": "febrl3", "n_forces": 5, "seed": 0, "corruption": -1.0}, "corruption"),
        ({"source": "febrl3", "n_forces": 5, "seed": 0, "corruption": float("nan")}, "corruption"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as info:
        build_multiforce(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
