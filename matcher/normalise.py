"""Normalisation: raw nominal-record values become comparable, canonical fields.

Force exports arrive as strings (or ``None``/``NaN``/numbers from pandas). Each function
here takes one raw value and returns its normal form, ``None`` where the value is
missing, or raises :class:`UnparseableValue` where a non-empty value cannot be read. The
message of that error never contains the value (errors and logs never echo record
values).

>>> normalise_name("Mr Seán O'Brien-Smith")
'sean obrien smith'
>>> canonical_forename("bill")
'william'
>>> parse_date("09/04/1956"), parse_date("1956-04-09T00:00:00"), parse_date(19560409.0)
((1956, 4, 9), (1956, 4, 9), (1956, 4, 9))
>>> normalise_postcode("sw1a1aa").sector
'SW1A1'
>>> normalise_address("12 St Albans Rd., Watford")
'12 saint albans road watford'
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import importlib.resources
import math
import numbers
import re
import unicodedata
from dataclasses import dataclass

from matcher.errors import MatcherError

__all__ = [
    "Postcode",
    "UnparseableValue",
    "canonical_forename",
    "fold",
    "is_missing",
    "name_parts",
    "nickname_table",
    "normalise_address",
    "normalise_name",
    "normalise_postcode",
    "normalise_sex",
    "normalise_town",
    "parse_date",
    "split_names",
]


class UnparseableValue(MatcherError, ValueError):
    """A non-empty value could not be parsed; the message says why, never what the value was."""


def _words(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


def _pairs(spec: str) -> dict[str, str]:
    """``"a:b c:d"`` -> ``{"a": "b", "c": "d"}``; keeps the word tables compact."""
    return {k: v for k, _, v in (p.partition(":") for p in spec.split())}


# --------------------------------------------------------------------------- folding

# Letters that NFKD does not decompose, plus typographic punctuation that would otherwise
# vanish (and glue words together) when non-ASCII characters are dropped.
_FOLD_TABLE = str.maketrans(
    {
        **{"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th"},
        **{"\u0131": "i", "ħ": "h", "ŧ": "t", "ŋ": "n", "ĸ": "k"},
        **dict.fromkeys("\u2018\u2019\u201b\u02bc\u00b4\u2032", "'"),
        **dict.fromkeys("\u201c\u201d", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u2028\u2029\u0085", " "),
        **dict.fromkeys("\u200b\u200c\u200d\ufeff", ""),
    }
)


@functools.lru_cache(maxsize=1 << 16)
def fold(text: str) -> str:
    """Fold ``text`` to lower-case ASCII with single spaces: accents stripped, ß -> ss.

    >>> fold("  Zoë   ØSTERGÅRD Straße ")
    'zoe ostergard strasse'
    """
    if text.isascii():
        return " ".join(text.lower().split())
    s = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD_TABLE))
    # NFKD leaves accents as combining marks; dropping non-ASCII removes them (and any
    # character from a script we cannot transliterate).
    return " ".join(s.encode("ascii", "ignore").decode("ascii").lower().split())


# --------------------------------------------------------------------------- missing values

_PLACEHOLDERS = frozenset(
    {"n/a", "na", "n.a.", "n/k", "nk", "not known", "null", "none", "unknown", "unk", "nan"}
    | {"#n/a"}
)
_HAS_ALNUM = re.compile(r"[^\W_]")


def is_missing(value: object) -> bool:
    """True for ``None``, NaN, pandas NA/NaT, blank strings and placeholders such as "n/a".

    A string with no letter or digit at all ("-", "?", "--/--/----") is also missing.

    >>> [is_missing(v) for v in (None, float("nan"), " ", "N/A", "Unknown", "?", "Smith")]
    [True, True, True, True, True, True, False]
    """
    if value is None:
        return True
    if isinstance(value, str):
        s = value.strip()
        return not s or s.casefold() in _PLACEHOLDERS or _HAS_ALNUM.search(s) is None
    if isinstance(value, float):
        return math.isnan(value)
    if type(value).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return math.isnan(float(value))  # numpy float32 and friends
    if type(value).__name__ in ("datetime64", "timedelta64"):
        return str(value) == "NaT"
    return False


def _as_text(value: object) -> str | None:
    """The value as a string, or None if it is missing.

    Hot paths pass strings straight to cached helpers that test for missingness
    themselves, so a repeated value costs one cache lookup.
    """
    if is_missing(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- names

_TITLES = _words(
    "mr mrs ms miss mx mstr dr rev revd reverend prof professor jr jnr sr snr ii iii iv esq"
    " cllr hon"
)
# Honorifics that are also surnames ("Peter Lord"): dropped only when another word follows.
_LEADING_TITLES = frozenset({"sir", "dame", "lord", "lady", "master"})
_APOSTROPHES = re.compile(r"['`]")
_NON_LETTERS = re.compile(r"[^a-z]+")


@functools.lru_cache(maxsize=1 << 18)
def _normalise_name_text(text: str) -> str | None:
    if is_missing(text):
        return None
    s = _NON_LETTERS.sub(" ", _APOSTROPHES.sub("", fold(text)))
    words = s.split()
    kept = [
        w
        for i, w in enumerate(words)
        if w not in _TITLES and not (w in _LEADING_TITLES and i + 1 < len(words))
    ]
    return " ".join(kept) or None


def normalise_name(value: object) -> str | None:
    """Normalise a personal name: folded, titles removed, punctuation to spaces.

    Apostrophes are removed ("O'Brien" -> "obrien"); hyphens, dots and other punctuation
    become a space; digits are removed; ``None`` if nothing is left. Titles such as
    Mr, Mrs, Dr, Jr or III are removed wherever they stand; Sir, Dame, Lord, Lady and
    Master only when another word follows, since they are also surnames.

    >>> normalise_name("DR. Anne-Marie  SMITH-JONES iii")
    'anne marie smith jones'
    >>> normalise_name("Lord"), normalise_name("Mr")
    ('lord', None)
    """
    if isinstance(value, str):
        return _normalise_name_text(value)
    text = _as_text(value)
    return None if text is None else _normalise_name_text(text)


def name_parts(name: str) -> list[str]:
    """The parts of a normalised name.

    >>> name_parts("smith jones")
    ['smith', 'jones']
    """
    return name.split()


_NAME_SEPARATORS = re.compile(r"[;|/,]")


def split_names(value: object, *, by_space: bool = False) -> list[str]:
    """Split a multi-valued names cell (aliases, previous or middle names).

    Entries are separated by ``;``, ``|``, ``/`` or ``,``; each is normalised with
    :func:`normalise_name` and a multi-part entry ("Smith-Jones") stays one entry. With
    ``by_space`` every word is its own entry (several middle names in one cell).
    Empty entries and repeats are dropped; order is kept.

    >>> split_names("Smith-Jones; J. SMITH | smith jones")
    ['smith jones', 'j smith']
    >>> split_names("Anne Marie", by_space=True)
    ['anne', 'marie']
    """
    text = _as_text(value)
    if text is None:
        return []
    out: list[str] = []
    for raw in _NAME_SEPARATORS.split(text):
        name = _normalise_name_text(raw)
        if name is None:
            continue
        for entry in name.split() if by_space else (name,):
            if entry not in out:
                out.append(entry)
    return out


@functools.cache
def nickname_table() -> dict[str, str]:
    """Nickname -> canonical forename, from the package's ``data/nicknames.csv``.

    Where a nickname appears on several rows (it is ambiguous: "alex" is short for
    Alexander and Alexandra) the first row wins; the later rows document the ambiguity.
    Spelling variants ("steven" -> "stephen") are in the table too. The returned dict is
    shared: do not mutate it.
    """
    text = (
        importlib.resources.files("matcher")
        .joinpath("data/nicknames.csv")
        .read_text(encoding="utf-8")
    )
    table: dict[str, str] = {}
    for row in csv.DictReader(text.splitlines()):
        nick = _normalise_name_text(row["nickname"])
        canon = _normalise_name_text(row["canonical"])
        if nick and canon and nick != canon:
            table.setdefault(nick, canon)
    return table


def canonical_forename(name: str) -> str:
    """The canonical root of a normalised forename (see :func:`nickname_table`).

    Unknown and canonical names map to themselves; an ambiguous nickname takes the first
    canonical listed for it in the table ("alex" -> "alexander", not "alexandra").

    >>> canonical_forename("peggy"), canonical_forename("alex"), canonical_forename("zed")
    ('margaret', 'alexander', 'zed')
    """
    return nickname_table().get(name, name)


# --------------------------------------------------------------------------- dates

_MONTH_NAMES = (
    "jan,january feb,february,febuary mar,march apr,april may jun,june jul,july aug,august"
    " sep,sept,september oct,october nov,november dec,december"
)
_MONTHS = {
    name: month
    for month, names in enumerate(_MONTH_NAMES.split(), start=1)
    for name in names.split(",")
}
_A = re.ASCII
_TIME_SUFFIX = re.compile(
    r"(?:t|\s+)\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[ap]\.?m\.?)?\s*"
    r"(?:z|utc|gmt|[+-]\d{2}(?::?\d{2})?)?$",
    _A,
)
_YMD = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})", _A)
_DMY = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4}|\d{2})", _A)
_DIGITS = re.compile(r"(\d{7,8})(?:\.0*)?", _A)
_ORD = r"(?:st|nd|rd|th)?"
_DAY_MONTH = re.compile(
    rf"(\d{{1,2}}){_ORD}[\s./-]*([a-z]{{3,9}})\.?,?[\s./-]*(\d{{4}}|\d{{2}})", _A
)
_MONTH_DAY = re.compile(rf"([a-z]{{3,9}})\.?[\s./-]*(\d{{1,2}}){_ORD},?[\s./-]*(\d{{4}})", _A)


def _valid(y: int, m: int, d: int) -> bool:
    # Lenient on purpose: police data has typos such as 31/02, which still match well.
    return 1850 <= y <= 2100 and 1 <= m <= 12 and 1 <= d <= 31


def _checked(y: int, m: int, d: int) -> tuple[int, int, int]:
    if not _valid(y, m, d):
        raise UnparseableValue("date out of range")
    return y, m, d


def _pivot(yy: int) -> int:
    """A two-digit year in the century that keeps it from being in the future."""
    return 1900 + yy if yy > _dt.date.today().year % 100 else 2000 + yy


def _month_or_day(y: int, m: int, d: int) -> tuple[int, int, int]:
    """``(y, m, d)``, with month and day swapped where only the day can be a month."""
    if m > 12 and d <= 12:  # a US-order export
        d, m = m, d
    return _checked(y, m, d)


def _month(name: str) -> int:
    month = _MONTHS.get(name)
    if month is None:
        raise UnparseableValue("unrecognised month name")
    return month


def _eight_digits(s: str) -> tuple[int, int, int]:
    s = s.zfill(8)  # a ddmmyyyy integer loses its leading zero
    y, m, d = int(s[:4]), int(s[4:6]), int(s[6:])
    if _valid(y, m, d):
        return y, m, d
    return _checked(int(s[4:]), int(s[2:4]), int(s[:2]))


@functools.lru_cache(maxsize=1 << 16)
def _parse_date_text(text: str) -> tuple[int, int, int] | None:
    if is_missing(text):
        return None
    s = text.strip().casefold()
    if s == "nat":  # pandas' missing datetime; not a general placeholder ("Nat")
        return None
    s = _TIME_SUFFIX.sub("", s, count=1)
    if mt := _YMD.fullmatch(s):
        return _month_or_day(int(mt[1]), int(mt[3]), int(mt[4]))
    if mt := _DMY.fullmatch(s):
        y = int(mt[4])
        return _month_or_day(_pivot(y) if len(mt[4]) == 2 else y, int(mt[3]), int(mt[1]))
    if mt := _DIGITS.fullmatch(s):
        return _eight_digits(mt[1])
    if mt := _DAY_MONTH.fullmatch(s):
        y = int(mt[3])
        return _checked(_pivot(y) if len(mt[3]) == 2 else y, _month(mt[2]), int(mt[1]))
    if mt := _MONTH_DAY.fullmatch(s):
        return _checked(int(mt[3]), _month(mt[1]), int(mt[2]))
    raise UnparseableValue("unrecognised date format")


def parse_date(value: object) -> tuple[int, int, int] | None:
    """Parse a date of birth to ``(year, month, day)``; ``None`` if missing.

    Accepts ISO ``yyyy-mm-dd`` (optionally with a time), ``yyyy/mm/dd``, ``dd/mm/yyyy``,
    ``dd-mm-yyyy``, ``dd.mm.yyyy``, ``d/m/yy``, ``yyyymmdd`` (also as an int or float
    such as ``19560409.0``), ``ddmmyyyy`` where ``yyyymmdd`` is impossible (a 7-digit
    number is a ``ddmmyyyy`` that lost its leading zero), ``12 Mar 1985``,
    ``12-MAR-85``, ``March 12, 1985`` and date/datetime/Timestamp objects.

    Slashed forms are day first unless the month would exceed 12 while the day would
    not, when they are read as US order. Two-digit years fall in the latest century that
    does not put them after this year. Years 1850-2100, months 1-12 and days 1-31 are
    accepted without a calendar check (31/02 passes, being a likely typo of a real date).

    >>> parse_date("12/25/1985"), parse_date("1/2/85"), parse_date("March 12, 1985")
    ((1985, 12, 25), (1985, 2, 1), (1985, 3, 12))

    Raises:
        UnparseableValue: a non-missing value that is not a date in range.
    """
    if isinstance(value, str):
        return _parse_date_text(value)
    if is_missing(value):
        return None
    if isinstance(value, _dt.date):  # datetime and pandas Timestamp are dates too
        return _checked(value.year, value.month, value.day)
    if isinstance(value, bool):
        raise UnparseableValue("unrecognised date format")
    if isinstance(value, numbers.Integral):
        return _parse_date_text(str(int(value)))
    if isinstance(value, numbers.Real):
        f = float(value)
        if not f.is_integer():
            raise UnparseableValue("unrecognised date format")
        return _parse_date_text(str(int(f)))
    if type(value).__name__ == "datetime64":
        return _parse_date_text(str(value))
    raise UnparseableValue("unsupported date type")


# --------------------------------------------------------------------------- sex

_SEX_CODES: dict[str, str | None] = {
    **dict.fromkeys(("m", "male", "man", "boy", "1"), "m"),
    **dict.fromkeys(("f", "female", "woman", "girl", "2"), "f"),
    **dict.fromkeys(_words("x i indeterminate intersex other nb nonbinary"), "x"),
    **dict.fromkeys(_words("u unknown 0 9 ns"), None),
    **dict.fromkeys(("non binary",), "x"),
    **dict.fromkeys(("not known", "not stated", "not specified", "not recorded"), None),
    **dict.fromkeys(("prefer not to say",), None),
}
_SEX_PUNCT = re.compile(r"[^a-z0-9]+")


def normalise_sex(value: object) -> str | None:
    """``"m"``, ``"f"`` or ``"x"`` (indeterminate, other, non-binary), ``None`` if missing.

    Accepts codes and words in any case, and ISO/IEC 5218 digits (1 male, 2 female,
    0 not known and 9 not applicable, both ``None``). "U" and "not known" are missing.

    >>> [normalise_sex(v) for v in ("Male", "F", 2, "Non-binary", "U", None)]
    ['m', 'f', 'f', 'x', None, None]

    Raises:
        UnparseableValue: an unrecognised code.
    """
    if isinstance(value, bool):
        raise UnparseableValue("unrecognised sex code")
    if isinstance(value, str):
        return _sex_text(value)
    text = _as_text(value)
    return None if text is None else _sex_text(text)


@functools.lru_cache(maxsize=1024)
def _sex_text(text: str) -> str | None:
    if is_missing(text):
        return None
    key = " ".join(_SEX_PUNCT.sub(" ", fold(text)).split())
    try:
        return _SEX_CODES[key]
    except KeyError:
        raise UnparseableValue("unrecognised sex code") from None


# --------------------------------------------------------------------------- postcodes


@dataclass(frozen=True, slots=True)
class Postcode:
    """A postcode: ``full`` without spaces in upper case; its parts where it is a UK one.

    ``district`` equals ``outward``; ``inward`` and ``sector`` are ``None`` for an
    outward-only code; a foreign code has ``uk=False`` and only ``full``.
    """

    full: str
    outward: str | None = None
    inward: str | None = None
    area: str | None = None
    district: str | None = None
    sector: str | None = None
    uk: bool = False


# Royal Mail grammar: first letter not Q, V, X; second not I, J, Z; third (A9A) and
# fourth (AA9A) letters from fixed sets; inward letters never C, I, K, M, O or V.
_OUTWARD = (
    r"(?:[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?"
    r"|[A-PR-UWYZ][0-9][A-HJKPSTUW]|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY]|GIR"
    r"|ASCN|STHL|TDCU|BBND|BIQQ|FIQQ|PCRN|SIQQ|TKCA)"
)
_OUTWARD_RE = re.compile(_OUTWARD)
_FULL_RE = re.compile(rf"({_OUTWARD})([0-9][ABD-HJLNP-UW-Z]{{2}})")
_AREA_RE = re.compile(r"[A-Z]+")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_FOREIGN_RE = re.compile(r"(?=[A-Z]*[0-9])[A-Z0-9]{3,10}")
# Only the inward code's digit is corrected: a letter there can never be right, and each
# of these letters has one obvious digit. Letters are not guessed from digits, and the
# outward code is left alone because a foreign code would too often "correct" into a
# valid UK one (Amsterdam's 1012 AB would become I01 2AB).
_INWARD_DIGIT_FIX = {"O": "0", "I": "1", "L": "1"}


def _uk_postcode(outward: str, inward: str | None) -> Postcode:
    area = _AREA_RE.match(outward)
    return Postcode(
        full=outward + (inward or ""),
        outward=outward,
        inward=inward,
        area=area[0] if area else None,
        district=outward,
        sector=outward + inward[0] if inward else None,
        uk=True,
    )


@functools.lru_cache(maxsize=1 << 16)
def _postcode_text(text: str) -> Postcode | None:
    if is_missing(text):
        return None
    s = _NOT_ALNUM.sub("", fold(text).upper())
    if not s:
        raise UnparseableValue("unrecognised postcode")
    if mt := _FULL_RE.fullmatch(s):
        return _uk_postcode(mt[1], mt[2])
    if len(s) >= 5 and s[-3] in _INWARD_DIGIT_FIX:
        fixed = s[:-3] + _INWARD_DIGIT_FIX[s[-3]] + s[-2:]
        if mt := _FULL_RE.fullmatch(fixed):
            return _uk_postcode(mt[1], mt[2])
    if _OUTWARD_RE.fullmatch(s):
        return _uk_postcode(s, None)
    if _FOREIGN_RE.fullmatch(s):
        return Postcode(full=s, uk=False)
    raise UnparseableValue("unrecognised postcode")


def normalise_postcode(value: object) -> Postcode | None:
    """Parse a postcode; ``None`` if missing.

    Spaces and punctuation are ignored and case does not matter. UK postcodes are checked
    against the Royal Mail grammar (GIR 0AA and the overseas territories' codes
    included); an outward code alone ("SW1A") is accepted. In the inward code's first
    place, which must be a digit, O, I and L are read as 0, 1 and 1. Any other code of
    3 to 10 letters and digits with at least one digit is kept as a foreign code
    (``uk=False``).

    >>> normalise_postcode("sw1a 1aa").full, normalise_postcode("2074").uk
    ('SW1A1AA', False)

    Raises:
        UnparseableValue: a value that is neither a UK nor a plausible foreign code.
    """
    if isinstance(value, str):
        return _postcode_text(value)
    text = _as_text(value)
    return None if text is None else _postcode_text(text)


# --------------------------------------------------------------------------- addresses

_ADDRESS_WORDS = _pairs(
    """
    rd:road ave:avenue av:avenue avn:avenue ln:lane dr:drive drv:drive cres:crescent
    cresc:crescent ct:court crt:court pl:place sq:square gdns:gardens gdn:garden cl:close
    clo:close terr:terrace tce:terrace ter:terrace hwy:highway pde:parade blvd:boulevard
    apt:flat apartment:flat unit:flat flt:flat grn:green gro:grove gr:grove pk:park
    mt:mount hse:house est:estate bldg:building bldgs:buildings ctr:centre cntr:centre
    cnr:corner cott:cottage cotts:cottages wlk:walk wk:walk yd:yard hts:heights
    esp:esplanade prom:promenade nth:north sth:south upr:upper lwr:lower gt:great
    """
)
_STREET_OR_SAINT = "st"
_NOT_SAINT_BEFORE = frozenset({"of", "and", "the"})
_ADDRESS_PUNCT = re.compile(r"[^a-z0-9,]+")


def _is_number(word: str) -> bool:
    return word[0].isdigit()


def normalise_address(value: object) -> str | None:
    """Normalise an address line: folded, punctuation to spaces, abbreviations expanded.

    Whole-word abbreviations become their full forms ("rd" -> "road", "apt" and "unit"
    -> "flat"). "St" is "street" when it ends a comma-separated part or is followed by
    a number; otherwise "saint" when it starts a part or follows a number ("12 St Albans
    Road"); between two words it is "street" ("High St London"). Digits are kept.

    >>> normalise_address("Flat 2, 14 St. Mary's Rd")
    'flat 2 14 saint marys road'
    """
    text = _as_text(value)
    if text is None:
        return None
    s = _ADDRESS_PUNCT.sub(" ", _APOSTROPHES.sub("", fold(text).replace("&", " and ")))
    words: list[str] = []
    for part in s.split(","):
        tokens = part.split()
        for i, w in enumerate(tokens):
            if w == _STREET_OR_SAINT:
                nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                prev = tokens[i - 1] if i else None
                if nxt is None or _is_number(nxt):
                    w = "street"
                elif prev is None or _is_number(prev) or prev in _NOT_SAINT_BEFORE:
                    w = "saint"
                else:
                    w = "street"
            else:
                w = _ADDRESS_WORDS.get(w, w)
            words.append(w)
    return " ".join(words) or None


_TOWN_PUNCT = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=1 << 14)
def _town_text(text: str) -> str | None:
    if is_missing(text):
        return None
    s = _TOWN_PUNCT.sub(" ", _APOSTROPHES.sub("", fold(text).replace("&", " and ")))
    return " ".join("saint" if w == "st" else w for w in s.split()) or None


def normalise_town(value: object) -> str | None:
    """Normalise a town: folded, punctuation to spaces, "St" -> "saint".

    "St" is read as "saint" wherever it stands, since no town is a street
    ("Bury St Edmunds").

    >>> normalise_town("St. Albans"), normalise_town("Stratford-upon-Avon")
    ('saint albans', 'stratford upon avon')
    """
    if isinstance(value, str):
        return _town_text(value)
    text = _as_text(value)
    return None if text is None else _town_text(text)
