"""Regenerate the committed gRPC stubs from ``proto/matcher/v1/matcher.proto``.

Run ``python -m matcher._proto.generate`` from the repository root (needs grpcio-tools,
a dev dependency). ``tests/test_proto.py`` fails when the committed stubs differ from
what this produces, so edit the ``.proto`` file, regenerate, and commit both.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["PROTO_ROOT", "STUB_DIR", "generate", "main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILE = "matcher/v1/matcher.proto"
STUB_DIR = Path(__file__).resolve().parent
_GENERATED = ("matcher_pb2.py", "matcher_pb2.pyi", "matcher_pb2_grpc.py")


def generate() -> dict[str, str]:
    """Run protoc and return the generated stubs' text, keyed by file name."""
    # grpc-tools is a dev dependency (untyped), imported only here.
    protoc: Any = importlib.import_module("grpc_tools.protoc")

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO_ROOT / PROTO_FILE),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        out: dict[str, str] = {}
        for name in _GENERATED:
            text = (Path(tmp) / "matcher" / "v1" / name).read_text()
            # The generated module lives in matcher._proto, not in a top-level matcher.v1.
            text = text.replace(
                "from matcher.v1 import matcher_pb2", "from matcher._proto import matcher_pb2"
            )
            out[name] = text
        return out


def main() -> int:
    for name, text in generate().items():
        (STUB_DIR / name).write_text(text)
        print(f"wrote {STUB_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
