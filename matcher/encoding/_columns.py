"""Column-wise normalisation for :mod:`matcher.encoding`: rows read in bulk, values found once.

Text columns (the common case) are read by byte kernels: names, towns, addresses and
lists of names by :mod:`._textnorm`, postcodes by :mod:`._postcodes`, dates by
:mod:`._dates`. What a kernel cannot read (text that is not printable ASCII, rare date
layouts, values that are not text) takes the per-value normalisers of
:mod:`matcher.normalise`, each distinct value once. The distinct *normalised* values get
codes, and the rows point at them. Unusable values are reported for every row holding
them, by row and column, never with the value.

>>> import pandas as pd
>>> col = _normalise_column("name", pd.Series(["Ann", "ANN", None, "Bob"]))
>>> col.codes.tolist(), col.values
([0, 0, -1, 1], ['ann', 'bob'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from matcher import normalise as nz
from matcher.encoding import _dates as dt
from matcher.encoding import _fastblock as fb
from matcher.encoding import _postcodes as pcn
from matcher.encoding import _textnorm as tn
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
    values: Sequence[Any]  # the distinct values (dates and postcodes: lazy sequences)
    bad_rows: I64
    bad_reasons: list[str]
    ids: NDArray[np.uint64] | None = None  # cached value ids (see encoding._value_ids)
    # text values: their UTF-8 bytes end to end (one zero byte after) and where each
    # starts, as fe.utf8_blob gives them (name lists: entries joined by "\x1f")
    blob: tuple[NDArray[np.uint8], I64] | None = None


def _factorize(values: Any) -> tuple[I64, list[Any]]:
    """Codes of ``values`` (-1: missing) into their distinct values, in order of first
    appearance."""
    arr = np.asarray(values, dtype=object)
    if not _has_nul(arr):
        codes, uniq = pd.factorize(arr, use_na_sentinel=True)
        return np.asarray(codes, dtype=np.int64), list(uniq)
    # pandas' table of strings stops at a NUL ('a\x00b' would count as 'a'): a dict
    seen: dict[Any, int] = {}
    got = [-1 if v is None or v is pd.NA or v != v else seen.setdefault(v, len(seen)) for v in arr]
    return np.array(got, dtype=np.int64), list(seen)


def _has_nul(values: NDArray[Any]) -> bool:
    try:
        return "\x00" in "".join(values)
    except TypeError:  # missing values (or values that are not text) among the text
        return "\x00" in "".join(v for v in values if isinstance(v, str))


def _names(raw: Any) -> tuple[str, ...]:
    return tuple(nz.split_names(raw))


_NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "name": nz.normalise_name,
    "nickname": nz.normalise_name,
    "names": _names,
    "date": nz.parse_date,
    "sex": nz.normalise_sex,
    "postcode": nz.normalise_postcode,
    "town": nz.normalise_town,
    "address": nz.normalise_address,
}
_NORMED: dict[str, dict[str, Any]] = {}  # kind -> text -> its normalised value (not None)


def _normalised(kind: str, uniques: list[Any]) -> tuple[list[Any], list[str], bool]:
    """The normalised values of distinct raw ``uniques`` (text ones remembered per kind),
    the reason each unusable one is (``""``: usable; one more for missing), and whether
    there was one."""
    cache = _NORMED.setdefault(kind, {})
    normed = [cache.get(v) if type(v) is str else None for v in uniques]
    todo = [i for i, v in enumerate(normed) if v is None]
    reasons = [""] * (len(uniques) + 1)
    bad_any = _fill(_NORMALISERS[kind], uniques, normed, todo, reasons)
    for i in todo:
        if normed[i] is not None and type(uniques[i]) is str and len(cache) < _CACHE_LIMIT:
            cache[uniques[i]] = normed[i]
    return normed, reasons, bad_any


def _bad(rows: I64, codes: I64, reasons: list[str]) -> tuple[I64, list[str]]:
    """The ``rows`` whose value (``codes`` into ``reasons``) is unusable, and why."""
    bad = np.array([bool(r) for r in reasons], dtype=np.bool_)
    hit = np.flatnonzero(bad[codes])
    return rows[hit].astype(np.int64), [reasons[c] for c in codes[hit].tolist()]


_NONE = np.zeros(0, dtype=np.int64)


def _date_column(series: pd.Series) -> _Column:
    """:func:`_normalise_column` for dates: text read by the byte kernel (:mod:`._dates`),
    what it cannot read (and values that are not text) by
    :func:`matcher.normalise.parse_date`, each distinct value once; distinct dates are
    found on ``yyyymmdd`` keys."""
    arr = _arrow_text(series)
    if arr is not None:
        ok, ymd = dt.read_dates(arr)
        key = ymd @ np.array([10_000, 100, 1], dtype=np.int64)
        key[~ok] = 0
        left = np.flatnonzero(~ok)
        codes, uniques = _factorize(_values_at(arr, left))
    else:  # not all text: every distinct value by the parser
        key = np.zeros(len(series), dtype=np.int64)
        left = np.arange(len(series), dtype=np.int64)
        codes, uniques = _factorize(series.to_numpy())
    bad_rows, why = _NONE, list[str]()
    if len(left):
        parsed, reasons, bad_any = _normalised("date", uniques)
        u_key = np.array([0 if p is None else p[0] * 10_000 + p[1] * 100 + p[2] for p in parsed])
        key[left] = np.append(u_key, 0).astype(np.int64)[codes]
        if bad_any:
            bad_rows, why = _bad(left, codes, reasons)
    present = np.flatnonzero(key)
    out = np.full(len(key), -1, dtype=np.int64)
    inv, dates = pd.factorize(key[present])
    out[present] = inv
    ymd = np.stack([dates // 10_000, dates // 100 % 100, dates % 100], axis=1).astype(np.int64)
    ids = np.append(fb.date_ids(ymd.reshape(-1, 3)), np.uint64(0))
    return _Column(out, dt.Dates(ymd.reshape(-1, 3)), bad_rows, why, ids=ids)


def _arrow_text(series: pd.Series) -> pa.Array | None:
    """The column as an Arrow string array (None: it is not all text and missing values,
    or not UTF-8). An Arrow-backed column (as :func:`matcher.cli.link.read_table` reads
    files) is taken as it is."""
    values = series.array
    if hasattr(values, "__arrow_array__") and not isinstance(values, pd.Categorical):
        try:
            arr = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError):
            return None
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
        ok = pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        return arr if ok else None
    raw = series.to_numpy()
    if raw.dtype != object:
        return None
    try:  # (UTF-8 bytes among the text are read as text)
        return pa.array(raw, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):  # numbers among it, or not UTF-8
        return None


def _values_at(arr: pa.Array, rows: I64) -> NDArray[Any]:
    """The column's values at ``rows`` (None where missing), as objects."""
    out = np.empty(len(rows), dtype=object)
    out[:] = arr.take(pa.array(rows, type=pa.int64())).to_pylist()
    return out


def _postcode_column(series: pd.Series) -> _Column | None:
    """:func:`_normalise_column` for postcodes: full UK postcodes read by the byte kernel
    (:mod:`._postcodes`), the other rows' distinct values by the normaliser."""
    arr = _arrow_text(series)
    if arr is None:
        return None
    rows, outward, area = pcn.read_postcodes(arr)
    other = np.flatnonzero(rows.status == tn.OTHER)
    parsed: dict[str, nz.Postcode] = {}
    bad_rows, why = _NONE, list[str]()
    if len(other):
        codes, uniques = _factorize(_values_at(arr, other))
        normed, reasons, bad_any = _normalised("postcode", uniques)
        parsed = {p.full: p for p in normed if p}
        texts = [p.full.encode() if p else b"" for p in normed] + [b""]
        rows.set_rows(other, [texts[c] for c in codes.tolist()])
        if bad_any:
            bad_rows, why = _bad(other, codes, reasons)
    found = tn.distinct(rows)
    first = found.first
    values = pcn.postcode_values(
        found.texts(), rows.status[first] == tn.OK, outward[first], area[first], parsed
    )  # (a text the normaliser read, an outward code or a foreign one, is its postcode)
    return _Column(found.codes, values, bad_rows, why, **_text_of(found))


def _text_of(found: tn.Distinct) -> dict[str, Any]:
    """A column's ``blob`` and ``ids`` from its distinct values' bytes."""
    ids = np.append(fb.hash_ids(found.hashes), np.uint64(0))  # 0: missing
    return {"blob": (found.blob, found.starts), "ids": ids}


def _text_column(kind: str, series: pd.Series) -> _Column | None:
    """:func:`_normalise_column` for a column of text (None: not all text or missing).

    Every printable-ASCII row is normalised by the byte kernel (:mod:`._textnorm`), the
    other rows by :func:`_other_rows`; the distinct results are found on their bytes.
    """
    arr = _arrow_text(series)
    if arr is None:
        return None
    rows = tn.normalise_rows(kind, arr)
    other = np.flatnonzero(rows.status == tn.OTHER)
    bad_rows, why = _NONE, list[str]()
    if len(other):
        bad_rows, why = _other_rows(kind, rows, _values_at(arr, other), other)
    found = tn.distinct(rows)
    values: list[Any] = found.texts()
    if kind == "names":
        values = [tuple(v.split(tn.NAMES_SEPARATOR)) for v in values]
    return _Column(found.codes, values, bad_rows, why, **_text_of(found))


def _other_rows(kind: str, rows: tn.Rows, raw: NDArray[Any], other: I64) -> tuple[I64, list[str]]:
    """Normalise the rows ``other`` the kernel left (not printable ASCII; ``raw``: their
    values), each distinct value once.

    Names, towns and addresses are folded here and the folded text read by the kernel
    (the normalisers test the raw value for missing, then work on its folded form); name
    lists, and values whose folded form the kernel cannot read, take the normalisers.
    Returns the rows of unusable values and why.
    """
    codes, uniques = _factorize(raw)
    texts: list[bytes | None] = [None] * len(uniques)
    if kind != "names":
        texts = [b"" if nz.is_missing(v) else None for v in uniques]
        live = [i for i, t in enumerate(texts) if t is None]
        folded = tn.normalise_rows(
            kind, pa.array([nz.fold(uniques[i]) for i in live], pa.large_string()), folded=True
        )
        for i, status, a, b in zip(
            live, folded.status.tolist(), folded.starts.tolist(), folded.ends.tolist(), strict=True
        ):
            if status != tn.OTHER:
                texts[i] = folded.out[a:b].tobytes()
    todo = [i for i, t in enumerate(texts) if t is None]
    normed, sub_reasons, bad_any = _normalised(kind, [uniques[i] for i in todo])
    reasons = [""] * (len(uniques) + 1)
    for i, v, why in zip(todo, normed, sub_reasons, strict=False):
        texts[i] = (tn.NAMES_SEPARATOR.join(v) if kind == "names" else v or "").encode()
        reasons[i] = why
    rows.set_rows(other, [texts[c] or b"" for c in codes.tolist()])
    return _bad(other, codes, reasons) if bad_any else (_NONE, [])


def _normalise_column(kind: str, series: pd.Series) -> _Column:
    if kind == "date":
        return _date_column(series)
    col = None
    if kind in tn.KINDS:
        col = _text_column(kind, series)
    elif kind == "postcode":
        col = _postcode_column(series)
    if col is not None:
        return col
    # sex codes, and columns that are not all text: each distinct value by its normaliser
    raw_codes, uniques = _factorize(series.to_numpy())
    normed, reasons, bad_any = _normalised(kind, uniques)
    if kind == "postcode":  # a postcode is its text (and UK or not): find those
        ids, values = _distinct_by(normed, [(p.full, p.uk) if p else None for p in normed])
    else:
        ids, values = _distinct(normed, by_hash=kind != "names")
    codes = ids[raw_codes]
    if not bad_any:
        return _Column(codes, values, _NONE, [])
    return _Column(codes, values, *_bad(np.arange(len(codes)), raw_codes, reasons))


def _fill(
    norm: Callable[[Any], Any],
    uniques: list[Any],
    normed: list[Any],
    todo: Any,
    reasons: list[str],
) -> bool:
    """Normalise ``uniques[i]`` into ``normed[i]`` for ``i`` in ``todo``; note the
    reasons of unusable values (as None). True if there was one."""
    try:  # the common case, no unusable value: one comprehension
        for i, v in zip(todo, [norm(uniques[i]) for i in todo], strict=True):
            normed[i] = v
        return False
    except nz.UnparseableValue:
        for i in todo:
            try:
                normed[i] = norm(uniques[i])
            except nz.UnparseableValue as exc:
                normed[i] = None
                reasons[i] = str(exc) or "unparseable value"
        return True


def _distinct_by(normed: list[Any], keys: list[Any]) -> tuple[I64, list[Any]]:
    """:func:`_distinct` of values equal exactly when their ``keys`` are equal."""
    seen: dict[Any, int] = {}
    first: list[Any] = []
    ids = []
    for v, k in zip(normed, keys, strict=True):
        if not v:
            ids.append(-1)
            continue
        i = seen.setdefault(k, len(seen))
        if i == len(first):
            first.append(v)
        ids.append(i)
    return np.array([*ids, -1], dtype=np.int64), first


def _distinct(normed: list[Any], *, by_hash: bool) -> tuple[I64, list[Any]]:
    """Ids (-1: missing or empty; one more -1 at the end, for NA) and the distinct values,
    in order of first appearance. ``by_hash``: the values are not sequences (strings,
    postcodes, None), so pandas can find them."""
    if by_hash and normed:
        arr = np.empty(len(normed), dtype=object)
        arr[:] = normed
        got, uniq = pd.factorize(arr, use_na_sentinel=True)
        values = list(uniq)
        if all(values):
            return np.append(got, -1).astype(np.int64), values
    seen: dict[Any, int] = {}
    ids = np.array([seen.setdefault(v, len(seen)) if v else -1 for v in normed] + [-1])
    return ids.astype(np.int64), list(seen)


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


def _combine(parts: list[_Column], n: int) -> tuple[I64, Sequence[tuple[str, ...]]]:
    """Codes and values of a multi-column names field: the columns' tuples concatenated."""
    if not parts:
        return np.full(n, -1, dtype=np.int64), []
    if len(parts) == 1:
        return parts[0].codes, parts[0].values
    key = np.zeros(n, dtype=np.int64)
    for p in parts:
        key = key * (len(p.values) + 1) + (p.codes + 1)
    inv, uniq = pd.factorize(key)
    values: list[tuple[str, ...]] = []
    for k in uniq.tolist():
        got: tuple[str, ...] = ()
        for p in reversed(parts):
            k, c = divmod(k, len(p.values) + 1)
            got = (p.values[c - 1] if c else ()) + got
        values.append(got)
    ids = np.array([i if v else -1 for i, v in enumerate(values)] + [-1], dtype=np.int64)
    return ids[inv], values


def _combined(
    cols: dict[str, _Column], names: tuple[str, ...], n: int, memo: dict[Any, Any] | None
) -> tuple[I64, Sequence[tuple[str, ...]]]:
    """:func:`_combine` of the columns ``names`` present, remembered in ``memo``."""
    key = ("\x00combine", names)
    if memo is not None and key in memo:
        got: tuple[I64, Sequence[tuple[str, ...]]] = memo[key]
        return got
    got = _combine([cols[c] for c in names if c in cols], n)
    if memo is not None:
        memo[key] = got
    return got


def _field_column(
    spec: FieldSpec, cols: dict[str, _Column], n: int, memo: dict[Any, Any] | None = None
) -> tuple[I64, Sequence[Any]]:
    if spec.kind == "names":
        return _combined(cols, tuple(spec.columns), n, memo)
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
