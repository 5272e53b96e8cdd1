"""Batch linkage of encoded batches from any number of forces.

Only encodings are seen here. Candidates come from an exhaustive Dice scan over the whole
bit vectors (cheap below a few hundred thousand records) united with pairs that share a
keyed blocking token; pairs within one force are dropped. Per-field comparisons are scored
by a Fellegi-Sunter model fitted by EM on the candidates themselves, and an optional
one-to-one constraint per pair of forces keeps, for each record, its best match in each
other force.

>>> # result = link_batches([batch_a, batch_b], schema)
>>> # result.pairs.columns -> force_a, record_ref_a, force_b, record_ref_b, score
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from matcher.batch import EncodedBatch, TokenLists, flat_tokens
from matcher.errors import EpochError, FingerprintError, InputError
from matcher.lsh import _sorted_unique
from matcher.schema import LinkageSchema
from matcher.scoring import MatchModel, compare, levels, shipped_model, train_model
from matcher.similarity import dice_candidates

__all__ = ["DEFAULT_THRESHOLD", "LinkResult", "candidate_pairs", "link_batches", "token_pairs"]

# Blocks larger than this are too common (a frequent name in one year) to be worth
# enumerating; the Dice scan still covers them.
MAX_BLOCK = 400
# Cut-off on the EM posterior. The posterior of a conditional-independence model is
# overconfident against matches whose fields are correlated errors; 0.1 gave the best F1 on
# every multi-force FEBRL set (benchmarks/quality.py) with precision still >= 0.999.
DEFAULT_THRESHOLD = 0.1
# Below this many candidate pairs EM is fitted on too little evidence to trust.
MIN_EM_PAIRS = 5000


@dataclass
class LinkResult:
    """Accepted cross-force pairs and the cluster of every record."""

    pairs: pd.DataFrame  # force_a, record_ref_a, force_b, record_ref_b, score
    clusters: pd.DataFrame  # force, record_ref, cluster
    model: MatchModel
    candidates: int


def token_pairs(
    tokens: Sequence[NDArray[np.uint64]],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Pairs ``(i, j)``, ``i < j``, of rows that share at least one blocking token."""
    toks, offsets = flat_tokens(tokens)
    if len(toks) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e
    rows = np.repeat(np.arange(len(tokens), dtype=np.int64), np.diff(offsets))
    order = np.lexsort((rows, toks))
    toks, rows = toks[order], rows[order]
    bounds = np.flatnonzero(np.diff(toks)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(toks)]])
    out_i: list[NDArray[np.int64]] = []
    out_j: list[NDArray[np.int64]] = []
    for s, e in zip(starts, ends, strict=True):
        size = e - s
        if size < 2 or size > MAX_BLOCK:
            continue
        members = rows[s:e]
        ii, jj = np.triu_indices(size, k=1)
        out_i.append(members[ii])
        out_j.append(members[jj])
    if not out_i:
        e0 = np.zeros(0, dtype=np.int64)
        return e0, e0
    i = np.concatenate(out_i)
    j = np.concatenate(out_j)
    key = _sorted_unique(np.minimum(i, j) * len(tokens) + np.maximum(i, j))
    return key // len(tokens), key % len(tokens)


def candidate_pairs(
    filters: NDArray[np.uint64],
    tokens: Sequence[NDArray[np.uint64]],
    groups: NDArray[np.int64],
    *,
    dice_threshold: float = 0.45,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Candidate pairs ``i < j`` from different ``groups`` (forces)."""
    n = len(filters)
    di, dj, _ = dice_candidates(filters, filters, dice_threshold, self_join=True)
    ti, tj = token_pairs(tokens)
    key = _sorted_unique(np.concatenate([di * n + dj, ti * n + tj]))
    i, j = key // n, key % n
    keep = groups[i] != groups[j]
    return i[keep], j[keep]


def _check_batches(batches: Sequence[EncodedBatch], schema: LinkageSchema) -> None:
    if len(batches) < 2:
        raise InputError("linkage needs at least two batches", field="batches")
    epochs = {b.epoch for b in batches}
    if len(epochs) > 1:
        raise EpochError(f"batches were encoded under different key epochs: {sorted(epochs)}")
    for b in batches:
        if b.schema_fingerprint != schema.fingerprint:
            raise FingerprintError(
                f"batch of force {b.force} has schema fingerprint "
                f"{b.schema_fingerprint[:12]}, expected {schema.fingerprint[:12]}"
            )
        if b.filter_bits != schema.total_bits:
            raise InputError(
                f"batch of force {b.force} has the wrong filter length", field="filter_bits"
            )


def _one_to_one(
    schema: LinkageSchema,
    model: MatchModel,
    filters: NDArray[np.uint64],
    i: NDArray[np.int64],
    j: NDArray[np.int64],
    p: NDArray[np.float64],
    groups: NDArray[np.int64],
    threshold: float,
) -> NDArray[np.bool_]:
    """Each record keeps its best match in each other force, plus any further match there
    that is itself a match of that best one (the other force holds the person twice)."""
    n = len(i)
    src = np.concatenate([i, j])
    dst = np.concatenate([j, i])
    score = np.concatenate([p, p])
    pair = np.concatenate([np.arange(n), np.arange(n)])
    order = np.lexsort((-score, groups[dst], src))
    src, dst, score, pair = src[order], dst[order], score[order], pair[order]
    gdst = groups[dst]
    first = np.ones(len(src), dtype=np.bool_)
    first[1:] = (src[1:] != src[:-1]) | (gdst[1:] != gdst[:-1])
    best = np.maximum.accumulate(np.where(first, np.arange(len(src)), 0))
    extra = np.flatnonzero(~first)
    keep = np.ones(n, dtype=np.bool_)
    if len(extra):
        b_star, b_other = dst[best[extra]], dst[extra]
        same, _ = model.score(schema, filters, filters, b_star, b_other)
        keep[pair[extra[same < threshold]]] = False
    return keep


def _clusters(n: int, i: NDArray[np.int64], j: NDArray[np.int64]) -> NDArray[np.int64]:
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)], dtype=np.int64)


def _stages(n: int, *, enabled: bool) -> Callable[[str | None], None]:
    """A progress bar over the linkage stages, shown for long runs only."""
    if not enabled or n < 50_000:
        return lambda stage: None
    from tqdm import tqdm

    bar = tqdm(total=5, desc="linking", unit="stage", leave=False)
    started = [False]

    def step(stage: str | None) -> None:
        if started[0]:
            bar.update(1)
        started[0] = True
        if stage is None:
            bar.close()
        else:
            bar.set_postfix_str(stage)

    return step


def link_batches(
    batches: Sequence[EncodedBatch],
    schema: LinkageSchema,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    one_to_one: bool = True,
    model: MatchModel | None = None,
    progress: bool = False,
) -> LinkResult:
    """Link the records of several forces' batches; returns accepted cross-force pairs.

    ``clusters`` in the result groups every record with those it is linked to, across any
    number of forces (connected components of the accepted pairs).
    """
    _check_batches(batches, schema)
    bar = _stages(sum(len(b) for b in batches), enabled=progress)
    filters = np.concatenate([b.filters for b in batches])
    tokens = TokenLists.concat([TokenLists.of(b.blocking_tokens) for b in batches])
    forces = [b.force for b in batches]
    codes = {f: k for k, f in enumerate(dict.fromkeys(forces))}
    groups = np.concatenate([np.full(len(b), codes[b.force], dtype=np.int64) for b in batches])
    refs = np.array([r for b in batches for r in b.record_refs], dtype=object)
    force_of = np.array([b.force for b in batches for _ in range(len(b))], dtype=object)
    bar("candidate generation")
    i, j = candidate_pairs(filters, tokens, groups)
    bar("field comparison")
    _, sim = compare(schema, filters, filters, i, j)
    lv = levels(sim)
    bar("model fitting (EM)")
    if model is None:
        # EM needs enough pairs to separate matches from non-matches; small runs use the
        # shipped model fitted on large multi-force sets.
        shipped = shipped_model(schema) if len(lv) < MIN_EM_PAIRS else None
        model = shipped if shipped is not None else train_model(schema, lv)
    p = model.probability(lv)
    bar("resolving matches")
    keep = p >= threshold
    if one_to_one:
        sel = np.flatnonzero(keep)
        ok = _one_to_one(schema, model, filters, i[sel], j[sel], p[sel], groups, threshold)
        keep[sel[~ok]] = False
    ai, aj, ap = i[keep], j[keep], p[keep]
    pairs = pd.DataFrame(
        {
            "force_a": force_of[ai],
            "record_ref_a": refs[ai],
            "force_b": force_of[aj],
            "record_ref_b": refs[aj],
            "score": np.round(ap, 6),
        }
    ).sort_values("score", ascending=False, ignore_index=True)
    bar("clustering")
    cl = _clusters(len(filters), ai, aj)
    bar(None)
    clusters = pd.DataFrame({"force": force_of, "record_ref": refs, "cluster": cl})
    return LinkResult(pairs=pairs, clusters=clusters, model=model, candidates=len(i))
