from __future__ import annotations

import json

import pytest

from matcher.errors import SchemaError
from matcher.schema import Hardening, LinkageSchema, default_schema


def test_default_schema_layout_is_word_aligned_and_1024_bits() -> None:
    schema = default_schema()
    assert schema.total_bits == 1024
    offsets = [s.word_offset for s in schema.segments]
    assert offsets == sorted(offsets)
    assert sum(s.words for s in schema.segments) == 16
    assert {
        "forename",
        "surname",
        "other_names",
        "date_of_birth",
        "sex",
        "postcode",
        "address",
        "town",
    } <= {s.name for s in schema.segments}


def test_hardening_is_on_by_default() -> None:
    assert default_schema().hardening.mode == "rr"


def test_fingerprint_is_stable_and_tracks_every_setting() -> None:
    a, b = default_schema(), default_schema()
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64
    plain = default_schema(Hardening(mode="none"))
    salted = default_schema(Hardening(salt_field="year_of_birth"))
    assert len({a.fingerprint, plain.fingerprint, salted.fingerprint}) == 3


def test_round_trip_through_json() -> None:
    schema = default_schema()
    again = LinkageSchema.from_json(schema.to_json())
    assert again == schema
    assert again.fingerprint == schema.fingerprint


def test_all_problems_are_reported_at_once() -> None:
    data = default_schema().to_dict()
    data["fields"][0]["bits"] = 100  # not a multiple of 64
    data["fields"][1]["k"] = 0
    data["hardening"]["flip_probability"] = 0.9
    data["colour"] = "blue"
    with pytest.raises(SchemaError) as info:
        LinkageSchema.from_dict(data)
    problems = info.value.problems
    assert any("colour" in p for p in problems)
    assert any("bits" in p for p in problems)
    assert any(".k" in p for p in problems)
    assert any("flip_probability" in p for p in problems)


def test_unknown_field_setting_and_missing_keys() -> None:
    data = {
        "name": "x",
        "fields": [
            {"name": "a", "kind": "name", "columns": ["a"], "bits": 64, "k": 4, "colour": 1},
            {"name": "b"},
        ],
    }
    with pytest.raises(SchemaError) as info:
        LinkageSchema.from_dict(data)
    text = str(info.value)
    assert "colour" in text and "fields[1].kind: missing" in text


def test_invalid_json_and_version() -> None:
    with pytest.raises(SchemaError, match="not valid JSON"):
        LinkageSchema.from_json("{")
    data = default_schema().to_dict()
    data["version"] = 99
    with pytest.raises(SchemaError, match="version"):
        LinkageSchema.from_json(json.dumps(data))


def test_fields_sharing_a_key_domain_need_equal_widths() -> None:
    data = default_schema().to_dict()
    for f in data["fields"]:
        if f["name"] == "surname":
            f["bits"] = 192
    with pytest.raises(SchemaError, match="equal widths"):
        LinkageSchema.from_dict(data)
