"""kill -9 of the server during submissions, then a restart: nothing acknowledged is lost
and no batch is half applied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from matcher.batch import EncodedBatch, new_record_refs
from matcher.pki import load_signing_key, sign_batch
from matcher.service.client import _chunks
from matcher.service.servicer import pb
from matcher.store import BatchEvent, open_store

from service_helpers import client, make_keyring

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyring(tmp_path_factory.mktemp("keys"))


def start_server(keys: Path, url: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "matcher",
            "serve",
            "--keys",
            str(keys),
            "--store",
            url,
            "--listen",
            "127.0.0.1:0",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on" in line, line
    port = int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
    return proc, port


def random_batch(n: int, seed: int, force: str = "F01") -> EncodedBatch:
    rng = np.random.default_rng(seed)
    from service_helpers import SCHEMA

    return EncodedBatch(
        force=force,
        epoch=1,
        schema_fingerprint=SCHEMA.fingerprint,
        filter_bits=1024,
        record_refs=new_record_refs(n),
        filters=rng.integers(0, 2**63, size=(n, 16), dtype=np.uint64),
        blocking_tokens=[rng.integers(0, 2**63, size=4, dtype=np.uint64) for _ in range(n)],
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def test_kill_during_streaming_then_restart(keys: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    proc, port = start_server(keys, url)
    try:
        acked = random_batch(500, 1)
        with client(keys, port, "F01", "submitter") as c:
            assert c.submit(acked, load_signing_key(keys, "F01")).store_version == 1
            partial = random_batch(3000, 2)
            sent_some = threading.Event()
            errors: list[grpc.StatusCode] = []

            def slow() -> Iterator[object]:
                header = pb.BatchHeader(
                    batch_id=partial.batch_id,
                    force="F01",
                    epoch=1,
                    schema_fingerprint=partial.schema_fingerprint,
                    filter_bits=1024,
                    record_count=len(partial),
                    signature=sign_batch(load_signing_key(keys, "F01"), partial),
                )
                for i, msg in enumerate(_chunks(header, partial, 500)):
                    yield msg
                    if i == 3:
                        sent_some.set()
                        time.sleep(30)  # the server dies meanwhile

            def run() -> None:
                call = c.channel.stream_unary(
                    "/matcher.v1.Matcher/SubmitBatch",
                    request_serializer=pb.SubmitBatchRequest.SerializeToString,
                    response_deserializer=pb.SubmitBatchResponse.FromString,
                )
                try:
                    call(slow(), timeout=20)
                except grpc.RpcError as exc:
                    errors.append(exc.code())

            t = threading.Thread(target=run, daemon=True)
            t.start()
            assert sent_some.wait(20)
            time.sleep(0.3)
            _kill(proc)
            t.join(25)
            assert errors and errors[0] != grpc.StatusCode.OK
    finally:
        _kill(proc)
    proc, port = start_server(keys, url)
    try:
        with client(keys, port, "F01", "admin") as c:
            info = c.info()
        assert (info.store_version, info.record_count) == (1, 500)
    finally:
        _kill(proc)


@pytest.mark.parametrize(
    "delay",
    [0.4, pytest.param(0.05, marks=pytest.mark.slow), pytest.param(1.0, marks=pytest.mark.slow)],
)
def test_kill_at_random_moments_is_all_or_nothing(keys: Path, tmp_path: Path, delay: float) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    proc, port = start_server(keys, url)
    acked: list[EncodedBatch] = []
    sizes = [2000, 5000, 3000, 8000, 4000, 6000]
    try:
        with client(keys, port, "F01", "submitter") as c:
            key = load_signing_key(keys, "F01")
            done = threading.Event()

            def run() -> None:
                try:
                    for i, n in enumerate(sizes):
                        b = random_batch(n, 100 + i)
                        c.submit(b, key)
                        acked.append(b)
                except grpc.RpcError:
                    pass
                finally:
                    done.set()

            t = threading.Thread(target=run, daemon=True)
            t.start()
            time.sleep(delay)
            _kill(proc)
            assert done.wait(30)
    finally:
        _kill(proc)
    proc, port = start_server(keys, url)
    _kill(proc)  # restarted cleanly (the index rebuilt from the store); now inspect it
    with open_store(url) as store:
        events = [e for e in store.events() if isinstance(e, BatchEvent)]
        stored = {e.batch.batch_id: len(e.batch) for e in events}
        assert store.record_count() == sum(stored.values())
    for b in acked:  # nothing acknowledged is lost ...
        assert stored.get(b.batch_id) == len(b)
    # ... and every stored batch is whole, in submission order.
    assert list(stored.values()) == sizes[: len(stored)]
    print(f"delay {delay}: {len(acked)} acknowledged, {len(stored)} stored")


def test_sigterm_stops_gracefully_with_a_final_checkpoint(keys: Path, tmp_path: Path) -> None:
    from matcher.audit import export_from_store, load_audit_public_key, verify

    url = f"sqlite:///{tmp_path / 'store.db'}"
    proc, port = start_server(keys, url)
    try:
        with client(keys, port, "F01", "submitter") as c:
            c.submit(random_batch(50, 3), load_signing_key(keys, "F01"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        _kill(proc)
    out = tmp_path / "audit.jsonl"
    export_from_store(url, out)
    report = verify(out, load_audit_public_key(keys), strict=True)
    assert report.ok, report


def test_readers_never_see_half_a_batch(keys: Path, tmp_path: Path) -> None:
    from service_helpers import running

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with running(keys, url) as (server, port):
        seen: list[int] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                seen.append(len(server.core.index))

        t = threading.Thread(target=read, daemon=True)
        t.start()
        with client(keys, port, "F01", "submitter") as c:
            key = load_signing_key(keys, "F01")
            for i in range(5):
                c.submit(random_batch(1000, 200 + i), key)
        stop.set()
        t.join(5)
    assert seen and all(n % 1000 == 0 for n in seen)
    assert seen[-1] == 5000
