"""The service's search: same answers as a plain exhaustive search, snapshots stay frozen."""

from __future__ import annotations

import numpy as np

from matcher.scoring import default_model
from matcher.service.matching import MatchResult, RecordIndex, search
from matcher.similarity import dice_topk_reference

from service_helpers import SCHEMA, encode, people


def _reference(
    filters: np.ndarray,
    forces: list[str],
    refs: list[str],
    live: np.ndarray,
    subjects: np.ndarray,
    exclude: str | None,
    max_results: int,
) -> list[list[MatchResult]]:
    model = default_model(SCHEMA)
    keep = [i for i in range(len(refs)) if live[i] and forces[i] != exclude]
    # Dice top-k candidates, ties by reference (as the index breaks them), then the model.
    out: list[list[MatchResult]] = []
    k = max_results * 4 + 8
    for x in range(len(subjects)):
        _, j, s = dice_topk_reference(subjects[x : x + 1], filters[keep], len(keep), 0.5)
        cand = sorted(zip((-s).tolist(), [refs[keep[i]] for i in j], j.tolist(), strict=True))
        rows = [keep[i] for _, _, i in cand[:k]]
        res = []
        if rows:
            p, lv = model.score(SCHEMA, subjects, filters, np.full(len(rows), x), np.array(rows))
            for pi, row, lvi in zip(p.tolist(), rows, lv, strict=True):
                band = model.band(pi)
                if band:
                    res.append(
                        MatchResult(
                            forces[row], refs[row], round(pi, 6), band, tuple(int(v) for v in lvi)
                        )
                    )
        res.sort(key=lambda r: (-r.score, r.force, r.record_ref))
        out.append(res[:max_results])
    return out


def test_search_equals_exhaustive_reference_and_snapshots_stay_frozen() -> None:
    df = people(300, seed=60)
    idx = RecordIndex(words=SCHEMA.total_words)
    batches = [
        encode(df.iloc[:150], "F01"),
        encode(df.iloc[100:], "F02"),
        encode(df.iloc[50:120], "F03"),
    ]
    for v, b in enumerate(batches, start=1):
        idx.add(b.force, b.record_refs, b.filters, v)
    before = idx.snapshot()
    gone = batches[1].record_refs[:30]
    assert idx.retract("F02", gone, 4) == 30
    subjects = encode(df.iloc[90:160:5], "F09").filters
    filters = np.vstack([b.filters for b in batches])
    forces = [b.force for b in batches for _ in range(len(b))]
    refs = [r for b in batches for r in b.record_refs]
    live = np.array([r not in set(gone) for r in refs])
    for exclude in (None, "F01"):
        got = search(idx.snapshot(), subjects, schema=SCHEMA, exclude_force=exclude)
        want = _reference(filters, forces, refs, live, subjects, exclude, 10)
        assert got == want
        assert any(got)
    # The snapshot taken before the retraction still answers as it did then.
    old = search(before, subjects, schema=SCHEMA)
    assert old == _reference(filters, forces, refs, np.ones(len(refs), bool), subjects, None, 10)
    assert {m.record_ref for r in old for m in r} & set(gone)
