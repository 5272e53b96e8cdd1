"""The wire contract: committed stubs are current, every rpc and field is commented."""

from __future__ import annotations

import re
from pathlib import Path

from matcher._proto.generate import PROTO_ROOT, STUB_DIR, generate

PROTO = PROTO_ROOT / "matcher" / "v1" / "matcher.proto"


def test_committed_stubs_are_not_stale() -> None:
    for name, text in generate().items():
        committed = (STUB_DIR / name).read_text()
        assert committed == text, (
            f"matcher/_proto/{name} is stale: run 'python -m matcher._proto.generate'"
        )


def test_every_rpc_message_field_and_enum_value_is_commented() -> None:
    lines = PROTO.read_text().splitlines()
    decl = re.compile(
        r"^\s*(rpc |message |enum |oneof |(repeated |optional )?[\w.]+ \w+ = \d+;|\w+ = \d+;)"
    )
    missing = []
    for i, line in enumerate(lines):
        if decl.match(line) and not lines[i - 1].strip().startswith("//"):
            if line.strip().startswith("oneof "):
                continue
            missing.append(f"line {i + 1}: {line.strip()}")
    assert not missing, "uncommented declarations:\n" + "\n".join(missing)


def test_service_has_every_rpc() -> None:
    from matcher.service.servicer import pb

    service = pb.DESCRIPTOR.services_by_name["Matcher"]
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {
        "SubmitBatch": (True, False),
        "RetractRecords": (False, False),
        "FindMatches": (False, False),
        "Watch": (False, True),
        "ReadAuditLog": (False, True),
        "GetInfo": (False, False),
    }


def test_stub_dir_is_the_package() -> None:
    assert Path(__file__).resolve().parents[1] / "matcher" / "_proto" == STUB_DIR
