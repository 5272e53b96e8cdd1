"""The linkage schema: which fields are encoded, how, and with what hardening.

The schema is typed, versioned and validated in one place; every problem is collected
before :class:`~matcher.errors.SchemaError` is raised. Its :attr:`LinkageSchema.fingerprint`
travels with every encoded batch, so a service can refuse encodings made under another
schema.

Each field owns a word-aligned *segment* of the record's bit vector. The whole vector is
what the Dice kernel compares for candidate generation; the segments are what per-field
scoring compares.

>>> schema = default_schema()
>>> schema.total_bits
1024
>>> schema.segment("surname").bits
128
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast, get_args

from matcher.errors import SchemaError

__all__ = [
    "SCHEMA_VERSION",
    "FieldKind",
    "FieldSpec",
    "Hardening",
    "LinkageSchema",
    "Segment",
    "default_schema",
]

SCHEMA_VERSION = 1

FieldKind = Literal["name", "nickname", "names", "date", "sex", "postcode", "address", "town"]
HardeningMode = Literal["none", "rr"]

_FIELD_KEYS = {"name", "kind", "columns", "bits", "k", "q", "key_domain", "required"}
_HARDENING_KEYS = {"mode", "flip_probability", "salt_field"}
_SCHEMA_KEYS = {"version", "name", "fields", "hardening"}


@dataclass(frozen=True)
class FieldSpec:
    """One encoded field.

    ``columns`` are the input columns feeding it (``names`` fields may take several);
    ``bits`` is the segment width (a multiple of 64); ``k`` is the number of hash positions
    per token; ``q`` the q-gram length for text-like kinds. Fields with the same
    ``key_domain`` share a derived key, which lets forename and surname be compared across
    (name transposition). ``required`` means the *column* must exist in the input; its
    values may still be empty.
    """

    name: str
    kind: FieldKind
    columns: tuple[str, ...]
    bits: int
    k: int
    q: int = 2
    key_domain: str = ""
    required: bool = False

    @property
    def domain(self) -> str:
        return self.key_domain or self.name


@dataclass(frozen=True)
class Hardening:
    """Hardening applied after hashing.

    ``mode="rr"`` (the default) flips each bit with probability ``flip_probability`` using
    a keyed, per-record pseudo-random stream (randomized response), so that equal field
    values in different records no longer give equal segments. ``salt_field`` optionally
    mixes a stable attribute (``"year_of_birth"`` or ``"sex"``) into the name keys.
    ``mode="none"`` is the explicit opt-out.
    """

    mode: HardeningMode = "rr"
    flip_probability: float = 0.02
    salt_field: str | None = None


@dataclass(frozen=True)
class Segment:
    """Where a field's bits live in the record vector, in 64-bit words."""

    name: str
    word_offset: int
    words: int

    @property
    def bits(self) -> int:
        return self.words * 64


@dataclass(frozen=True)
class LinkageSchema:
    """A validated linkage schema; construct with :meth:`from_dict` or :func:`default_schema`."""

    name: str
    fields: tuple[FieldSpec, ...]
    hardening: Hardening = field(default_factory=Hardening)
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        problems = _validate(self.version, self.fields, self.hardening)
        if problems:
            raise SchemaError(problems)

    # -- layout -------------------------------------------------------------------------
    @property
    def total_bits(self) -> int:
        return sum(f.bits for f in self.fields)

    @property
    def total_words(self) -> int:
        return self.total_bits // 64

    @property
    def segments(self) -> tuple[Segment, ...]:
        out: list[Segment] = []
        offset = 0
        for f in self.fields:
            out.append(Segment(f.name, offset, f.bits // 64))
            offset += f.bits // 64
        return tuple(out)

    def segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise SchemaError([f"no field named {name!r}"])

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise SchemaError([f"no field named {name!r}"])

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Every field's columns, each once, in field order."""
        return tuple(dict.fromkeys(c for f in self.fields for c in f.columns))

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The columns of the required fields, each once, in field order."""
        return tuple(dict.fromkeys(c for f in self.fields if f.required for c in f.columns))

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "fields": [{**asdict(f), "columns": list(f.columns)} for f in self.fields],
            "hardening": asdict(self.hardening),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical JSON form; carried by every encoding."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Any) -> LinkageSchema:
        """Build and validate a schema from its dict form, reporting every problem."""
        problems: list[str] = []
        if not isinstance(data, dict):
            raise SchemaError(["schema must be a JSON object"])
        for key in sorted(set(data) - _SCHEMA_KEYS):
            problems.append(f"unknown schema setting {key!r}")
        version = data.get("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            problems.append(f"version: unsupported schema version {version!r}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            problems.append("name: must be a non-empty string")
        raw_fields = data.get("fields")
        fields: list[FieldSpec] = []
        if not isinstance(raw_fields, list) or not raw_fields:
            problems.append("fields: must be a non-empty list")
            raw_fields = []
        for i, rf in enumerate(raw_fields):
            spec = _field_from_dict(rf, f"fields[{i}]", problems)
            if spec is not None:
                fields.append(spec)
        hardening = _hardening_from_dict(data.get("hardening", {}), problems)
        if fields:
            problems.extend(
                p for p in _validate(SCHEMA_VERSION, tuple(fields), hardening) if p not in problems
            )
        if problems:
            raise SchemaError(problems)
        return cls(name=cast(str, name), fields=tuple(fields), hardening=hardening)

    @classmethod
    def from_json(cls, text: str) -> LinkageSchema:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError([f"schema is not valid JSON (line {exc.lineno})"]) from None
        return cls.from_dict(data)

    def with_hardening(self, hardening: Hardening) -> LinkageSchema:
        return LinkageSchema(name=self.name, fields=self.fields, hardening=hardening)


def _field_from_dict(rf: Any, where: str, problems: list[str]) -> FieldSpec | None:
    if not isinstance(rf, dict):
        problems.append(f"{where}: must be an object")
        return None
    n0 = len(problems)
    for key in sorted(set(rf) - _FIELD_KEYS):
        problems.append(f"{where}: unknown setting {key!r}")
    for key in ("name", "kind", "columns", "bits", "k"):
        if key not in rf:
            problems.append(f"{where}.{key}: missing")
    if len(problems) > n0:
        return None
    columns = rf["columns"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        problems.append(f"{where}.columns: must be a list of column names")
        return None
    ints_ok = True
    for key in ("bits", "k", "q"):
        if key in rf and (not isinstance(rf[key], int) or isinstance(rf[key], bool)):
            problems.append(f"{where}.{key}: must be an integer")
            ints_ok = False
    if not ints_ok:
        return None
    try:
        return FieldSpec(
            name=str(rf["name"]),
            kind=rf["kind"],
            columns=tuple(columns),
            bits=rf["bits"],
            k=rf["k"],
            q=rf.get("q", 2),
            key_domain=str(rf.get("key_domain", "")),
            required=bool(rf.get("required", False)),
        )
    except TypeError:
        problems.append(f"{where}: malformed field")
        return None


def _hardening_from_dict(rh: Any, problems: list[str]) -> Hardening:
    if not isinstance(rh, dict):
        problems.append("hardening: must be an object")
        return Hardening()
    for key in sorted(set(rh) - _HARDENING_KEYS):
        problems.append(f"hardening: unknown setting {key!r}")
    mode = rh.get("mode", "rr")
    if mode not in get_args(HardeningMode):
        problems.append(f"hardening.mode: must be one of {', '.join(get_args(HardeningMode))}")
        mode = "rr"
    fp = rh.get("flip_probability", Hardening.flip_probability)
    if not isinstance(fp, int | float) or isinstance(fp, bool):
        problems.append("hardening.flip_probability: must be a number")
        fp = Hardening.flip_probability
    return Hardening(mode=mode, flip_probability=float(fp), salt_field=rh.get("salt_field"))


_SALT_FIELDS = {"year_of_birth", "sex"}


def _validate(version: int, fields: tuple[FieldSpec, ...], hardening: Hardening) -> list[str]:
    problems: list[str] = []
    if version != SCHEMA_VERSION:
        problems.append(f"version: unsupported schema version {version!r}")
    if not fields:
        problems.append("fields: at least one field is needed")
    names = [f.name for f in fields]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"fields: duplicate field name {dup!r}")
    kinds = get_args(FieldKind)
    domain_bits: dict[str, int] = {}
    for f in fields:
        where = f"field {f.name!r}"
        if not f.name.isidentifier():
            problems.append(f"{where}: name must be an identifier")
        if f.kind not in kinds:
            problems.append(f"{where}.kind: must be one of {', '.join(kinds)}")
        if not f.columns:
            problems.append(f"{where}.columns: at least one column is needed")
        if f.bits <= 0 or f.bits % 64:
            problems.append(f"{where}.bits: must be a positive multiple of 64")
        if not 1 <= f.k <= 64:
            problems.append(f"{where}.k: must be between 1 and 64")
        if not 1 <= f.q <= 4:
            problems.append(f"{where}.q: must be between 1 and 4")
        if f.key_domain:
            prev = domain_bits.setdefault(f.key_domain, f.bits)
            if prev != f.bits:
                problems.append(
                    f"{where}.bits: fields sharing key_domain {f.key_domain!r} need equal widths"
                )
    h = hardening
    if h.mode not in get_args(HardeningMode):
        problems.append(f"hardening.mode: must be one of {', '.join(get_args(HardeningMode))}")
    if not 0.0 <= h.flip_probability < 0.5:
        problems.append("hardening.flip_probability: must be in [0, 0.5)")
    if h.salt_field is not None and h.salt_field not in _SALT_FIELDS:
        problems.append(f"hardening.salt_field: must be one of {', '.join(sorted(_SALT_FIELDS))}")
    return problems


def default_schema(hardening: Hardening | None = None) -> LinkageSchema:
    """The default UK nominal schema (1024 bits)."""
    return LinkageSchema(
        name="uk-nominal",
        fields=(
            FieldSpec("forename", "name", ("forename",), 128, 5, key_domain="name", required=True),
            # The canonical root of the forename (bill -> william), so nicknames agree.
            FieldSpec("forename_root", "nickname", ("forename",), 64, 6),
            FieldSpec("surname", "name", ("surname",), 128, 5, key_domain="name", required=True),
            FieldSpec(
                "other_names", "names", ("middle_names", "aliases"), 128, 5, key_domain="name"
            ),
            FieldSpec("date_of_birth", "date", ("date_of_birth",), 128, 4, required=True),
            FieldSpec("sex", "sex", ("sex",), 64, 8),
            FieldSpec("postcode", "postcode", ("postcode",), 128, 4),
            FieldSpec("address", "address", ("address",), 192, 3),
            FieldSpec("town", "town", ("town",), 64, 3),
        ),
        hardening=hardening or Hardening(),
    )
