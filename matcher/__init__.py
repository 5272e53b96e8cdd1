"""matcher: privacy-preserving cross-force record matching for UK police safeguarding.

Forces normalise and encode their nominal records locally (:func:`encode_frame`) with a
shared linkage secret (:class:`LinkageSecret`); only the resulting :class:`EncodedBatch`
leaves the force. :func:`link_batches` links batches of several forces; the gRPC service
(``matcher serve``) does the same for risk assessors' queries.

>>> import matcher
>>> matcher.default_schema().total_bits
1024
"""

from matcher.batch import EncodedBatch
from matcher.encoding import EncodeResult, FieldIssue, encode_frame
from matcher.errors import (
    AuditError,
    AuthError,
    EncodingError,
    EpochError,
    FingerprintError,
    InputError,
    KeyringError,
    MatcherError,
    NotFoundError,
    QuotaError,
    SchemaError,
    StoreError,
)
from matcher.evaluate import QualityReport, evaluate_frame
from matcher.keys import LinkageSecret, create_linkage_secret, load_linkage_secret
from matcher.linkage import LinkResult, link_batches
from matcher.schema import FieldSpec, Hardening, LinkageSchema, default_schema
from matcher.scoring import MatchModel, default_model, train_model

__version__ = "0.1.0"

__all__ = [
    "AuditError",
    "AuthError",
    "EncodeResult",
    "EncodedBatch",
    "EncodingError",
    "EpochError",
    "FieldIssue",
    "FieldSpec",
    "FingerprintError",
    "Hardening",
    "InputError",
    "KeyringError",
    "LinkResult",
    "LinkageSchema",
    "LinkageSecret",
    "MatchModel",
    "MatcherError",
    "NotFoundError",
    "QualityReport",
    "QuotaError",
    "SchemaError",
    "StoreError",
    "__version__",
    "create_linkage_secret",
    "default_model",
    "default_schema",
    "encode_frame",
    "evaluate_frame",
    "link_batches",
    "load_linkage_secret",
    "train_model",
]
