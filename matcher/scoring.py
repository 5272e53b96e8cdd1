"""Per-field comparison of encodings and Fellegi-Sunter scoring trained by EM.

For a candidate pair the segments of the two bit vectors are compared field by field
(Dice, corrected for the randomized-response noise of hardening). Name transposition,
nicknames (the forename root) and aliases (a surname found among the other's other names)
are folded into the forename and surname comparisons, so the scorer sees one comparison
per field. Each comparison falls into a level; a Fellegi-Sunter model with m and u
probabilities per level, trained without labels by expectation-maximisation, turns the
pattern into a match probability.

>>> import numpy as np
>>> from matcher.schema import default_schema
>>> model = default_model(default_schema())
>>> model.band(0.99)
'strong'
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from matcher.errors import SchemaError
from matcher.schema import LinkageSchema

__all__ = [
    "BANDS",
    "LEVEL_EDGES",
    "MatchModel",
    "compare",
    "default_model",
    "levels",
    "model_path",
    "shipped_model",
    "train_model",
]

# Comparison levels: 0 = missing on either side (no evidence), then 1..len(LEVEL_EDGES)
# by similarity. The top levels are narrow because that is where matches and near misses
# are told apart.
LEVEL_EDGES = np.array([0.3, 0.45, 0.6, 0.7, 0.8, 0.88, 0.94])
MAX_PENALTY_BITS = 12.0  # the most one field's disagreement can count against a match
MIN_LEVEL_PAIRS = 20  # a level seen in fewer candidate pairs carries no weight
N_LEVELS = len(LEVEL_EDGES) + 2  # similarity levels 1.., plus level 0 for missing
# "possible" starts at the batch linker's measured cut-off (linkage.DEFAULT_THRESHOLD).
BANDS = (("strong", 0.99), ("probable", 0.8), ("possible", 0.1))

# Fields folded into another comparison rather than scored on their own.
_FOLDED = {"forename_root", "other_names"}


def _popcount(x: NDArray[np.uint64]) -> NDArray[np.int64]:
    return np.asarray(np.bitwise_count(x).sum(axis=-1, dtype=np.int64), dtype=np.int64)


@dataclass(frozen=True)
class _Seg:
    start: int
    stop: int
    bits: int
    min_bits: float  # below this popcount a segment is taken as empty


def _segments(schema: LinkageSchema, p: float) -> dict[str, _Seg]:
    """Each segment's words and bits; ``p`` is the hardening's bit-flip probability."""
    out = {}
    for s in schema.segments:
        noise = s.bits * p
        out[s.name] = _Seg(s.word_offset, s.word_offset + s.words, s.bits, 3.0 * noise + 2.5)
    return out


class _Comparer:
    """Debiased per-segment Dice for pairs of rows."""

    def __init__(self, schema: LinkageSchema) -> None:
        self.p = schema.hardening.flip_probability if schema.hardening.mode == "rr" else 0.0
        self.segs = _segments(schema, self.p)

    def counts(
        self, a: NDArray[np.uint64], b: NDArray[np.uint64], sa: str, sb: str
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], _Seg]:
        x, y = self.segs[sa], self.segs[sb]
        av = a[:, x.start : x.stop]
        bv = b[:, y.start : y.stop]
        na = _popcount(av).astype(np.float64)
        nb = _popcount(bv).astype(np.float64)
        nab = _popcount(av & bv).astype(np.float64)
        return na, nb, nab, x

    def dice(
        self, a: NDArray[np.uint64], b: NDArray[np.uint64], sa: str, sb: str
    ) -> NDArray[np.float64]:
        """Dice of segment ``sa`` of ``a`` against ``sb`` of ``b``; NaN where either is empty."""
        return self._similarity(a, b, sa, sb, dice=True)

    def containment(
        self, a: NDArray[np.uint64], b: NDArray[np.uint64], sa: str, sb: str
    ) -> NDArray[np.float64]:
        """Share of ``a``'s segment bits present in ``b``'s segment (NaN where empty)."""
        return self._similarity(a, b, sa, sb, dice=False)

    def _similarity(
        self, a: NDArray[np.uint64], b: NDArray[np.uint64], sa: str, sb: str, *, dice: bool
    ) -> NDArray[np.float64]:
        na, nb, nab, seg = self.counts(a, b, sa, sb)
        missing = (na < seg.min_bits) | (nb < self.segs[sb].min_bits)
        out = self._debias(na, nb, nab, seg.bits, dice=dice)
        out[missing] = np.nan
        return out

    def _debias(
        self,
        na: NDArray[np.float64],
        nb: NDArray[np.float64],
        nab: NDArray[np.float64],
        bits: int,
        *,
        dice: bool,
    ) -> NDArray[np.float64]:
        p = self.p
        if p > 0:
            # Invert the expected effect of independent bit flips with probability p:
            # E[n] = t(1-2p) + Lp and E[n_ab] = c(1-2p)^2 + (a+b)p(1-2p) + Lp^2.
            q = 1.0 - 2.0 * p
            ta = np.maximum((na - bits * p) / q, 1e-9)
            tb = np.maximum((nb - bits * p) / q, 1e-9)
            c = (nab - (ta + tb) * p * q - bits * p * p) / (q * q)
            c = np.clip(c, 0.0, np.minimum(ta, tb))
        else:
            ta, tb, c = np.maximum(na, 1e-9), np.maximum(nb, 1e-9), nab
        out = 2.0 * c / (ta + tb) if dice else c / ta
        return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float64)


def compare(
    schema: LinkageSchema,
    a: NDArray[np.uint64],
    b: NDArray[np.uint64],
    i: NDArray[np.int64],
    j: NDArray[np.int64],
) -> tuple[list[str], NDArray[np.float64]]:
    """Similarity per scored field for pairs ``(a[i], b[j])``: ``(field names, (pairs, fields))``.

    NaN marks a field missing on either side. Name transposition, nickname roots and
    aliases are folded into ``forename`` and ``surname``.
    """
    cmp = _Comparer(schema)
    names = {s.name for s in schema.segments}
    av, bv = a[i], b[j]
    cols: dict[str, NDArray[np.float64]] = {}
    if {"forename", "surname"} <= names:
        ff = cmp.dice(av, bv, "forename", "forename")
        ss = cmp.dice(av, bv, "surname", "surname")
        fs = cmp.dice(av, bv, "forename", "surname")
        sf = cmp.dice(av, bv, "surname", "forename")
        straight = np.nan_to_num(ff) + np.nan_to_num(ss)
        swapped = np.nan_to_num(fs) + np.nan_to_num(sf)
        swap = swapped > straight + 0.25
        fore = np.where(swap, fs, ff)
        sur = np.where(swap, sf, ss)
        if "forename_root" in names:
            root = cmp.dice(av, bv, "forename_root", "forename_root")
            # A shared nickname root counts as a near-exact forename (bill ~ william).
            fore = np.where((~swap) & (root >= 0.9) & ~(fore >= 0.9), 0.9, fore)
        if "other_names" in names:
            # A surname that appears among the other's aliases / previous names.
            c1 = cmp.containment(av, bv, "surname", "other_names")
            c2 = cmp.containment(bv, av, "surname", "other_names")
            alias = np.fmax(c1, c2)
            fore_in = np.fmax(
                cmp.containment(av, bv, "forename", "other_names"),
                cmp.containment(bv, av, "forename", "other_names"),
            )
            sur = np.where((alias >= 0.85) & ~(sur >= 0.9), 0.9, sur)
            fore = np.where((fore_in >= 0.85) & ~(fore >= 0.9), 0.9, fore)
        cols["forename"] = fore
        cols["surname"] = sur
    for s in schema.segments:
        if s.name in cols or s.name in _FOLDED:
            continue
        cols[s.name] = cmp.dice(av, bv, s.name, s.name)
    fields = list(cols)
    return fields, np.stack([cols[f] for f in fields], axis=1)


def levels(sim: NDArray[np.float64]) -> NDArray[np.int8]:
    """Comparison levels: 0 where missing, else 1 + number of edges at or below the value."""
    lv = np.searchsorted(LEVEL_EDGES, np.nan_to_num(sim, nan=0.0), side="right") + 1
    lv[np.isnan(sim)] = 0
    return lv.astype(np.int8)


@dataclass(frozen=True)
class MatchModel:
    """A Fellegi-Sunter model: m and u probabilities per field and level, and a prior."""

    schema_fingerprint: str
    field_names: tuple[str, ...]
    m: tuple[tuple[float, ...], ...]
    u: tuple[tuple[float, ...], ...]
    prior: float

    def weights(self) -> NDArray[np.float64]:
        """log2(m/u) per field and level; level 0 (missing) weighs nothing."""
        m = np.array(self.m)
        u = np.array(self.u)
        w: NDArray[np.float64] = np.log2(m / u)
        w[:, 0] = 0.0
        # No single disagreement may veto a match outright: training data never shows a
        # recorded sex that differs between a person's records, but police data does.
        return np.maximum(w, -MAX_PENALTY_BITS)

    def log_odds(self, lv: NDArray[np.int8]) -> NDArray[np.float64]:
        w = self.weights()
        total = np.full(lv.shape[0], np.log2(self.prior / (1.0 - self.prior)))
        for f in range(lv.shape[1]):
            total += w[f, lv[:, f]]
        return total

    def probability(self, lv: NDArray[np.int8]) -> NDArray[np.float64]:
        lo = np.clip(self.log_odds(lv), -60, 60)
        return 1.0 / (1.0 + np.power(2.0, -lo))

    def score(
        self,
        schema: LinkageSchema,
        a: NDArray[np.uint64],
        b: NDArray[np.uint64],
        i: NDArray[np.int64],
        j: NDArray[np.int64],
    ) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
        """Match probability and level pattern (pairs, fields) of pairs ``(a[i], b[j])``."""
        if schema.fingerprint != self.schema_fingerprint:
            raise SchemaError(["model was trained for another schema"])
        fields, sim = compare(schema, a, b, i, j)
        if tuple(fields) != self.field_names:
            raise SchemaError(["model fields do not match the schema"])
        lv = levels(sim)
        return self.probability(lv), lv

    @staticmethod
    def band(p: float) -> str | None:
        for name, lo in BANDS:
            if p >= lo:
                return name
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_fingerprint": self.schema_fingerprint,
            "field_names": list(self.field_names),
            "m": [list(r) for r in self.m],
            "u": [list(r) for r in self.u],
            "prior": self.prior,
            "level_edges": LEVEL_EDGES.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MatchModel:
        return cls(
            schema_fingerprint=str(d["schema_fingerprint"]),
            field_names=tuple(d["field_names"]),
            m=tuple(tuple(float(x) for x in r) for r in d["m"]),
            u=tuple(tuple(float(x) for x in r) for r in d["u"]),
            prior=float(d["prior"]),
        )

    @functools.cached_property
    def fingerprint(self) -> str:
        """Configuration hash: recorded with every audited search so it can be replayed."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _scored_fields(schema: LinkageSchema) -> list[str]:
    z = np.zeros((1, schema.total_words), dtype=np.uint64)
    idx = np.zeros(1, dtype=np.int64)
    fields, _ = compare(schema, z, z, idx, idx)
    return fields


def _initial(n_fields: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ramp = np.linspace(0.0, 1.0, N_LEVELS - 1)
    m = np.concatenate([[0.05], 0.02 + 3.0 * ramp**4])
    u = np.concatenate([[0.05], 1.5 * (1.0 - ramp) ** 2 + 0.01])
    m = np.tile(m / m.sum(), (n_fields, 1))
    u = np.tile(u / u.sum(), (n_fields, 1))
    return m, u


def model_path(schema: LinkageSchema) -> Path:
    """Where the shipped model for ``schema`` lives (package data)."""
    return Path(__file__).parent / "data" / "models" / f"{schema.fingerprint[:16]}.json"


def shipped_model(schema: LinkageSchema) -> MatchModel | None:
    """The model shipped for ``schema`` (fitted by EM on multi-force FEBRL sets, see
    ``scripts/train_default_model.py``), or None for a schema without one."""
    path = model_path(schema)
    if not path.exists():
        return None
    model = MatchModel.from_dict(json.loads(path.read_text()))
    return model if model.schema_fingerprint == schema.fingerprint else None


def default_model(schema: LinkageSchema) -> MatchModel:
    """The shipped model for ``schema``, or prior guesses for a schema without one."""
    shipped = shipped_model(schema)
    if shipped is not None:
        return shipped
    fields = _scored_fields(schema)
    m, u = _initial(len(fields))
    return MatchModel(
        schema.fingerprint,
        tuple(fields),
        tuple(map(tuple, m.tolist())),
        tuple(map(tuple, u.tolist())),
        0.01,
    )


def train_model(
    schema: LinkageSchema,
    lv: NDArray[np.int8],
    *,
    max_iter: int = 200,
    tol: float = 1e-6,
    prior_scale: float = 1.0,
) -> MatchModel:
    """Fit m, u and the prior by EM on the level patterns of candidate pairs (no labels).

    Identical patterns are collapsed with their counts first, so EM costs little even for
    millions of pairs. ``prior_scale`` rescales the fitted prior to the population the
    model will score (candidate pairs are far richer in matches than all pairs).
    """
    fields = _scored_fields(schema)
    if lv.ndim != 2 or lv.shape[1] != len(fields):
        raise SchemaError(["level patterns do not match the schema's scored fields"])
    n_f = lv.shape[1]
    pats, counts = np.unique(lv, axis=0, return_counts=True)
    cnt = counts.astype(np.float64)
    m, u = _initial(n_f)
    prior = 0.1
    onehot = [np.eye(N_LEVELS)[pats[:, f]] for f in range(n_f)]
    eps = 1e-6
    for _ in range(max_iter):
        lm = np.full(len(pats), np.log(prior))
        lu = np.full(len(pats), np.log(1.0 - prior))
        for f in range(n_f):
            lm += np.log(m[f, pats[:, f]])
            lu += np.log(u[f, pats[:, f]])
        g = 1.0 / (1.0 + np.exp(np.clip(lu - lm, -700, 700)))  # P(match | pattern)
        wm = g * cnt
        wu = (1.0 - g) * cnt
        new_m = np.stack([(onehot[f] * wm[:, None]).sum(0) for f in range(n_f)]) + eps
        new_u = np.stack([(onehot[f] * wu[:, None]).sum(0) for f in range(n_f)]) + eps
        new_m /= new_m.sum(1, keepdims=True)
        new_u /= new_u.sum(1, keepdims=True)
        new_prior = float(np.clip(wm.sum() / cnt.sum(), 1e-6, 1 - 1e-6))
        delta = max(np.abs(new_m - m).max(), np.abs(new_u - u).max(), abs(new_prior - prior))
        m, u, prior = new_m, new_u, new_prior
        if delta < tol:
            break
    # Missing is not evidence: equal m and u at level 0. Levels seen in too few pairs are
    # not evidence either: EM gives them an arbitrary m/u ratio from the smoothing alone
    # (a sex comparison that only hash collisions can put at a middle level once scored
    # +7.5 bits), so they are made neutral.
    seen = np.stack([(onehot[f] * cnt[:, None]).sum(0) for f in range(n_f)])
    rare = seen < max(MIN_LEVEL_PAIRS, 1e-4 * cnt.sum())
    rare[:, 0] = True
    mid = (m + u) / 2.0
    m = np.where(rare, mid, m)
    u = np.where(rare, mid, u)
    prior = float(np.clip(prior * prior_scale, 1e-9, 1 - 1e-9))
    return MatchModel(
        schema.fingerprint,
        tuple(fields),
        tuple(map(tuple, m.tolist())),
        tuple(map(tuple, u.tolist())),
        prior,
    )
