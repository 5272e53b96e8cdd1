"""Column-wise normalisation for :mod:`matcher.encoding`: each distinct raw value once.

A column is factorised; each distinct raw value is normalised once (8-digit dates in
numpy, addresses from cached per-piece results); the distinct *normalised* values get
codes, and the rows point at them. Unusable values are reported for every row holding
them, by row and column, never with the value.

>>> import pandas as pd
>>> col = _normalise_column("name", pd.Series(["Ann", "ANN", None, "Bob"]))
>>> col.codes.tolist(), col.values
([0, 0, -1, 1], ['ann', 'bob'])
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from matcher import normalise as nz
from matcher.errors import InputError
from matcher.schema import FieldSpec, LinkageSchema

I64 = NDArray[np.int64]
_CACHE_LIMIT = 1_000_000
OTHER_NAME_COLUMNS = ("middle_names", "aliases")


@dataclass(frozen=True)
class FieldIssue:
    """A value that could not be used: its row (0-based data row) and column, never the value."""

    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.reason}"


@dataclass(frozen=True)
class NormalisedRecord:
    """One record after normalisation; every field may be missing."""

    forename: str | None = None
    surname: str | None = None
    other_names: tuple[str, ...] = ()
    date_of_birth: tuple[int, int, int] | None = None
    sex: str | None = None
    postcode: nz.Postcode | None = None
    address: str | None = None
    town: str | None = None


# --------------------------------------------------------------------------- normalising
@dataclass
class _Column:
    """One input column, normalised: per-row codes into its distinct normalised values."""

    codes: I64  # -1: missing or unusable
    values: list[Any]
    bad_rows: I64
    bad_reasons: list[str]


def _names(raw: Any) -> tuple[str, ...]:
    return tuple(nz.split_names(raw))


def _normaliser(kind: str) -> Callable[[Any], Any]:
    """The normaliser of a field kind (addresses: the cached per-piece equivalent)."""
    table: dict[str, Callable[[Any], Any]] = {
        "name": nz.normalise_name,
        "nickname": nz.normalise_name,
        "names": _names,
        "date": nz.parse_date,
        "sex": nz.normalise_sex,
        "postcode": nz.normalise_postcode,
        "town": nz.normalise_town,
    }
    return table.get(kind, _fast_address)


_ADDR_WORDS = re.compile(r"[^a-z0-9]+")
_ADDR_TOKENS: dict[str, str] = {}
_CONTEXT = "\x00"  # a piece whose words depend on its neighbours
_ALNUM = re.compile(r"[^\W_]")


def _address_token(tok: str) -> str:
    """Normalised words of one whitespace-free piece of an address ("" for none).

    An address's words are the concatenation of its pieces' words unless a piece holds
    "st" (street or saint depends on the neighbours) or "&", is not ASCII (folding), or
    is a missing-value placeholder ("n/a"), which is a word inside a longer address: for
    those the result is ``_CONTEXT`` and the whole address takes the normaliser.
    """
    out = _ADDR_TOKENS.get(tok)
    if out is not None:
        return out
    low = tok.lower()
    if not low.isascii() or "&" in low or "st" in _ADDR_WORDS.split(low):
        out = _CONTEXT
    elif nz.is_missing(tok):
        out = _CONTEXT if _ALNUM.search(tok) else ""
    else:
        out = nz.normalise_address(tok) or ""
    if len(_ADDR_TOKENS) < _CACHE_LIMIT:
        _ADDR_TOKENS[tok] = out
    return out


def _fast_address(raw: Any) -> str | None:
    """:func:`matcher.normalise.normalise_address`, from cached per-piece results."""
    if type(raw) is not str or (len(raw) <= 16 and nz.is_missing(raw)):
        return nz.normalise_address(raw)  # placeholders ("not known") are whole values
    toks = raw.split()
    try:
        out = " ".join(map(_ADDR_TOKENS.__getitem__, toks))
    except KeyError:
        out = " ".join(map(_address_token, toks))
    if _CONTEXT in out:
        return nz.normalise_address(raw)
    if "  " in out or out[:1] == " " or out[-1:] == " ":  # pieces without words
        out = " ".join(out.split())
    return out or None


def _fast_addresses(uniques: list[Any], out: list[Any]) -> None:
    """:func:`_fast_address` for many strings: pieces split, looked up and joined in Arrow.

    Only the distinct pieces are looked up in Python; addresses that need the normaliser
    (a context-dependent piece, a short value that may be a placeholder) are left ``...``.
    """
    idx = [i for i, v in enumerate(uniques) if type(v) is str]
    if not idx:
        return
    arr = pa.array([uniques[i] for i in idx], type=pa.string())
    lists = pc.utf8_split_whitespace(arr)
    pieces = pc.dictionary_encode(pc.list_flatten(lists))
    words = pa.array([_address_token(t) for t in pieces.dictionary.to_pylist()], pa.string())
    rebuilt = pa.ListArray.from_arrays(lists.offsets, words.take(pieces.indices))
    joined = pc.binary_join(rebuilt, " ")
    odd = pc.or_(
        pc.match_substring(joined, _CONTEXT),
        pc.or_(
            pc.less_equal(pc.utf8_length(arr), 16), pc.match_substring_regex(joined, "^ | $|  |^$")
        ),
    )
    for i, text, slow in zip(idx, joined.to_pylist(), odd.to_pylist(), strict=True):
        if not slow:
            out[i] = text


def _num(c: NDArray[np.int64], lo: int, hi: int) -> NDArray[np.int64]:
    out = np.zeros(len(c), dtype=np.int64)
    for j in range(lo, hi):
        out = out * 10 + c[:, j] - 48
    return out


def _fast_dates(uniques: list[Any], out: list[Any]) -> None:
    """Parse the common date layouts in numpy; the rest are left as ``...``.

    ``yyyymmdd``, ``yyyy-mm-dd`` and ``dd-mm-yyyy`` (``-``, ``/`` or ``.``), read as
    :func:`matcher.normalise.parse_date` reads them (a month over 12 with a day up to 12
    is taken as swapped). Out-of-range values are left to the parser, which reports them.
    """
    idx = [
        i
        for i, v in enumerate(uniques)
        if type(v) is str and len(v) in (8, 10) and v.isascii() and v[-1].isdigit()
    ]
    if not idx:
        return
    codes = np.array([uniques[i] for i in idx], dtype="U10").view(np.uint32).reshape(-1, 10)
    c: NDArray[np.int64] = codes.astype(np.int64)
    digit = (c >= 48) & (c <= 57)
    sep = (c == ord("-")) | (c == ord("/")) | (c == ord("."))
    n8 = digit[:, :8].all(1) & (c[:, 8] == 0)
    ymd = digit[:, [0, 1, 2, 3, 5, 6, 8, 9]].all(1) & sep[:, 4] & (c[:, 4] == c[:, 7])
    dmy = digit[:, [0, 1, 3, 4, 6, 7, 8, 9]].all(1) & sep[:, 2] & (c[:, 2] == c[:, 5])
    y = np.select([n8, ymd, dmy], [_num(c, 0, 4), _num(c, 0, 4), _num(c, 6, 10)], 0)
    m = np.select([n8, ymd, dmy], [_num(c, 4, 6), _num(c, 5, 7), _num(c, 3, 5)], 0)
    d = np.select([n8, ymd, dmy], [_num(c, 6, 8), _num(c, 8, 10), _num(c, 0, 2)], 0)
    swap = (ymd | dmy) & (m > 12) & (d <= 12)
    m, d = np.where(swap, d, m), np.where(swap, m, d)
    ok = (n8 | ymd | dmy) & (y >= 1850) & (y <= 2100) & (m >= 1) & (m <= 12)
    ok &= (d >= 1) & (d <= 31)
    for i, good, yy, mm, dd in zip(
        idx, ok.tolist(), y.tolist(), m.tolist(), d.tolist(), strict=True
    ):
        if good:
            out[i] = (yy, mm, dd)


def _normalise_column(kind: str, series: pd.Series) -> _Column:
    raw_codes, uniq = pd.factorize(series, use_na_sentinel=True)
    uniques = list(uniq)
    norm = _normaliser(kind)
    reasons: list[str] = [""] * (len(uniques) + 1)  # the last one: NA (code -1)
    normed: list[Any] = [...] * len(uniques)
    if kind in ("date", "address"):
        (_fast_dates if kind == "date" else _fast_addresses)(uniques, normed)
        todo = [i for i, v in enumerate(normed) if v is ...]
    else:
        todo = list(range(len(uniques)))
    try:  # the common case, no unusable value: one comprehension
        for i, v in zip(todo, [norm(uniques[i]) for i in todo], strict=True):
            normed[i] = v
    except nz.UnparseableValue:
        for i in todo:
            try:
                normed[i] = norm(uniques[i])
            except nz.UnparseableValue as exc:
                normed[i] = None
                reasons[i] = str(exc) or "unparseable value"
    seen: dict[Any, int] = {}
    ids = np.array([seen.setdefault(v, len(seen)) if v else -1 for v in normed] + [-1])
    codes = ids.astype(np.int64)[raw_codes]
    bad = np.array([bool(r) for r in reasons], dtype=np.bool_)
    bad_rows = np.flatnonzero(bad[raw_codes]).astype(np.int64)
    return _Column(codes, list(seen), bad_rows, [reasons[c] for c in raw_codes[bad_rows]])


def _normalise_columns(
    df: pd.DataFrame, schema: LinkageSchema, offset: int = 0
) -> tuple[dict[str, _Column], list[FieldIssue]]:
    missing = [c for c in schema.required_columns if c not in df.columns]
    if missing:
        raise InputError(
            f"required column(s) missing: {', '.join(missing)}", field=",".join(missing)
        )
    kinds = {c: f.kind for f in schema.fields for c in f.columns}
    cols = {c: _normalise_column(kinds[c], df[c]) for c in schema.input_columns if c in df}
    found = [
        (int(r) + offset, j, c, why)
        for j, (c, col) in enumerate(cols.items())
        for r, why in zip(col.bad_rows.tolist(), col.bad_reasons, strict=True)
    ]
    found.sort(key=lambda t: (t[0], t[1]))  # row by row, columns in schema order
    return cols, [FieldIssue(r, c, why) for r, _, c, why in found]


def _combine(parts: list[_Column], n: int) -> tuple[I64, list[tuple[str, ...]]]:
    """Codes and values of a multi-column names field: the columns' tuples concatenated."""
    if not parts:
        return np.full(n, -1, dtype=np.int64), []
    if len(parts) == 1:
        return parts[0].codes, parts[0].values
    key = np.zeros(n, dtype=np.int64)
    for p in parts:
        key = key * (len(p.values) + 1) + (p.codes + 1)
    uniq, inv = np.unique(key, return_inverse=True)
    values: list[tuple[str, ...]] = []
    for k in uniq.tolist():
        got: tuple[str, ...] = ()
        for p in reversed(parts):
            k, c = divmod(k, len(p.values) + 1)
            got = (p.values[c - 1] if c else ()) + got
        values.append(got)
    ids = np.array([i if v else -1 for i, v in enumerate(values)] + [-1], dtype=np.int64)
    return ids[inv.reshape(-1)], values


def _field_column(spec: FieldSpec, cols: dict[str, _Column], n: int) -> tuple[I64, list[Any]]:
    if spec.kind == "names":
        return _combine([cols[c] for c in spec.columns if c in cols], n)
    col = cols.get(spec.columns[0])
    return (col.codes, col.values) if col else (np.full(n, -1, dtype=np.int64), [])


def normalise_frame(
    df: pd.DataFrame, schema: LinkageSchema
) -> tuple[list[NormalisedRecord], list[FieldIssue]]:
    """Normalise every row of ``df`` for ``schema``; report unusable values by row and column.

    >>> from matcher.schema import default_schema
    >>> recs, issues = normalise_frame(pd.DataFrame({"forename": ["Bill"], "surname": ["Ng"],
    ...     "date_of_birth": ["31st of Smarch"]}), default_schema())
    >>> recs[0].forename, [str(i) for i in issues]
    ('bill', ["row 0, column 'date_of_birth': unrecognised date format"])
    """
    cols, issues = _normalise_columns(df, schema)
    n = len(df)

    def get(name: str) -> list[Any]:
        col = cols.get(name)
        if col is None:
            return [None] * n
        vals = [*col.values, None]
        return [vals[c] for c in col.codes.tolist()]

    oc, ov = _combine([cols[c] for c in OTHER_NAME_COLUMNS if c in cols], n)
    others = [ov[c] if c >= 0 else () for c in oc.tolist()]
    fields = ("forename", "surname", "date_of_birth", "sex", "postcode", "address", "town")
    got = {f: get(f) for f in fields}
    out = [
        NormalisedRecord(other_names=others[i], **{f: got[f][i] for f in fields}) for i in range(n)
    ]
    return out, issues
