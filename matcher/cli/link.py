"""``matcher encode``, ``matcher link`` and ``matcher evaluate``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from matcher.batch import EncodedBatch
from matcher.errors import FingerprintError, InputError
from matcher.linkage import DEFAULT_THRESHOLD
from matcher.schema import Hardening, LinkageSchema, default_schema


def register(sub: argparse._SubParsersAction[Any]) -> None:
    enc = sub.add_parser(
        "encode",
        help="normalise and encode a force's records (CSV or Parquet) into an encoded batch",
    )
    enc.add_argument("input", type=Path, help="records, .csv or .parquet")
    enc.add_argument("--force", required=True, help="this force's code")
    enc.add_argument("--keys", required=True, type=Path, help="keyring folder")
    enc.add_argument("-o", "--output", required=True, type=Path, help="encoded batch .parquet")
    enc.add_argument("--id-column", default="id", help="column of local record ids (default: id)")
    enc.add_argument("--epoch", type=int, default=None, help="key epoch (default: newest)")
    _schema_args(enc)
    enc.set_defaults(handler=_encode)

    link = sub.add_parser("link", help="link encoded batches of several forces")
    link.add_argument("batches", nargs="+", type=Path, help="encoded batches (.parquet)")
    link.add_argument("-o", "--output", required=True, type=Path, help="links .csv")
    link.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="match probability cut-off"
    )
    link.add_argument(
        "--many-to-many",
        action="store_true",
        help="keep every pair over the threshold (default: best match per other force)",
    )
    link.add_argument("--schema", type=Path, default=None, help="schema JSON (default: built-in)")
    link.add_argument(
        "--clusters",
        type=Path,
        default=None,
        help="also write force, record_ref, cluster for every record (multi-force clusters)",
    )
    link.set_defaults(handler=_link)

    ev = sub.add_parser(
        "evaluate", help="measure linkage quality on labelled records through the production path"
    )
    ev.add_argument("labelled", type=Path, help="labelled records .csv")
    ev.add_argument("--force-column", default="force")
    ev.add_argument("--truth-column", default="person")
    ev.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ev.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    _schema_args(ev)
    ev.set_defaults(handler=_evaluate)


def _schema_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schema", type=Path, default=None, help="schema JSON (default: built-in)")
    p.add_argument(
        "--no-hardening",
        action="store_true",
        help="explicit opt-out: plain encodings without hardening (weaker privacy)",
    )


def _load_schema(args: argparse.Namespace) -> LinkageSchema:
    if args.schema is not None:
        try:
            schema = LinkageSchema.from_json(args.schema.read_text())
        except OSError:
            raise InputError(f"cannot read schema file {args.schema}", field="schema") from None
    else:
        schema = default_schema()
    if getattr(args, "no_hardening", False):
        schema = schema.with_hardening(Hardening(mode="none"))
    return schema


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, every CSV column as text (empty fields missing), into
    Arrow-backed columns (which the encoder reads without converting them); clear errors
    for missing, empty or unreadable files."""
    if not path.exists():
        raise InputError(f"{path}: no such file", field="input")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path, dtype_backend="pyarrow")
        else:
            df = _read_csv(path)
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot be read ({type(exc).__name__})", field="input") from None
    if len(df) == 0:
        raise InputError(f"{path}: the file has no records", field="input")
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise InputError(f"{path}: the file is empty", field="input")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise InputError(
            f"{path}: repeated column name(s): {', '.join(repeated)}", field=",".join(repeated)
        )
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    df: pd.DataFrame = table.to_pandas(types_mapper=pd.ArrowDtype)
    return df


def _encode(args: argparse.Namespace) -> int:
    from matcher.encoding import encode_frame
    from matcher.keys import load_linkage_secret

    schema = _load_schema(args)
    secret = load_linkage_secret(args.keys, args.epoch)
    df = read_table(args.input)
    res = encode_frame(
        df, schema, secret, args.force, id_column=args.id_column, progress=sys.stderr.isatty()
    )
    out: Path = args.output
    refs_path = out.with_name(out.name.removesuffix(".parquet") + ".refs.csv")
    res.batch.to_parquet(out)
    try:
        _write_csv(res.refs, refs_path)
    except OSError:
        out.unlink(missing_ok=True)
        raise
    for issue in res.issues[:5]:
        print(f"warning: {issue} (field encoded as missing)", file=sys.stderr)
    if len(res.issues) > 5:
        print(f"warning: {len(res.issues) - 5} more unusable values", file=sys.stderr)
    print(
        f"encoded {len(res.batch)} records of force {args.force} "
        f"(epoch {secret.epoch}, schema {schema.fingerprint[:12]}) -> {out}; "
        f"reference map -> {refs_path} (keep it in the force)"
    )
    return 0


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` whole or not at all (a ``.partial`` file, then renamed)."""
    tmp = path.with_name(path.name + ".partial")
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _schema_for(batches: list[EncodedBatch], path: Path | None) -> LinkageSchema:
    if path is not None:
        return LinkageSchema.from_json(path.read_text())
    fp = batches[0].schema_fingerprint
    for cand in (default_schema(), default_schema(Hardening(mode="none"))):
        if cand.fingerprint == fp:
            return cand
    raise FingerprintError(
        f"batches use schema {fp[:12]}, which is not built in: pass --schema FILE"
    )


def _link(args: argparse.Namespace) -> int:
    from matcher.linkage import link_batches

    batches = [EncodedBatch.from_parquet(p) for p in args.batches]
    forces = [b.force for b in batches]
    if len(set(forces)) != len(forces):
        raise InputError(
            "two batches come from the same force; link each force once", field="batches"
        )
    schema = _schema_for(batches, args.schema)
    result = link_batches(
        batches,
        schema,
        threshold=args.threshold,
        one_to_one=not args.many_to_many,
        progress=sys.stderr.isatty(),
    )
    if args.clusters is not None:
        _write_csv(result.clusters, args.clusters)
    _write_csv(result.pairs, args.output)
    print(
        f"linked {sum(len(b) for b in batches)} records of {len(batches)} forces: "
        f"{len(result.pairs)} pairs from {result.candidates} candidates -> {args.output}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from matcher.evaluate import evaluate_frame

    df = read_table(args.labelled)
    report = evaluate_frame(
        df,
        force_column=args.force_column,
        truth_column=args.truth_column,
        schema=_load_schema(args),
        threshold=args.threshold,
    )
    if not args.json:
        for k, v in report.to_dict().items():
            print(f"{k:>10}: {v}")
    else:
        print(json.dumps(report.to_dict()))
    return 0
