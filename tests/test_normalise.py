"""Tests for matcher.normalise: concrete cases for every function plus property tests."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import importlib.resources
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from matcher import normalise as nz
from matcher.errors import MatcherError
from matcher.normalise import (
    Postcode,
    UnparseableValue,
    canonical_forename,
    fold,
    is_missing,
    name_parts,
    nickname_table,
    normalise_address,
    normalise_name,
    normalise_postcode,
    normalise_sex,
    normalise_town,
    parse_date,
    split_names,
)

THIS_YY = dt.date.today().year % 100


def test_all_is_sorted_and_complete() -> None:
    assert nz.__all__ == sorted(nz.__all__)
    for name in nz.__all__:
        assert hasattr(nz, name)


def test_unparseable_value_is_in_the_tree() -> None:
    assert issubclass(UnparseableValue, MatcherError)
    assert issubclass(UnparseableValue, ValueError)


# --------------------------------------------------------------------------- fold


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zoë", "zoe"),
        ("ZOË", "zoe"),
        ("Øyvind", "oyvind"),
        ("Straße", "strasse"),
        ("STRASSE", "strasse"),
        ("Ærøskøbing", "aeroskobing"),
        ("Łukasz Wałęsa", "lukasz walesa"),
        ("Seán Ó Súilleabháin", "sean o suilleabhain"),
        ("François Müller-Lüdenscheidt", "francois muller-ludenscheidt"),
        ("  Jean \t  Paul\n", "jean paul"),
        ("O\u2019Brien", "o'brien"),
        ("Smith\u2013Jones", "smith-jones"),
        ("Ann\u00a0Marie", "ann marie"),
        ("zero\u200bwidth", "zerowidth"),
        ("İstanbul", "istanbul"),
        ("ﬁnn", "finn"),
        ("", ""),
        ("   ", ""),
        ("东京", ""),
    ],
)
def test_fold(text: str, expected: str) -> None:
    assert fold(text) == expected


@given(st.text())
def test_fold_is_ascii_lower_and_idempotent(text: str) -> None:
    out = fold(text)
    assert out.isascii()
    assert out == out.lower()
    assert out == out.strip()
    assert "  " not in out
    assert fold(out) == out


# --------------------------------------------------------------------------- is_missing


@pytest.mark.parametrize(
    "value",
    [
        None,
        float("nan"),
        np.nan,
        np.float32("nan"),
        pd.NA,
        pd.NaT,
        np.datetime64("NaT"),
        "",
        "   ",
        "\t\n",
        "n/a",
        "N/A",
        "NA",
        "null",
        "NULL",
        "None",
        "unknown",
        "UNKNOWN",
        "nan",
        "NaN",
        "-",
        "?",
        "--",
        " - ",
        "--/--/----",
        "not known",
        "#N/A",
    ],
)
def test_is_missing_true(value: object) -> None:
    assert is_missing(value)


@pytest.mark.parametrize(
    "value", ["Smith", "x", "0", 0, 1.5, np.float64(2.0), "Nat", "u", dt.date(2000, 1, 1)]
)
def test_is_missing_false(value: object) -> None:
    assert not is_missing(value)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("John", "john"),
        ("  JOHN  ", "john"),
        ("Zoë", "zoe"),
        ("Renée", "renee"),
        ("Siobhán", "siobhan"),
        ("O'Brien", "obrien"),
        ("O\u2019Brien", "obrien"),
        ("D`Arcy", "darcy"),
        ("Smith-Jones", "smith jones"),
        ("smith - jones", "smith jones"),
        ("Mary-Jane", "mary jane"),
        ("St. John", "st john"),
        ("Jean-Luc  Picard", "jean luc picard"),
        ("Bowes-Lyon", "bowes lyon"),
        ("Mr John Smith", "john smith"),
        ("MRS. SMITH", "smith"),
        ("Ms Jones", "jones"),
        ("Miss Jones", "jones"),
        ("Mx Taylor", "taylor"),
        ("Dr Who", "who"),
        ("Rev. Green", "green"),
        ("Prof Brian Cox", "brian cox"),
        ("John Smith Jr", "john smith"),
        ("John Smith Jnr.", "john smith"),
        ("Sammy Davis Sr", "sammy davis"),
        ("Henry Ford III", "henry ford"),
        ("Smith, Mr John", "smith john"),
        ("Sir Elton John", "elton john"),
        ("Dame Judi Dench", "judi dench"),
        ("Lady Jane Grey", "jane grey"),
        ("Lord", "lord"),
        ("Peter Lord", "peter lord"),
        ("Mr", None),
        ("Dr.", None),
        ("John2", "john"),
        ("J0hn", "j hn"),
        ("123", None),
        ("J.", "j"),
        ("A. B. Smith", "a b smith"),
        ("东京", None),
        ("", None),
        ("   ", None),
        ("N/A", None),
        (None, None),
        (float("nan"), None),
        (pd.NA, None),
    ],
)
def test_normalise_name(value: object, expected: str | None) -> None:
    assert normalise_name(value) == expected


def test_name_parts() -> None:
    assert name_parts("smith jones") == ["smith", "jones"]
    assert name_parts("john") == ["john"]
    assert name_parts("") == []


_NAME_SHAPE = re.compile(r"[a-z]+( [a-z]+)*")


@given(st.text())
def test_normalise_name_never_raises_and_is_well_formed(text: str) -> None:
    out = normalise_name(text)
    assert out is None or _NAME_SHAPE.fullmatch(out)
    for entry in split_names(text):
        assert _NAME_SHAPE.fullmatch(entry)


# --------------------------------------------------------------------------- nicknames


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bill", "william"),
        ("billy", "william"),
        ("will", "william"),
        ("william", "william"),
        ("liz", "elizabeth"),
        ("lizzie", "elizabeth"),
        ("beth", "elizabeth"),
        ("elizabeth", "elizabeth"),
        ("bob", "robert"),
        ("peggy", "margaret"),
        ("jim", "james"),
        ("jimmy", "james"),
        ("jamie", "james"),
        ("kate", "katherine"),
        ("katie", "katherine"),
        ("catherine", "katherine"),
        ("tom", "thomas"),
        ("ben", "benjamin"),
        ("matt", "matthew"),
        ("jess", "jessica"),
        ("becky", "rebecca"),
        ("zac", "zachary"),
        ("josh", "joshua"),
        ("nick", "nicholas"),
        ("dan", "daniel"),
        ("danny", "daniel"),
        ("jake", "jacob"),
        ("lottie", "charlotte"),
        ("abby", "abigail"),
        ("bella", "isabella"),
        ("izzy", "isabella"),
        ("maddie", "madeline"),
        ("mitch", "mitchell"),
        ("steven", "stephen"),
        ("mohd", "mohammed"),
        # Ambiguous nicknames take the first canonical listed in the table.
        ("alex", "alexander"),
        ("chris", "christopher"),
        ("sam", "samuel"),
        ("charlie", "charles"),
        # Unknown names map to themselves.
        ("zebedee", "zebedee"),
        ("", ""),
    ],
)
def test_canonical_forename(name: str, expected: str) -> None:
    assert canonical_forename(name) == expected


def _csv_rows() -> list[dict[str, str]]:
    text = (
        importlib.resources.files("matcher")
        .joinpath("data/nicknames.csv")
        .read_text(encoding="utf-8")
    )
    reader = csv.DictReader(text.splitlines())
    assert reader.fieldnames == ["nickname", "canonical"]
    return list(reader)


def test_nickname_table_is_large_clean_and_flat() -> None:
    rows = _csv_rows()
    table = nickname_table()
    assert len(table) >= 300
    assert nickname_table() is table  # cached
    pairs = [(r["nickname"], r["canonical"]) for r in rows]
    assert len(pairs) == len(set(pairs)), "duplicate rows"
    for nick, canon in pairs:
        # Every entry is already a normalised single word, so lookups need no folding.
        assert normalise_name(nick) == nick and " " not in nick
        assert normalise_name(canon) == canon and " " not in canon
        assert nick != canon
    for canon in set(table.values()):
        assert canonical_forename(canon) == canon, f"{canon} is itself a nickname"


def test_nickname_table_first_row_wins() -> None:
    first: dict[str, str] = {}
    for row in _csv_rows():
        first.setdefault(row["nickname"], row["canonical"])
    assert first == nickname_table()


# --------------------------------------------------------------------------- split_names


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Smith", ["smith"]),
        ("Smith; Jones", ["smith", "jones"]),
        ("Smith|Jones/Brown,Green", ["smith", "jones", "brown", "green"]),
        ("Smith-Jones; O'Neil", ["smith jones", "oneil"]),
        ("Anne Marie; Louise", ["anne marie", "louise"]),
        ("Smith; SMITH;  smith ", ["smith"]),
        ("Smith;;  ; Jones", ["smith", "jones"]),
        ("Mr; Jones", ["jones"]),
        ("", []),
        ("  ", []),
        (None, []),
        (float("nan"), []),
    ],
)
def test_split_names(value: object, expected: list[str]) -> None:
    assert split_names(value) == expected


def test_split_names_by_space() -> None:
    assert split_names("Anne Marie Louise", by_space=True) == ["anne", "marie", "louise"]
    assert split_names("Smith-Jones; Anne", by_space=True) == ["smith", "jones", "anne"]


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1956-04-09", (1956, 4, 9)),
        ("1956-4-9", (1956, 4, 9)),
        ("1956-04-09T00:00:00", (1956, 4, 9)),
        ("1956-04-09T13:45:10.123456Z", (1956, 4, 9)),
        ("1956-04-09T13:45:10+01:00", (1956, 4, 9)),
        ("1956-04-09 00:00:00", (1956, 4, 9)),
        ("1956/04/09", (1956, 4, 9)),
        ("1956.04.09", (1956, 4, 9)),
        ("09/04/1956", (1956, 4, 9)),
        ("9/4/1956", (1956, 4, 9)),
        ("09-04-1956", (1956, 4, 9)),
        ("09.04.1956", (1956, 4, 9)),
        ("09/04/1956 00:00", (1956, 4, 9)),
        ("09/04/1956 12:00:00 AM", (1956, 4, 9)),
        (" 09/04/1956 ", (1956, 4, 9)),
        ("19560409", (1956, 4, 9)),
        ("19560409.0", (1956, 4, 9)),
        (19560409, (1956, 4, 9)),
        (19560409.0, (1956, 4, 9)),
        (np.int64(19560409), (1956, 4, 9)),
        (np.float64(19560409.0), (1956, 4, 9)),
        ("09041956", (1956, 4, 9)),  # ddmmyyyy: yyyymmdd would be year 0904
        ("31121999", (1999, 12, 31)),
        (9041956, (1956, 4, 9)),  # ddmmyyyy that lost its leading zero
        ("12 Mar 1985", (1985, 3, 12)),
        ("12 March 1985", (1985, 3, 12)),
        ("12 march, 1985", (1985, 3, 12)),
        ("12th March 1985", (1985, 3, 12)),
        ("1st Sept 1985", (1985, 9, 1)),
        ("12-Mar-1985", (1985, 3, 12)),
        ("12-MAR-85", (1985, 3, 12)),
        ("12Mar1985", (1985, 3, 12)),
        ("March 12, 1985", (1985, 3, 12)),
        ("Mar. 12 1985", (1985, 3, 12)),
        ("December 1st, 2001", (2001, 12, 1)),
        ("1/2/85", (1985, 2, 1)),
        ("01/02/85", (1985, 2, 1)),
        ("01-02-85", (1985, 2, 1)),
        ("01/02/00", (2000, 2, 1)),
        # US order when the month cannot be a month but the day can.
        ("12/25/1985", (1985, 12, 25)),
        ("4/13/1990", (1990, 4, 13)),
        ("1990-13-04", (1990, 4, 13)),
        # Lenient calendar: likely typos of real dates still parse.
        ("31/02/1985", (1985, 2, 31)),
        ("31/04/1985", (1985, 4, 31)),
        ("01/01/1850", (1850, 1, 1)),
        ("31/12/2100", (2100, 12, 31)),
        (dt.date(1985, 3, 12), (1985, 3, 12)),
        (dt.datetime(1985, 3, 12, 10, 30), (1985, 3, 12)),
        (pd.Timestamp("1985-03-12"), (1985, 3, 12)),
        (np.datetime64("1985-03-12"), (1985, 3, 12)),
        (np.datetime64("1985-03-12T10:00:00"), (1985, 3, 12)),
        (None, None),
        (float("nan"), None),
        (pd.NaT, None),
        (pd.NA, None),
        ("", None),
        ("  ", None),
        ("N/A", None),
        ("NaT", None),
        ("--/--/----", None),
        ("unknown", None),
    ],
)
def test_parse_date(value: object, expected: tuple[int, int, int] | None) -> None:
    assert parse_date(value) == expected


def test_two_digit_years_are_never_in_the_future() -> None:
    this = f"{THIS_YY:02d}"
    assert parse_date(f"01/01/{this}") == (2000 + THIS_YY, 1, 1)
    if THIS_YY < 99:
        nxt = f"{THIS_YY + 1:02d}"
        assert parse_date(f"01/01/{nxt}") == (1900 + THIS_YY + 1, 1, 1)
        assert parse_date(f"01-Jan-{nxt}") == (1900 + THIS_YY + 1, 1, 1)
    assert parse_date("01/01/99") == (1999, 1, 1)


@pytest.mark.parametrize(
    "value",
    [
        "32/01/1985",
        "13/13/1985",
        "00/01/1985",
        "01/00/1985",
        "1849-12-31",
        "2101-01-01",
        "1985-13-13",
        "19851313",
        "99999999",
        "hello",
        "1985",
        "12/1985",
        "12 Foo 1985",
        "Smarch 12, 1985",
        "12/03-1985",
        "1985-03-12-01",
        "tomorrow",
        1985,
        1.5,
        19560409.5,
        True,
        dt.date(1700, 1, 1),
        b"1985-03-12",
    ],
)
def test_parse_date_rejects(value: object) -> None:
    with pytest.raises(UnparseableValue) as info:
        parse_date(value)
    assert str(value) not in str(info.value)
    assert not re.search(r"\d", str(info.value))


# --------------------------------------------------------------------------- sex


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("m", "m"),
        ("M", "m"),
        ("Male", "m"),
        ("MALE ", "m"),
        ("man", "m"),
        ("boy", "m"),
        ("M.", "m"),
        ("1", "m"),
        (1, "m"),
        (1.0, "m"),
        ("f", "f"),
        ("F", "f"),
        ("Female", "f"),
        ("woman", "f"),
        ("Girl", "f"),
        ("2", "f"),
        (2, "f"),
        (np.int64(2), "f"),
        ("x", "x"),
        ("X", "x"),
        ("i", "x"),
        ("Indeterminate", "x"),
        ("other", "x"),
        ("NB", "x"),
        ("non-binary", "x"),
        ("Non Binary", "x"),
        ("u", None),
        ("U", None),
        ("unknown", None),
        ("Not Known", None),
        ("not stated", None),
        ("0", None),
        ("9", None),
        (0, None),
        (None, None),
        (float("nan"), None),
        ("", None),
        ("-", None),
    ],
)
def test_normalise_sex(value: object, expected: str | None) -> None:
    assert normalise_sex(value) == expected


@pytest.mark.parametrize("value", ["q", "3", "mf", "males", "yes", 3, True, 1.5])
def test_normalise_sex_rejects(value: object) -> None:
    with pytest.raises(UnparseableValue, match="sex code") as info:
        normalise_sex(value)
    assert str(value) not in str(info.value)


# --------------------------------------------------------------------------- postcodes


def _uk(full: str, outward: str, inward: str | None, area: str) -> Postcode:
    return Postcode(
        full=full,
        outward=outward,
        inward=inward,
        area=area,
        district=outward,
        sector=outward + inward[0] if inward else None,
        uk=True,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SW1A 1AA", _uk("SW1A1AA", "SW1A", "1AA", "SW")),
        ("sw1a 1aa", _uk("SW1A1AA", "SW1A", "1AA", "SW")),
        ("SW1A1AA", _uk("SW1A1AA", "SW1A", "1AA", "SW")),
        ("  sw1a-1aa. ", _uk("SW1A1AA", "SW1A", "1AA", "SW")),
        ("M1 1AE", _uk("M11AE", "M1", "1AE", "M")),
        ("m11ae", _uk("M11AE", "M1", "1AE", "M")),
        ("B33 8TH", _uk("B338TH", "B33", "8TH", "B")),
        ("CR2 6XH", _uk("CR26XH", "CR2", "6XH", "CR")),
        ("DN55 1PT", _uk("DN551PT", "DN55", "1PT", "DN")),
        ("W1A 0AX", _uk("W1A0AX", "W1A", "0AX", "W")),
        ("EC1A 1BB", _uk("EC1A1BB", "EC1A", "1BB", "EC")),
        ("GIR 0AA", _uk("GIR0AA", "GIR", "0AA", "GIR")),
        # Outward code only.
        ("SW1A", _uk("SW1A", "SW1A", None, "SW")),
        ("w1", _uk("W1", "W1", None, "W")),
        ("LS12", _uk("LS12", "LS12", None, "LS")),
        # The inward code's digit: O, I and L read as 0, 1, 1.
        ("SW1A OAA", _uk("SW1A0AA", "SW1A", "0AA", "SW")),
        ("M1 IAE", _uk("M11AE", "M1", "1AE", "M")),
        ("m1 lae", _uk("M11AE", "M1", "1AE", "M")),
        # Foreign or unstructured codes.
        ("2074", Postcode(full="2074")),
        (2074, Postcode(full="2074")),
        (2074.0, Postcode(full="2074")),
        ("75001", Postcode(full="75001")),
        ("1012 AB", Postcode(full="1012AB")),  # Amsterdam: not "corrected" into UK
        ("K1A 0B1", Postcode(full="K1A0B1")),  # Canada
        ("D02 X285", Postcode(full="D02X285")),  # Irish Eircode
        (None, None),
        (float("nan"), None),
        ("", None),
        ("N/A", None),
        ("-", None),
    ],
)
def test_normalise_postcode(value: object, expected: Postcode | None) -> None:
    assert normalise_postcode(value) == expected


def test_foreign_postcode_has_only_full() -> None:
    pc = normalise_postcode("2074")
    assert pc is not None
    assert not pc.uk
    assert (pc.outward, pc.inward, pc.area, pc.district, pc.sector) == (None,) * 5


@pytest.mark.parametrize("value", ["hello", "ABCDEFGH", "12", "Q1", "12345678901", "东京", "x"])
def test_normalise_postcode_rejects(value: object) -> None:
    with pytest.raises(UnparseableValue, match="postcode") as info:
        normalise_postcode(value)
    assert str(value).upper() not in str(info.value).upper()


def test_postcode_is_frozen() -> None:
    pc = normalise_postcode("SW1A 1AA")
    assert pc is not None
    with pytest.raises(AttributeError):
        pc.full = "X"  # type: ignore[misc]


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12 High St", "12 high street"),
        ("12 High St.", "12 high street"),
        ("12 High St, London", "12 high street london"),
        ("High St 12", "high street 12"),
        ("12 High St London", "12 high street london"),
        ("St Albans Road", "saint albans road"),
        ("12 St Albans Rd", "12 saint albans road"),
        ("Flat 2, St. John's Ct", "flat 2 saint johns court"),
        ("Church of St Mary", "church of saint mary"),
        ("1 Acacia Ave", "1 acacia avenue"),
        ("1 Acacia Av.", "1 acacia avenue"),
        ("3 Mill Ln", "3 mill lane"),
        ("4 Oak Dr", "4 oak drive"),
        ("5 Moon Cres", "5 moon crescent"),
        ("6 Kings Ct", "6 kings court"),
        ("7 Queens Pl", "7 queens place"),
        ("8 Berkeley Sq", "8 berkeley square"),
        ("9 Kew Gdns", "9 kew gardens"),
        ("10 Elm Cl", "10 elm close"),
        ("11 Park Terr", "11 park terrace"),
        ("11 Park Tce", "11 park terrace"),
        ("12 Pacific Hwy", "12 pacific highway"),
        ("13 Marine Pde", "13 marine parade"),
        ("14 Sunset Blvd", "14 sunset boulevard"),
        ("Apt 4, 10 Downing St", "flat 4 10 downing street"),
        ("Apartment 4B", "flat 4b"),
        ("Unit 7 Trade Est", "flat 7 trade estate"),
        ("Smith & Sons Yd", "smith and sons yard"),
        ("Rue de la Paix, Café Müller", "rue de la paix cafe muller"),
        ("  12   HIGH   STREET  ", "12 high street"),
        ("Strand", "strand"),  # a whole word only
        ("", None),
        ("-", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_normalise_address(value: object, expected: str | None) -> None:
    assert normalise_address(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("St Albans", "saint albans"),
        ("St. Albans", "saint albans"),
        ("ST ALBANS", "saint albans"),
        ("Saint Albans", "saint albans"),
        ("Bury St Edmunds", "bury saint edmunds"),
        ("Stratford-upon-Avon", "stratford upon avon"),
        ("King's Lynn", "kings lynn"),
        ("Kings Lynn", "kings lynn"),
        ("Newcastle upon Tyne", "newcastle upon tyne"),
        ("Ynys Môn", "ynys mon"),
        ("Stoke", "stoke"),
        ("", None),
        (None, None),
    ],
)
def test_normalise_town(value: object, expected: str | None) -> None:
    assert normalise_town(value) == expected


# --------------------------------------------------------------------------- properties

_RAW = st.one_of(
    st.text(),
    st.text(alphabet="0123456789/-. :TtApPmMaAyYrRnNjJuUlLgGsSoOcCtTvVdDeEfFbB,", max_size=30),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)


@given(_RAW)
def test_parsers_raise_only_unparseable_value(value: object) -> None:
    for parser in (parse_date, normalise_sex, normalise_postcode):
        with contextlib.suppress(UnparseableValue):
            parser(value)


@given(_RAW)
def test_parse_date_results_are_in_range(value: object) -> None:
    try:
        out = parse_date(value)
    except UnparseableValue:
        return
    if out is not None:
        y, m, d = out
        assert 1850 <= y <= 2100 and 1 <= m <= 12 and 1 <= d <= 31


@given(_RAW)
def test_text_normalisers_never_raise(value: object) -> None:
    for fn in (normalise_name, normalise_address, normalise_town, split_names, is_missing):
        fn(value)


@given(st.dates(min_value=dt.date(1850, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_formats_agree_on_real_dates(day: dt.date) -> None:
    want = (day.year, day.month, day.day)
    forms = [
        day.isoformat(),
        day.strftime("%d/%m/%Y"),
        day.strftime("%d-%m-%Y"),
        day.strftime("%d.%m.%Y"),
        day.strftime("%Y%m%d"),
        day.strftime("%Y/%m/%d"),
        day.strftime("%d %b %Y"),
        day.strftime("%d %B %Y"),
        day.strftime("%B %d, %Y"),
        day.strftime("%d-%b-%Y"),
        float(day.strftime("%Y%m%d")),
        day,
    ]
    for form in forms:
        assert parse_date(form) == want, form


@pytest.mark.parametrize(
    "value",
    [math.nan, -math.nan, float("inf") * 0, np.float32("nan"), np.float64("nan")],
)
def test_nan_is_missing_everywhere(value: object) -> None:
    assert normalise_name(value) is None
    assert parse_date(value) is None
    assert normalise_postcode(value) is None
