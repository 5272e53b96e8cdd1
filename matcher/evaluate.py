"""Quality evaluation on labelled data, through the production path.

Each force's rows are encoded separately with a freshly generated linkage secret, the
linker sees only the encoded batches, and the truth column is used only to score the
result. Quality is measured over cross-force record pairs: two records of one person held
by different forces.

>>> # report = evaluate_frame(df, force_column="force", truth_column="person")
>>> # report.f1
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from matcher.encoding import encode_frame
from matcher.errors import InputError
from matcher.keys import LinkageSecret
from matcher.linkage import DEFAULT_THRESHOLD, link_batches
from matcher.schema import LinkageSchema, default_schema

__all__ = ["EVALUATE_COLUMNS", "QualityReport", "evaluate_frame", "pair_quality", "true_pairs"]

EVALUATE_COLUMNS = ("forename", "surname", "date_of_birth", "sex", "postcode", "address", "town")


@dataclass(frozen=True)
class QualityReport:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    records: int
    forces: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def true_pairs(df: pd.DataFrame, force_column: str, truth_column: str) -> set[tuple[int, int]]:
    """Row-position pairs ``(i, j)``, ``i < j``, of one person in different forces."""
    persons = pd.factorize(df[truth_column])[0]
    forces = pd.factorize(df[force_column].astype(str))[0]
    order = np.argsort(persons, kind="stable")
    sp = persons[order]
    bounds = np.flatnonzero(np.diff(sp)) + 1
    out: set[tuple[int, int]] = set()
    for grp in np.split(order, bounds):
        if len(grp) < 2:
            continue
        ii, jj = np.triu_indices(len(grp), k=1)
        a, b = grp[ii], grp[jj]
        cross = forces[a] != forces[b]
        lo = np.minimum(a[cross], b[cross]).tolist()
        hi = np.maximum(a[cross], b[cross]).tolist()
        out.update(zip(lo, hi, strict=True))
    return out


def pair_quality(
    predicted: Iterable[tuple[int, int]], truth: set[tuple[int, int]]
) -> dict[str, Any]:
    """Precision, recall, F1, tp, fp and fn of ``predicted`` pairs against ``truth``
    (pairs in either order; ``truth`` as ordered by :func:`true_pairs`)."""
    pred = {(min(a, b), max(a, b)) for a, b in predicted}
    tp = len(pred & truth)
    fp = len(pred - truth)
    fn = len(truth - pred)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "f1": round(f1, 6),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def evaluate_frame(
    df: pd.DataFrame,
    *,
    force_column: str = "force",
    truth_column: str = "person",
    schema: LinkageSchema | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    one_to_one: bool = True,
) -> QualityReport:
    """Encode each force separately under a fresh secret, link, and score against truth."""
    for col in (force_column, truth_column):
        if col not in df.columns:
            raise InputError(f"column {col!r} is missing", field=col)
    missing = [c for c in EVALUATE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"column(s) missing: {', '.join(missing)}", field=",".join(missing))
    if len(df) == 0:
        raise InputError("the input has no records", field="rows")
    if df[force_column].isna().any():
        raise InputError(f"column {force_column!r} has empty values", field=force_column)
    schema = schema or default_schema()
    t0 = time.perf_counter()
    df = df.reset_index(drop=True)
    secret = LinkageSecret(epoch=1, secret=secrets.token_bytes(32))
    batches = []
    ref_to_row: dict[str, int] = {}
    # The schema's other columns (middle names, aliases) are used when the file has them.
    extra = [c for c in schema.input_columns if c in df and c not in EVALUATE_COLUMNS]
    columns = list(EVALUATE_COLUMNS) + extra
    # Forces get neutral codes here: the labelled file's names need not be valid codes, and
    # two names that clean to the same code must not merge into one force.
    for k, (_, part) in enumerate(df.groupby(df[force_column].astype(str), sort=False)):
        local = part[columns].copy()
        local["id"] = part.index.astype(str)
        res = encode_frame(local, schema, secret, f"F{k:03d}", id_column="id")
        batches.append(res.batch)
        for ref, rid in zip(res.refs["record_ref"], res.refs["id"], strict=True):
            ref_to_row[ref] = int(rid)
    if len(batches) < 2:
        raise InputError("evaluation needs records from at least two forces", field=force_column)
    result = link_batches(batches, schema, threshold=threshold, one_to_one=one_to_one)
    predicted = zip(
        result.pairs["record_ref_a"].map(ref_to_row),
        result.pairs["record_ref_b"].map(ref_to_row),
        strict=True,
    )
    figures = pair_quality(predicted, true_pairs(df, force_column, truth_column))
    return QualityReport(
        **figures,
        records=len(df),
        forces=len(batches),
        seconds=round(time.perf_counter() - t0, 3),
    )
