"""Building and running the gRPC server: TLS always, health checking, reflection.

:func:`create_server` builds and starts a server bound to ``listen`` (port 0 picks a
free port) and returns it with the port; :func:`serve` runs one until SIGINT/SIGTERM and
stops it gracefully (health goes NOT_SERVING, streams end, in-flight calls finish, the
audit log writes its shutdown checkpoint, the store closes).
"""

from __future__ import annotations

import signal
import threading
from concurrent import futures
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from matcher.errors import InputError
from matcher.pki import ForceKeyRegistry, load_server_tls
from matcher.scoring import MatchModel
from matcher.service.auditing import ServiceAudit
from matcher.service.auth import SERVICE_NAME, GuardInterceptor
from matcher.service.config import ServiceConfig, load_accepted
from matcher.service.core import MatcherCore
from matcher.service.servicer import MatcherServicer, rpc_handler
from matcher.store import open_store

__all__ = ["MatcherServer", "create_server", "serve"]


class MatcherServer:
    """A running service: the gRPC server and what it owns (core, audit, store)."""

    def __init__(
        self,
        grpc_server: grpc.Server,
        core: MatcherCore,
        audit: ServiceAudit,
        health_servicer: health.HealthServicer,
    ) -> None:
        self.grpc_server = grpc_server
        self.core = core
        self.audit = audit
        self.health = health_servicer
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: refuse new calls, end watch streams, finish in-flight calls."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self.health.enter_graceful_shutdown()
            self.core.watches.close()
            grace = self.core.config.grace_seconds if grace is None else grace
            self.grpc_server.stop(grace).wait()
            try:
                self.audit.close()
            finally:
                self.core.store.close()
                self._stopped.set()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` has finished (or ``timeout``); True if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> MatcherServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(0)


def _open_audit(keys_dir: Path, store_url: str, enabled: bool, config_hash: str) -> ServiceAudit:
    if not enabled:
        return ServiceAudit(None, config_hash=config_hash)
    from matcher.audit import AUDIT_PRIVATE_KEY_FILE, AuditLog, load_audit_private_key

    key = load_audit_private_key(keys_dir) if (keys_dir / AUDIT_PRIVATE_KEY_FILE).exists() else None
    return ServiceAudit(AuditLog.open(store_url, key), config_hash=config_hash)


def create_server(
    keys_dir: Path | str,
    store_url: str,
    *,
    listen: str = "127.0.0.1:0",
    config: ServiceConfig | None = None,
    model: MatchModel | None = None,
    max_workers: int = 32,
) -> tuple[MatcherServer, int]:
    """Build, bind and start the service; returns it and the bound port.

    ``keys_dir`` holds the CA, the server certificate, the forces' registered signing
    keys, ``service.json`` and (optionally) the audit signing key, never the linkage
    secret. ``config`` defaults to what ``service.json`` accepts.

    >>> # server, port = create_server("keys", "sqlite:///store.db", listen="127.0.0.1:0")
    >>> # ... server.stop()
    """
    keys_dir = Path(keys_dir)
    if config is None:
        epochs, schemas = load_accepted(keys_dir)
        config = ServiceConfig(epochs=epochs, schemas=schemas)
    tls = load_server_tls(keys_dir)
    store = open_store(store_url)
    try:
        core = MatcherCore(
            store, config, ForceKeyRegistry.load(keys_dir), keys_dir=keys_dir, model=model
        )
        audit = _open_audit(keys_dir, store_url, config.audit, core.model.fingerprint)
    except BaseException:
        store.close()
        raise
    limit = config.limits.max_message_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="matcher-rpc"),
        interceptors=[GuardInterceptor(audit)],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    server.add_generic_rpc_handlers((rpc_handler(MatcherServicer(core, audit)),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    creds = grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
    )
    try:
        port = server.add_secure_port(listen, creds)
    except RuntimeError:
        port = 0
    if not port:
        audit.close()
        store.close()
        raise InputError("listen: cannot bind the address", field="listen")
    server.start()
    return MatcherServer(server, core, audit, health_servicer), port


def serve(keys_dir: Path | str, store_url: str, listen: str) -> int:
    """Run the service until SIGINT or SIGTERM; returns an exit status."""
    server, port = create_server(keys_dir, store_url, listen=listen)
    host = listen.rsplit(":", 1)[0]
    print(
        f"matcher service listening on {host}:{port} (store version "
        f"{server.core.store_version}, {len(server.core.index)} records)",
        flush=True,
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.stop, name="matcher-stop").start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not server.wait_for_termination(0.5):
        pass
    print("matcher service stopped", flush=True)
    return 0
