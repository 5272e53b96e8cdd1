from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Purpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PURPOSE_UNSPECIFIED: _ClassVar[Purpose]
    PURPOSE_SAFEGUARDING_CHILD: _ClassVar[Purpose]
    PURPOSE_SAFEGUARDING_ADULT: _ClassVar[Purpose]
    PURPOSE_VETTING: _ClassVar[Purpose]
    PURPOSE_DOMESTIC_ABUSE: _ClassVar[Purpose]
    PURPOSE_PUBLIC_PROTECTION: _ClassVar[Purpose]
    PURPOSE_CRIMINAL_INVESTIGATION: _ClassVar[Purpose]
    PURPOSE_MISSING_PERSON: _ClassVar[Purpose]

class Band(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BAND_UNSPECIFIED: _ClassVar[Band]
    BAND_STRONG: _ClassVar[Band]
    BAND_PROBABLE: _ClassVar[Band]
    BAND_POSSIBLE: _ClassVar[Band]
PURPOSE_UNSPECIFIED: Purpose
PURPOSE_SAFEGUARDING_CHILD: Purpose
PURPOSE_SAFEGUARDING_ADULT: Purpose
PURPOSE_VETTING: Purpose
PURPOSE_DOMESTIC_ABUSE: Purpose
PURPOSE_PUBLIC_PROTECTION: Purpose
PURPOSE_CRIMINAL_INVESTIGATION: Purpose
PURPOSE_MISSING_PERSON: Purpose
BAND_UNSPECIFIED: Band
BAND_STRONG: Band
BAND_PROBABLE: Band
BAND_POSSIBLE: Band

class SubmitBatchRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: BatchHeader
    chunk: RecordChunk
    def __init__(self, header: _Optional[_Union[BatchHeader, _Mapping]] = ..., chunk: _Optional[_Union[RecordChunk, _Mapping]] = ...) -> None: ...

class BatchHeader(_message.Message):
    __slots__ = ("batch_id", "force", "epoch", "schema_fingerprint", "filter_bits", "record_count", "signature")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FILTER_BITS_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    force: str
    epoch: int
    schema_fingerprint: str
    filter_bits: int
    record_count: int
    signature: bytes
    def __init__(self, batch_id: _Optional[str] = ..., force: _Optional[str] = ..., epoch: _Optional[int] = ..., schema_fingerprint: _Optional[str] = ..., filter_bits: _Optional[int] = ..., record_count: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class RecordChunk(_message.Message):
    __slots__ = ("record_refs", "filters", "token_counts", "blocking_tokens")
    RECORD_REFS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNTS_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    record_refs: _containers.RepeatedScalarFieldContainer[str]
    filters: bytes
    token_counts: _containers.RepeatedScalarFieldContainer[int]
    blocking_tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, record_refs: _Optional[_Iterable[str]] = ..., filters: _Optional[bytes] = ..., token_counts: _Optional[_Iterable[int]] = ..., blocking_tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("batch_id", "record_count", "store_version", "already_applied")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALREADY_APPLIED_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    record_count: int
    store_version: int
    already_applied: bool
    def __init__(self, batch_id: _Optional[str] = ..., record_count: _Optional[int] = ..., store_version: _Optional[int] = ..., already_applied: _Optional[bool] = ...) -> None: ...

class RetractRecordsRequest(_message.Message):
    __slots__ = ("retraction_id", "force", "record_refs")
    RETRACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    RECORD_REFS_FIELD_NUMBER: _ClassVar[int]
    retraction_id: str
    force: str
    record_refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, retraction_id: _Optional[str] = ..., force: _Optional[str] = ..., record_refs: _Optional[_Iterable[str]] = ...) -> None: ...

class RetractRecordsResponse(_message.Message):
    __slots__ = ("retracted", "store_version", "already_applied")
    RETRACTED_FIELD_NUMBER: _ClassVar[int]
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALREADY_APPLIED_FIELD_NUMBER: _ClassVar[int]
    retracted: int
    store_version: int
    already_applied: bool
    def __init__(self, retracted: _Optional[int] = ..., store_version: _Optional[int] = ..., already_applied: _Optional[bool] = ...) -> None: ...

class Subject(_message.Message):
    __slots__ = ("subject_id", "filter", "blocking_tokens")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    filter: bytes
    blocking_tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, subject_id: _Optional[str] = ..., filter: _Optional[bytes] = ..., blocking_tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class QueryEncoding(_message.Message):
    __slots__ = ("epoch", "schema_fingerprint", "filter_bits")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FILTER_BITS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    schema_fingerprint: str
    filter_bits: int
    def __init__(self, epoch: _Optional[int] = ..., schema_fingerprint: _Optional[str] = ..., filter_bits: _Optional[int] = ...) -> None: ...

class SearchPurpose(_message.Message):
    __slots__ = ("purpose", "case_reference")
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    purpose: Purpose
    case_reference: str
    def __init__(self, purpose: _Optional[_Union[Purpose, str]] = ..., case_reference: _Optional[str] = ...) -> None: ...

class FindMatchesRequest(_message.Message):
    __slots__ = ("purpose", "encoding", "subjects", "include_own_force", "max_results")
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_OWN_FORCE_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    purpose: SearchPurpose
    encoding: QueryEncoding
    subjects: _containers.RepeatedCompositeFieldContainer[Subject]
    include_own_force: bool
    max_results: int
    def __init__(self, purpose: _Optional[_Union[SearchPurpose, _Mapping]] = ..., encoding: _Optional[_Union[QueryEncoding, _Mapping]] = ..., subjects: _Optional[_Iterable[_Union[Subject, _Mapping]]] = ..., include_own_force: _Optional[bool] = ..., max_results: _Optional[int] = ...) -> None: ...

class FieldAgreement(_message.Message):
    __slots__ = ("field", "level")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    field: str
    level: int
    def __init__(self, field: _Optional[str] = ..., level: _Optional[int] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("force", "record_ref", "score", "band", "agreement")
    FORCE_FIELD_NUMBER: _ClassVar[int]
    RECORD_REF_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    force: str
    record_ref: str
    score: float
    band: Band
    agreement: _containers.RepeatedCompositeFieldContainer[FieldAgreement]
    def __init__(self, force: _Optional[str] = ..., record_ref: _Optional[str] = ..., score: _Optional[float] = ..., band: _Optional[_Union[Band, str]] = ..., agreement: _Optional[_Iterable[_Union[FieldAgreement, _Mapping]]] = ...) -> None: ...

class SubjectMatches(_message.Message):
    __slots__ = ("subject_id", "matches")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    def __init__(self, subject_id: _Optional[str] = ..., matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ...) -> None: ...

class FindMatchesResponse(_message.Message):
    __slots__ = ("results", "store_version", "query_digest")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    QUERY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubjectMatches]
    store_version: int
    query_digest: str
    def __init__(self, results: _Optional[_Iterable[_Union[SubjectMatches, _Mapping]]] = ..., store_version: _Optional[int] = ..., query_digest: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("purpose", "encoding", "subjects", "include_own_force", "resume_token")
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_OWN_FORCE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    purpose: SearchPurpose
    encoding: QueryEncoding
    subjects: _containers.RepeatedCompositeFieldContainer[Subject]
    include_own_force: bool
    resume_token: str
    def __init__(self, purpose: _Optional[_Union[SearchPurpose, _Mapping]] = ..., encoding: _Optional[_Union[QueryEncoding, _Mapping]] = ..., subjects: _Optional[_Iterable[_Union[Subject, _Mapping]]] = ..., include_own_force: _Optional[bool] = ..., resume_token: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("started", "alert")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    started: WatchStarted
    alert: Alert
    def __init__(self, started: _Optional[_Union[WatchStarted, _Mapping]] = ..., alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class WatchStarted(_message.Message):
    __slots__ = ("watch_id", "resume_token", "store_version")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    watch_id: str
    resume_token: str
    store_version: int
    def __init__(self, watch_id: _Optional[str] = ..., resume_token: _Optional[str] = ..., store_version: _Optional[int] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("watch_id", "sequence", "subject_id", "match", "store_version", "created_unix_ms", "resume_token")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    watch_id: str
    sequence: int
    subject_id: str
    match: Match
    store_version: int
    created_unix_ms: int
    resume_token: str
    def __init__(self, watch_id: _Optional[str] = ..., sequence: _Optional[int] = ..., subject_id: _Optional[str] = ..., match: _Optional[_Union[Match, _Mapping]] = ..., store_version: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., resume_token: _Optional[str] = ...) -> None: ...

class ReadAuditLogRequest(_message.Message):
    __slots__ = ("since_seq",)
    SINCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    since_seq: int
    def __init__(self, since_seq: _Optional[int] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("seq", "kind", "json")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    json: str
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("epochs", "schema_fingerprints", "filter_bits", "store_version", "record_count", "max_subjects_per_call", "field_names", "config_fingerprint", "caller_force", "caller_role", "purposes", "audit_public_key")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    FILTER_BITS_FIELD_NUMBER: _ClassVar[int]
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_SUBJECTS_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    FIELD_NAMES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CALLER_FORCE_FIELD_NUMBER: _ClassVar[int]
    CALLER_ROLE_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    AUDIT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    epochs: _containers.RepeatedScalarFieldContainer[int]
    schema_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    filter_bits: int
    store_version: int
    record_count: int
    max_subjects_per_call: int
    field_names: _containers.RepeatedScalarFieldContainer[str]
    config_fingerprint: str
    caller_force: str
    caller_role: str
    purposes: _containers.RepeatedScalarFieldContainer[str]
    audit_public_key: bytes
    def __init__(self, epochs: _Optional[_Iterable[int]] = ..., schema_fingerprints: _Optional[_Iterable[str]] = ..., filter_bits: _Optional[int] = ..., store_version: _Optional[int] = ..., record_count: _Optional[int] = ..., max_subjects_per_call: _Optional[int] = ..., field_names: _Optional[_Iterable[str]] = ..., config_fingerprint: _Optional[str] = ..., caller_force: _Optional[str] = ..., caller_role: _Optional[str] = ..., purposes: _Optional[_Iterable[str]] = ..., audit_public_key: _Optional[bytes] = ...) -> None: ...
