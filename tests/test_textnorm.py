"""The byte-level text normaliser against the per-value normalisers it stands in for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher import normalise as nz
from matcher.encoding import _fastblock as fb
from matcher.encoding import _postcodes as pcn
from matcher.encoding import _textnorm as tn
from matcher.encoding._columns import _normalise_column

# words that each rule of the normalisers turns on, in any case
_WORDS = [
    "st", "St", "ST", "mr", "Mrs", "lord", "Sir", "lady", "iii", "professor", "rd", "Rd.",
    "ave", "apartment", "of", "and", "the", "n/a", "N/A", "unknown", "na", "nan", "not",
    "known", "12", "3a", "o'neill", "d`arcy", "anne-marie", "smith", "SMITH", "jones",
    "abcdefghijklmnopq", "abcdefghijklmnop", "abcdefgh", "x", "&",
]  # fmt: skip
_GLUE = [" ", "  ", ", ", ",", "; ", "|", "/", " & ", "-", ".", "'", "", " ,", "#"]
PRINTABLE_TEXT = st.one_of(
    st.lists(st.sampled_from(_WORDS), max_size=6).flatmap(
        lambda words: st.lists(
            st.sampled_from(_GLUE), min_size=len(words) + 1, max_size=len(words) + 1
        ).map(lambda glue: glue[0] + "".join(w + g for w, g in zip(words, glue[1:], strict=True)))
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
ANY_TEXT = st.one_of(
    PRINTABLE_TEXT,
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=8,
    ),
)


def _names(value: object) -> str | None:
    return tn.NAMES_SEPARATOR.join(nz.split_names(value)) or None


_REFERENCE = {
    "name": nz.normalise_name,
    "town": nz.normalise_town,
    "address": nz.normalise_address,
    "names": _names,
}


@settings(max_examples=400, deadline=None)
@given(st.lists(PRINTABLE_TEXT, min_size=1, max_size=30))
def test_kernel_equals_the_normalisers_on_printable_ascii(values: list[str]) -> None:
    raw: list[str | None] = [*values, None]
    for kind, norm in _REFERENCE.items():
        rows = tn.normalise_rows(kind, pa.array(raw, type=pa.string()))
        found = tn.distinct(rows)
        texts = found.texts()
        for i, value in enumerate(raw):
            code = int(found.codes[i])
            got = texts[code] if code >= 0 else None
            assert rows.status[i] != tn.OTHER, (kind, value)
            assert got == norm(value), (kind, value)
            assert (rows.status[i] == tn.MISSING) == (got is None), (kind, value)


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_TEXT, min_size=1, max_size=30))
def test_rows_that_are_not_printable_ascii_are_left_to_the_normalisers(
    values: list[str],
) -> None:
    rows = tn.normalise_rows("name", pa.array(values, type=pa.string()))
    for value, status in zip(values, rows.status.tolist(), strict=True):
        printable = value.isascii() and value.isprintable()
        assert (status == tn.OTHER) == (not printable), value


@settings(max_examples=60, deadline=None)
@given(st.lists(ANY_TEXT, min_size=1, max_size=60))
def test_text_columns_equal_the_normalisers(values: list[str]) -> None:
    # ASCII and Unicode spellings of one name meet in one distinct value; values whose
    # folded form reads differently from the raw one ("ŃA" folds to the placeholder
    # "na", "李 & 王" to "&") keep what the normalisers make of them
    tricky = [
        "Zoë Smith",
        "zoe smith",
        "ŃA",
        "李 & 王",
        "\uff2f'\uff22\uff52\uff49\uff45\uff4e",
        "\x01Ann",
        "Ångström St",
    ]
    raw = [*values, None, *tricky, *values]
    for kind, norm in _REFERENCE.items():
        col = _normalise_column(kind, pd.Series(raw, dtype=object))
        assert len(set(col.values)) == len(col.values)
        for i, value in enumerate(raw):
            code = int(col.codes[i])
            got = col.values[code] if code >= 0 else None
            if kind == "names":
                got = tn.NAMES_SEPARATOR.join(got) if got else None
            assert got == norm(value), (kind, value)


def test_word_tables_find_their_words_and_nothing_else() -> None:
    for table, words in (
        (tn._PLACEHOLDERS, nz._PLACEHOLDERS),
        (tn._TITLES, nz._TITLES),
        (tn._ABBREVIATIONS, set(nz._ADDRESS_WORDS)),
    ):
        lookup = tn._lookup(table)
        probes = [*words, *(w.upper() for w in words), "smith", "st", "a", "x" * 17]
        for word in probes:
            data = np.frombuffer(word.encode(), dtype=np.uint8)
            a, b = tn._word_key(data, 0, len(data))
            found = tn._probe(np.uint64(a), np.uint64(b), lookup) >= 0
            assert found == (word.lower() in words), word


def test_missing_and_all_other_rows_keep_their_place() -> None:
    arr = pa.array([None, "Ann", "Ñandú", "", "n/a", "ANN"], type=pa.string())
    rows = tn.normalise_rows("name", arr)
    assert rows.status.tolist() == [tn.MISSING, tn.OK, tn.OTHER, tn.MISSING, tn.MISSING, tn.OK]
    rows.set_rows(np.array([2]), [b"nandu"])
    found = tn.distinct(rows)
    assert found.codes.tolist() == [-1, 0, 1, -1, -1, 0]
    assert found.texts() == ["ann", "nandu"]


# --------------------------------------------------------------------------- postcodes
_POSTCODE_TEXT = st.one_of(
    st.from_regex(r"[A-Za-z]{1,2}[0-9][0-9A-Za-z]? ?[0-9OoIiLl][A-Za-z]{2}", fullmatch=True),
    st.from_regex(r"[A-Z]{1,4}[0-9]{0,2}[A-Z]? ?[0-9OIL]?[A-Z]{0,2}", fullmatch=True),
    st.text(alphabet="SWAGIRNQVXsw10OIL -.&/é\t", max_size=10),
    st.sampled_from(["GIR 0AA", "ASCN 1ZZ", "n/a", "Unknown", "-", "2074", "SW1A", "1012 AB"]),
)


def _postcode(value: object) -> object:
    try:
        return nz.normalise_postcode(value)
    except nz.UnparseableValue:
        return "unparseable"


@settings(max_examples=300, deadline=None)
@given(st.lists(_POSTCODE_TEXT, min_size=1, max_size=40))
def test_postcode_columns_equal_the_normaliser(values: list[str]) -> None:
    raw = [*values, None, *values]
    col = _normalise_column("postcode", pd.Series(raw, dtype=object))
    bad = set(col.bad_rows.tolist())
    assert len({p.full for p in col.values}) == len(col.values)
    for i, value in enumerate(raw):
        code = int(col.codes[i])
        expected = _postcode(value)
        if expected == "unparseable":
            assert code == -1 and i in bad, value
        else:
            assert (col.values[code] if code >= 0 else None) == expected and i not in bad, value


def test_the_outward_grammar_equals_the_regex() -> None:
    letters = "ABCGHIJKMPQRSTUVWXYZ"
    digits = "019"
    cands = {a + b for a in letters for b in letters + digits}
    cands |= {c + d for c in cands for d in letters + digits}
    cands |= {c + d for c in list(cands) if len(c) == 3 for d in "ABEHMNRVXY09"}
    cands |= {"GIR", "ASCN", "TKCA", "TKCB", "GIRA"}
    for text in sorted(cands):
        data = np.frombuffer(text.encode(), dtype=np.uint8)
        got = pcn._outward(data, 0, len(data), pcn._MASKS, pcn._SPECIALS)
        assert got == bool(nz._OUTWARD_RE.fullmatch(text)), text


def test_arrow_backed_and_string_columns_read_as_object_columns() -> None:
    raw = ["Ann", None, "Zoë", "n/a", "SW1A 1AA", "12 St Albans Rd", "", "Smith; Jones"]
    raw += ["1985-03-12", "12/25/1985", "30-Jun-84", "19850312\x00", "31st of Smarch"]
    for kind in ("name", "town", "address", "names", "postcode", "date"):
        want = _normalise_column(kind, pd.Series(raw, dtype=object))
        for dtype in (pd.ArrowDtype(pa.string()), "string[pyarrow]", "string[python]", "category"):
            got = _normalise_column(kind, pd.Series(raw, dtype=dtype))
            assert got.codes.tolist() == want.codes.tolist(), (kind, dtype)
            assert got.values == want.values, (kind, dtype)
            assert got.bad_rows.tolist() == want.bad_rows.tolist(), (kind, dtype)


@settings(max_examples=50, deadline=None)
@given(st.lists(ANY_TEXT, min_size=1, max_size=40))
def test_value_ids_from_the_kernels_equal_the_value_ids(values: list[str]) -> None:
    # record seeds and postcode tokens must not depend on which path read a column
    raw = [*values, "SW1A 1AA", "Smith; Jones", "1985-03-12", "12 Mar 1985", None]
    for kind in ("name", "town", "address", "names", "postcode", "date"):
        col = _normalise_column(kind, pd.Series(raw, dtype=object))
        assert col.ids is not None
        assert col.ids.tolist() == [*fb.value_ids(col.values).tolist(), 0], kind
