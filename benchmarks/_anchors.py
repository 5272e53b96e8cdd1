"""Shared helpers for the benchmark anchors: plaintext recordlinkage (ECM) and clkhash+anonlink.

Both anchors see the same rows as matcher and are scored exactly like
:func:`matcher.evaluate.evaluate_frame`: over cross-force record pairs (two rows of one person
held by different forces), with :func:`matcher.evaluate.true_pairs` as the truth.

The anchors get the same minimal, fair clean-up of the plaintext: lower case, stripped,
whitespace collapsed, and dates of birth rewritten from each force's export format to
``yyyymmdd`` (without that, an exact date comparison across forces would be a straw man).
Nothing else (no nickname table, no title or accent removal): that is matcher's own work.

The bench extra (anonlink, clkhash, faiss-cpu) is imported lazily, so this module imports
with the core dependencies only.
"""

from __future__ import annotations

import array
import importlib.metadata
import importlib.util
import re
import sys
import time
import types
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from matcher.evaluate import pair_quality, true_pairs

__all__ = [
    "ANONLINK_THRESHOLDS",
    "CLKHASH_BITS_PER_TOKEN",
    "clkhash_anonlink",
    "clkhash_rows",
    "clkhash_schema",
    "ensure_pkg_resources",
    "plain_normalise",
    "recordlinkage_ecm",
    "score",
]

Pair = tuple[int, int]

#: Thresholds tried for anonlink; the best F1 is reported (tuned on the truth, so optimistic).
ANONLINK_THRESHOLDS: tuple[float, ...] = (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90)

#: clkhash bits per token, chosen to match matcher's default schema (``k`` per token of
#: each field in :func:`matcher.schema.default_schema`): names 5, date 4, sex 8,
#: postcode 4, address 3, town 3.
CLKHASH_BITS_PER_TOKEN: dict[str, int] = {
    "forename": 5,
    "surname": 5,
    "other_names": 5,
    "date_of_birth": 4,
    "sex": 8,
    "postcode": 4,
    "address": 3,
    "town": 3,
}
CLKHASH_FIELDS: tuple[str, ...] = tuple(CLKHASH_BITS_PER_TOKEN)

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_DMY = re.compile(r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})$")
_DMON = re.compile(r"^(\d{1,2})-([a-z]{3})-(\d{4})$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_WS = re.compile(r"\s+")
_KDF_SALT = (
    "SCbL2zHNnmsckfzchsNkZY9XoHk96P/G5nUBrM7ybymlEFsMV6PAeDZCNp3rfNUPCtLDMOGQHG4pCQpfhiHCyA=="
)


# --------------------------------------------------------------------------- scoring
def score(predicted: Iterable[Pair], truth: set[Pair], seconds: float) -> dict[str, Any]:
    """Precision, recall and F1 over cross-force pairs, in evaluate_frame's form."""
    return {**pair_quality(predicted, truth), "seconds": round(seconds, 3)}


# --------------------------------------------------------------------------- plaintext
def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return _WS.sub(" ", str(value).strip().lower())


def _date(value: Any) -> str:
    """A force's exported date of birth as ``yyyymmdd`` (unvalidated), or the cleaned text."""
    s = _text(value)
    if not s:
        return ""
    if m := _ISO.match(s):
        y, mo, d = m.groups()
    elif m := _DMY.match(s):
        d, mo, y = m.groups()
    elif m := _DMON.match(s):
        d, mon, y = m.groups()
        if mon not in _MONTHS:
            return s
        mo = str(_MONTHS[mon])
    elif m := _COMPACT.match(s):
        y, mo, d = m.groups()
    else:
        return s
    return f"{int(y):04d}{int(mo):02d}{int(d):02d}"


def plain_normalise(df: pd.DataFrame) -> pd.DataFrame:
    """The anchors' view of ``df``: positional index, cleaned text, ``yyyymmdd`` dates."""
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    src = df.reset_index(drop=True)
    for col in ("forename", "middle_names", "surname", "aliases", "sex", "address", "town"):
        out[col] = [_text(v) for v in src[col]] if col in src.columns else ""
    out["postcode"] = [_text(v).replace(" ", "") for v in src["postcode"]]
    out["date_of_birth"] = [_date(v) for v in src["date_of_birth"]]
    out["force"] = src["force"].astype(str).to_numpy()
    return out


# --------------------------------------------------------------------------- recordlinkage
def recordlinkage_ecm(
    df: pd.DataFrame, *, force_column: str = "force", truth_column: str = "person"
) -> dict[str, Any]:
    """Plaintext Fellegi-Sunter by ECM (recordlinkage) over cross-force pairs.

    Blocking is the union of blocks on surname soundex, forename soundex, date of birth and
    postcode (each catches what a corruption of the others would lose), restricted to
    cross-force pairs. Features are binary: Jaro-Winkler >= 0.85 on forename, surname,
    address and town; exact on date of birth, postcode and sex; missing values disagree.
    """
    import jellyfish
    import recordlinkage

    truth = true_pairs(df.reset_index(drop=True), force_column, truth_column)
    t0 = time.perf_counter()
    p = plain_normalise(df)
    for col in ("forename", "surname"):
        p[col + "_sdx"] = [jellyfish.soundex(v.replace(" ", "")) if v else "" for v in p[col]]
    # Empty blocking keys would pair every record missing that field: block on NaN instead.
    blocked = p.replace("", np.nan)
    idx = recordlinkage.Index()
    for key in ("surname_sdx", "forename_sdx", "date_of_birth", "postcode"):
        idx.block(key)
    candidates = idx.index(blocked)
    forces = p["force"].to_numpy()
    left = candidates.get_level_values(0).to_numpy()
    right = candidates.get_level_values(1).to_numpy()
    candidates = candidates[forces[left] != forces[right]].drop_duplicates()

    comp = recordlinkage.Compare(n_jobs=1)
    for col in ("forename", "surname", "address", "town"):
        comp.string(col, col, method="jarowinkler", threshold=0.85, missing_value=0, label=col)
    for col in ("date_of_birth", "postcode", "sex"):
        comp.exact(col, col, missing_value=0, label=col)
    features = comp.compute(candidates, blocked)
    ecm = recordlinkage.ECMClassifier(binarize=None)
    matches = ecm.fit_predict(features)
    predicted = zip(
        matches.get_level_values(0).tolist(), matches.get_level_values(1).tolist(), strict=True
    )
    out = score(predicted, truth, time.perf_counter() - t0)
    out["candidate_pairs"] = len(candidates)
    out["blocking_recall"] = round(
        len({(min(a, b), max(a, b)) for a, b in zip(left, right, strict=True)} & truth)
        / max(len(truth), 1),
        6,
    )
    return out


# --------------------------------------------------------------------------- clkhash
def clkhash_schema(bits_per_token: dict[str, int] | None = None) -> dict[str, Any]:
    """A v3 clkhash linkage schema comparable to matcher's default: 1024-bit CLK, bigrams.

    Names, postcode, address and town are bigram features; the date of birth (``yyyymmdd``)
    is positional unigrams, as in clkhash's own examples; sex is a single token. Empty values
    are missing (no bits set), as in matcher.
    """
    bpt = {**CLKHASH_BITS_PER_TOKEN, **(bits_per_token or {})}

    def feature(name: str, n: int, *, positional: bool = False) -> dict[str, Any]:
        comparison: dict[str, Any] = {"type": "ngram", "n": n}
        if positional:
            comparison["positional"] = True
        return {
            "identifier": name,
            "format": {"type": "string", "encoding": "utf-8", "case": "mixed"},
            "hashing": {
                "comparison": comparison,
                "strategy": {"bitsPerToken": bpt[name]},
                "hash": {"type": "blakeHash"},
                "missingValue": {"sentinel": ""},
            },
        }

    features = [
        feature("forename", 2),
        feature("surname", 2),
        feature("other_names", 2),
        feature("date_of_birth", 1, positional=True),
        feature("sex", 1),
        feature("postcode", 2),
        feature("address", 2),
        feature("town", 2),
    ]
    return {
        "version": 3,
        "clkConfig": {
            "l": 1024,
            "kdf": {
                "type": "HKDF",
                "hash": "SHA256",
                # clkhash's example salt and info; the secret is what keys the CLKs.
                "salt": _KDF_SALT,
                "info": "c2NoZW1hX2V4YW1wbGU=",
                "keySize": 64,
            },
        },
        "features": features,
    }


def clkhash_rows(p: pd.DataFrame) -> list[list[str]]:
    """Rows for clkhash from :func:`plain_normalise` output, in :data:`CLKHASH_FIELDS` order."""
    other = [
        " ".join(x for x in (m, a.replace(";", " ")) if x).strip()
        for m, a in zip(p["middle_names"], p["aliases"], strict=True)
    ]
    cols = {f: p[f].tolist() for f in CLKHASH_FIELDS if f != "other_names"}
    cols["other_names"] = [_WS.sub(" ", s) for s in other]
    return [list(r) for r in zip(*(cols[f] for f in CLKHASH_FIELDS), strict=True)]


def ensure_pkg_resources() -> None:
    """Make ``import pkg_resources`` work for anonlink and older clkhash."""
    # anonlink 0.15 and clkhash <= 0.17 import pkg_resources for their version only;
    # setuptools >= 81 no longer ships it. A one-function stand-in keeps the bench extra
    # working without pinning an old setuptools in the shared virtualenv.
    if "pkg_resources" in sys.modules:
        return
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")

        class _Dist:
            def __init__(self, name: str) -> None:
                self.version = importlib.metadata.version(name)

        shim.get_distribution = _Dist  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim


def _pairs_from_groups(
    groups: Iterable[Sequence[tuple[int, int]]], rows: list[list[int]]
) -> set[Pair]:
    out: set[Pair] = set()
    for g in groups:
        members = [(ds, rows[ds][rec]) for ds, rec in g]
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                if members[x][0] != members[y][0]:
                    a, b = members[x][1], members[y][1]
                    out.add((min(a, b), max(a, b)))
    return out


def _filter_candidates(candidates: Any, threshold: float) -> Any:
    sims, dsets, recs = candidates
    keep = np.flatnonzero(np.frombuffer(sims, dtype=np.float64) >= threshold)

    def take(arr: array.array) -> array.array:  # type: ignore[type-arg]
        return array.array(arr.typecode, np.asarray(arr)[keep].tolist())

    return take(sims), tuple(take(a) for a in dsets), tuple(take(a) for a in recs)


def clkhash_anonlink(
    df: pd.DataFrame,
    *,
    force_column: str = "force",
    truth_column: str = "person",
    thresholds: Sequence[float] = ANONLINK_THRESHOLDS,
    secret: str = "benchmark-shared-secret",
) -> dict[str, Any]:
    """clkhash CLKs per force, anonlink candidates (Dice) and multi-party greedy solving.

    Every threshold in ``thresholds`` is tried; the best F1 is reported with its threshold,
    and every threshold's result is kept under ``by_threshold``. ``seconds`` covers encoding,
    candidate generation and one solve (at the best threshold).
    """
    ensure_pkg_resources()
    import anonlink
    from clkhash import clk
    from clkhash.schema import from_json_dict

    p = plain_normalise(df)
    truth = true_pairs(df.reset_index(drop=True), force_column, truth_column)
    schema = from_json_dict(clkhash_schema())

    t0 = time.perf_counter()
    datasets: list[list[Any]] = []
    rows: list[list[int]] = []
    for force in pd.unique(p["force"]):
        part = p[p["force"] == force]
        rows.append(part.index.tolist())
        datasets.append(
            clk.generate_clks(clkhash_rows(part), schema, secret, validate=False, max_workers=1)
        )
    t_encode = time.perf_counter() - t0
    t1 = time.perf_counter()
    candidates = anonlink.candidate_generation.find_candidate_pairs(
        datasets,
        anonlink.similarities.dice_coefficient_accelerated,
        min(thresholds),
    )
    t_candidates = time.perf_counter() - t1

    by_threshold: dict[str, dict[str, Any]] = {}
    best: dict[str, Any] | None = None
    for t in thresholds:
        t2 = time.perf_counter()
        groups = anonlink.solving.greedy_solve(_filter_candidates(candidates, t))
        predicted = _pairs_from_groups(groups, rows)
        t_solve = time.perf_counter() - t2
        res = score(predicted, truth, t_encode + t_candidates + t_solve)
        by_threshold[f"{t:.2f}"] = {k: res[k] for k in ("precision", "recall", "f1")}
        if best is None or res["f1"] > best["f1"]:
            best = {**res, "threshold": t}
    assert best is not None
    best["encode_seconds"] = round(t_encode, 3)
    best["candidate_seconds"] = round(t_candidates, 3)
    best["by_threshold"] = by_threshold
    return best
