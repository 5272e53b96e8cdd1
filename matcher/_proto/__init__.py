"""Generated gRPC stubs for ``proto/matcher/v1/matcher.proto`` (do not edit by hand).

Regenerate with ``python -m matcher._proto.generate``.
"""
