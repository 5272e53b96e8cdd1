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

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from matcher import _fastencode as fe
from matcher import normalise as nz
from matcher.encoding import _fastnorm as fn
from matcher.errors import InputError
from matcher.schema import FieldSpec, LinkageSchema

I64 = NDArray[np.int64]
# pandas' table of strings (what pd.factorize uses for text, after checking every value)
_StringHashTable: Any = importlib.import_module("pandas._libs.hashtable").StringHashTable
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
    ymd: I64 | None = None  # dates: the values as a (len(values), 3) array
    ids: NDArray[np.uint64] | None = None  # cached value ids (see encoding._value_ids)


def _factorize(series: pd.Series) -> tuple[I64, Any]:
    """``pd.factorize(series)`` (-1 for missing values), faster for a column of text."""
    values = series.to_numpy()
    if (
        values.dtype == object
        and pd.api.types.infer_dtype(values, skipna=True) == "string"
        and not _has_nul(values)
    ):
        try:  # text and missing values only: pandas' string table, without its own check
            uniq, codes = _StringHashTable(len(values)).factorize(values, na_sentinel=-1)
            return np.asarray(codes, dtype=np.int64), uniq
        except (TypeError, ValueError):  # pragma: no cover - a pandas without it
            pass
    codes, uniq = pd.factorize(series, use_na_sentinel=True)  # as pandas reads other types
    return np.asarray(codes, dtype=np.int64), uniq


def _has_nul(values: NDArray[Any]) -> bool:
    """pandas' string table stops at a NUL character ('a\\x00b' would count as 'a')."""
    try:
        return "\x00" in "".join(values)
    except TypeError:  # missing values among the text
        return "\x00" in "".join(v for v in values if isinstance(v, str))


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


# kind -> column-wise normaliser of many strings (``...`` where it cannot decide), used
# where at least _FAST_MIN values are not cached (Arrow's per-call cost is paid once)
_FAST: dict[str, Callable[[list[Any]], list[Any]]] = {
    "name": fn.fast_names,
    "nickname": fn.fast_names,
    "town": fn.fast_towns,
    "names": fn.fast_name_lists,
    "postcode": fn.fast_postcodes,
}
_FAST_MIN = 32
_NORMED: dict[str, dict[str, Any]] = {}  # kind -> text -> its normalised value (not None)
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
    if type(raw) is not str or (
        (len(raw) <= 16 or not raw.isprintable()) and nz.is_missing(raw)
    ):  # placeholders ("not known", also padded with other whitespace) are whole values
        return nz.normalise_address(raw)
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
    try:
        arr = pa.array([uniques[i] for i in idx], type=pa.string())
    except (pa.ArrowException, ValueError):  # not UTF-8 (a lone surrogate): the normaliser
        return
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


def _address_column(series: pd.Series) -> _Column | None:
    """:func:`_normalise_column` for addresses, in Arrow (None: not all strings).

    As :func:`_fast_addresses`, and the distinct normalised addresses are found in Arrow
    too: only the addresses that need the normaliser become Python strings on the way.
    """
    raw_values = series.to_numpy()
    if pd.api.types.infer_dtype(raw_values, skipna=True) != "string":
        return None  # not all text (or no text): the generic path
    try:
        column = pa.array(raw_values, type=pa.string(), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    dictionary = pc.dictionary_encode(column)
    raw_codes = pc.fill_null(dictionary.indices, -1).to_numpy().astype(np.int64)
    arr = dictionary.dictionary
    n_u = len(arr)
    if n_u == 0:
        return None
    # ASCII whitespace: a piece holding other whitespace is not ASCII, so its address
    # takes the normaliser, as one split on any whitespace would. Pieces are looked up in
    # lower case (a piece's words do not depend on its case; non-ASCII ones are kept).
    lists = pc.ascii_split_whitespace(pc.ascii_lower(arr))
    pieces = pc.dictionary_encode(pc.list_flatten(lists))
    texts = pieces.dictionary.to_pylist()
    words_py = list(map(_ADDR_TOKENS.get, texts))
    if None in words_py:
        # the pieces not cached: in Arrow where it decides, else one by one (and cached)
        todo = [i for i, w in enumerate(words_py) if w is None]
        new = [texts[i] for i in todo]
        fast = fn.fast_address_pieces(new) if len(todo) >= _FAST_MIN else [...] * len(new)
        found = [_address_token(t) if w is ... else w for w, t in zip(fast, new, strict=True)]
        for i, w in zip(todo, found, strict=True):
            words_py[i] = w
        if len(_ADDR_TOKENS) + len(new) <= _CACHE_LIMIT:
            _ADDR_TOKENS.update(zip(new, found, strict=True))
    words = pa.array(words_py, pa.string())
    # pieces without words are left out (their addresses' spaces tidied so)
    piece_words = words.take(pieces.indices)
    piece_keep = pc.not_equal(piece_words, "").to_numpy(zero_copy_only=False)
    offsets = fn.list_offsets(lists)
    parent = np.repeat(np.arange(n_u, dtype=np.int64), np.diff(offsets))
    kept_offsets = np.zeros(n_u + 1, dtype=np.int32)
    np.cumsum(np.bincount(parent[piece_keep], minlength=n_u), out=kept_offsets[1:])
    rebuilt = pa.ListArray.from_arrays(
        pa.array(kept_offsets), piece_words.filter(pa.array(piece_keep, type=pa.bool_()))
    )
    joined = pc.binary_join(rebuilt, " ")
    joined = pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), joined)
    # odd: the address needs the normaliser (a context-dependent piece), is a placeholder,
    # or is not printable ASCII (whitespace other than spaces: "\tnot known" is missing)
    flag = pc.equal(words, _CONTEXT).to_numpy(zero_copy_only=False)
    piece_flag = flag[pieces.indices.to_numpy()]
    odd_np = np.zeros(n_u, dtype=np.bool_)
    odd_np[parent[piece_flag]] = True
    printable, placeholder, _ = fn.flags(arr)
    odd_np |= ~printable | placeholder
    odd = pa.array(odd_np, type=pa.bool_())
    todo = np.flatnonzero(odd_np).tolist()
    reasons: list[str] = [""] * (n_u + 1)
    slow: list[Any] = [...] * n_u
    uniq: list[Any] = [...] * n_u
    cache = _NORMED.setdefault("address", {})
    left = []
    for i, text in zip(todo, arr.take(pa.array(todo, type=pa.int64())).to_pylist(), strict=True):
        uniq[i] = text
        got = cache.get(text)
        if got is None:
            left.append(i)
        else:
            slow[i] = got or None  # "": a missing address (a placeholder)
    bad_any = _fill(_fast_address, uniq, slow, left, reasons)
    if len(cache) < _CACHE_LIMIT:
        for i in left:
            if not reasons[i]:  # unusable values are not remembered: they are reported
                cache[uniq[i]] = slow[i] or ""
    full = np.full(n_u, None, dtype=object)
    for i in todo:
        full[i] = slow[i] or None
    final = pc.if_else(odd, pa.array(full, type=pa.string()), joined)
    enc = pc.dictionary_encode(final)
    values = enc.dictionary.to_pylist()
    if not all(values):
        return None
    ids = np.append(pc.fill_null(enc.indices, -1).to_numpy(), -1).astype(np.int64)
    return _coded(ids, raw_codes, values, reasons, bad_any=bad_any)


def _coded(
    ids: I64, raw_codes: I64, values: list[Any], reasons: list[str], *, bad_any: bool
) -> _Column:
    """The column whose rows hold raw values ``raw_codes`` (-1: missing), the distinct raw
    value ``i`` being normalised value ``ids[i]`` and unusable where ``reasons[i]``."""
    codes = ids[raw_codes]
    if not bad_any:
        return _Column(codes, values, np.zeros(0, dtype=np.int64), [])
    bad = np.array([bool(r) for r in reasons], dtype=np.bool_)
    bad_rows = np.flatnonzero(bad[raw_codes]).astype(np.int64)
    return _Column(codes, values, bad_rows, [reasons[c] for c in raw_codes[bad_rows]])


def _num(c: NDArray[np.int64], lo: int, hi: int) -> NDArray[np.int64]:
    out = np.zeros(len(c), dtype=np.int64)
    for j in range(lo, hi):
        out = out * 10 + c[:, j] - 48
    return out


def _date_parts(
    c: NDArray[np.int64],
) -> tuple[NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """``ok, y, m, d`` of code points ``c`` (n, 10 or more; 0 past the end)."""
    if c.shape[1] > 10:
        short = c[:, 10] == 0
        c = c[:, :10]
    else:
        short = np.ones(len(c), dtype=np.bool_)
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
    ok = short & (n8 | ymd | dmy) & (y >= 1850) & (y <= 2100) & (m >= 1) & (m <= 12)
    ok &= (d >= 1) & (d <= 31)
    return ok, y, m, d


def _date_column(series: pd.Series) -> _Column:
    """:func:`_normalise_column` for dates: the common layouts parsed in numpy, the rest
    by :func:`matcher.normalise.parse_date`; distinct dates found on ``yyyymmdd`` keys."""
    raw = series.to_numpy()
    if raw.dtype == object and len(raw) and pd.api.types.infer_dtype(raw, skipna=True) == "string":
        return _text_date_column(raw)
    raw_codes, uniq = _factorize(series)
    n_u = len(uniq)
    if pd.api.types.infer_dtype(uniq, skipna=False) == "string":
        text = np.asarray(uniq).astype("U12")
    else:
        text = np.array([v if type(v) is str else "" for v in uniq], dtype="U12")
    if n_u:
        ok, parts = fe.parse_dates(text.view(np.uint32).reshape(n_u, 12), nz._MONTHS)
        y, m, d = parts[:, 0], parts[:, 1], parts[:, 2]
    else:
        ok = np.zeros(0, dtype=np.bool_)
        y = m = d = np.zeros(0, dtype=np.int64)
    key = np.where(ok, y * 10_000 + m * 100 + d, 0)
    reasons: list[str] = [""] * (n_u + 1)
    slow = np.flatnonzero(~ok).tolist()
    for i in slow:
        try:
            got = nz.parse_date(uniq[i])
        except nz.UnparseableValue as exc:
            got = None
            reasons[i] = str(exc) or "unparseable value"
        if got:
            key[i] = got[0] * 10_000 + got[1] * 100 + got[2]
    uk, inv = np.unique(np.append(key, 0), return_inverse=True)
    # uk[0] == 0 (missing) since a 0 was appended: distinct dates are uk[1:]
    ids = inv.reshape(-1).astype(np.int64) - 1
    codes = ids[raw_codes]
    dates = uk[1:]
    ymd = np.stack([dates // 10_000, dates // 100 % 100, dates % 100], axis=1)
    values = list(zip(*(ymd[:, j].tolist() for j in range(3)), strict=True)) if len(dates) else []
    if slow and any(reasons):
        bad = np.array([bool(r) for r in reasons], dtype=np.bool_)
        bad_rows = np.flatnonzero(bad[raw_codes]).astype(np.int64)
        why = [reasons[c] for c in raw_codes[bad_rows]]
    else:
        bad_rows, why = np.zeros(0, dtype=np.int64), []
    return _Column(codes, values, bad_rows, why, ymd=ymd.astype(np.int64))


def _text_date_column(raw: NDArray[Any]) -> _Column:
    """:func:`_date_column` of text (and missing values): every row read by the kernel,
    only the rows it cannot read factorised and given to the parser."""
    n = len(raw)
    text = raw.astype("U12")  # longer values are cut, and then not read (12 characters)
    ok, parts = fe.parse_dates(text.view(np.uint32).reshape(n, 12), nz._MONTHS)
    key = parts @ np.array([10_000, 100, 1], dtype=np.int64)
    key[~ok] = 0
    slow_rows = np.flatnonzero(~ok)
    bad_rows, why = np.zeros(0, dtype=np.int64), []
    if len(slow_rows):
        s_codes, s_uniq = pd.factorize(raw[slow_rows], use_na_sentinel=True)
        s_key = np.zeros(len(s_uniq) + 1, dtype=np.int64)  # the last one: NA
        reasons: list[str] = [""] * (len(s_uniq) + 1)
        for i, value in enumerate(s_uniq.tolist()):
            try:
                got = nz.parse_date(value)
            except nz.UnparseableValue as exc:
                got = None
                reasons[i] = str(exc) or "unparseable value"
            if got:
                s_key[i] = got[0] * 10_000 + got[1] * 100 + got[2]
        key[slow_rows] = s_key[s_codes]
        if any(reasons):
            bad = np.array([bool(r) for r in reasons], dtype=np.bool_)
            hit = np.flatnonzero(bad[s_codes])
            bad_rows = slow_rows[hit].astype(np.int64)
            why = [reasons[c] for c in s_codes[hit].tolist()]
    present = np.flatnonzero(key)
    codes = np.full(n, -1, dtype=np.int64)
    inv, dates = pd.factorize(key[present])
    codes[present] = inv
    ymd = np.stack([dates // 10_000, dates // 100 % 100, dates % 100], axis=1).astype(np.int64)
    values = list(zip(*(ymd[:, j].tolist() for j in range(3)), strict=True)) if len(dates) else []
    return _Column(codes, values, bad_rows, why, ymd=ymd.reshape(-1, 3))


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
    codes = np.array([uniques[i] for i in idx], dtype="U10")
    ok, y, m, d = _date_parts(codes.view(np.uint32).reshape(-1, 10).astype(np.int64))
    for i, good, yy, mm, dd in zip(
        idx, ok.tolist(), y.tolist(), m.tolist(), d.tolist(), strict=True
    ):
        if good:
            out[i] = (yy, mm, dd)


def _normalise_column(kind: str, series: pd.Series) -> _Column:
    if kind == "date":
        return _date_column(series)
    if kind == "address":
        col = _address_column(series)
        if col is not None:
            return col
    raw_codes, uniq = _factorize(series)
    uniques = list(uniq)
    norm = _normaliser(kind)
    reasons: list[str] = [""] * (len(uniques) + 1)  # the last one: NA (code -1)
    if kind == "address":
        normed: list[Any] = [...] * len(uniques)
        _fast_addresses(uniques, normed)
        todo = [i for i, v in enumerate(normed) if v is ...]
        bad_any = _fill(norm, uniques, normed, todo, reasons)
    elif pd.api.types.infer_dtype(uniq, skipna=False) == "string":
        # all text: results are remembered per kind (as the normalisers' own caches do)
        cache = _NORMED.setdefault(kind, {})
        normed = list(map(cache.get, uniques))
        todo = [i for i, v in enumerate(normed) if v is None]
        fast = _FAST.get(kind)
        if fast is not None and len(todo) >= _FAST_MIN:
            # the common case in Arrow; the values it cannot decide take the normaliser
            got = fast([uniques[i] for i in todo])
            for i, v in zip(todo, got, strict=True):
                normed[i] = v
            left = [i for i, v in zip(todo, got, strict=True) if v is ...]
            bad_any = _fill(norm, uniques, normed, left, reasons)
        else:
            bad_any = _fill(norm, uniques, normed, todo, reasons)
        if len(cache) < _CACHE_LIMIT:
            for i in todo:
                if normed[i] is not None:
                    cache[uniques[i]] = normed[i]
    else:
        try:  # the common case, no unusable value: one pass
            normed = list(map(norm, uniques))
            bad_any = False
        except nz.UnparseableValue:
            normed = [...] * len(uniques)
            bad_any = _fill(norm, uniques, normed, range(len(uniques)), reasons)
    if kind == "postcode":  # a postcode is its text (and UK or not): find those
        ids, values = _distinct_by(normed, [(p.full, p.uk) if p else None for p in normed])
    else:
        ids, values = _distinct(normed, by_hash=kind != "names")
    return _coded(ids, raw_codes, values, reasons, bad_any=bad_any)


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


def _combine(parts: list[_Column], n: int) -> tuple[I64, list[tuple[str, ...]]]:
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
) -> tuple[I64, list[tuple[str, ...]]]:
    """:func:`_combine` of the columns ``names`` present, remembered in ``memo``."""
    key = ("\x00combine", names)
    if memo is not None and key in memo:
        got: tuple[I64, list[tuple[str, ...]]] = memo[key]
        return got
    got = _combine([cols[c] for c in names if c in cols], n)
    if memo is not None:
        memo[key] = got
    return got


def _field_column(
    spec: FieldSpec, cols: dict[str, _Column], n: int, memo: dict[Any, Any] | None = None
) -> tuple[I64, list[Any]]:
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
