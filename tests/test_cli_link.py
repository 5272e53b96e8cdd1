from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from matcher.batch import EncodedBatch
from matcher.cli import main

from handmade import handmade_frame


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    assert main(["keys", "init", str(d)]) == 0
    return d


def _force_csv(tmp_path: Path, force: str) -> Path:
    df = handmade_frame()
    path = tmp_path / f"{force}.csv"
    df[df.force == force].drop(columns=["person", "force"]).to_csv(path, index=False)
    return path


def _encode(tmp_path: Path, keys: Path, force: str, out: Path, *extra: str) -> int:
    """``matcher encode`` of one force's hand-made rows."""
    src = _force_csv(tmp_path, force)
    return main(["encode", str(src), "--force", force, "--keys", str(keys), "-o", str(out), *extra])


def test_encode_writes_batch_and_private_reference_map(tmp_path: Path, keys: Path) -> None:
    out = tmp_path / "wy.parquet"
    assert _encode(tmp_path, keys, "WY", out) == 0
    src = tmp_path / "WY.csv"
    batch = EncodedBatch.from_parquet(out)
    refs = pd.read_csv(tmp_path / "wy.refs.csv", dtype=str)
    assert list(refs.columns) == ["record_ref", "id"]
    assert sorted(refs.id) == sorted(pd.read_csv(src, dtype=str).id)
    assert set(refs.record_ref) == set(batch.record_refs)
    assert batch.force == "WY" and batch.epoch == 1


def test_encode_parquet_input(tmp_path: Path, keys: Path) -> None:
    src = tmp_path / "in.parquet"
    pd.read_csv(_force_csv(tmp_path, "GM"), dtype=str).to_parquet(src)
    out = tmp_path / "gm.parquet"
    assert main(["encode", str(src), "--force", "GM", "--keys", str(keys), "-o", str(out)]) == 0
    assert len(EncodedBatch.from_parquet(out)) == 8


def test_link_and_evaluate_end_to_end(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outs = []
    for force in ("WY", "GM", "MP"):
        out = tmp_path / f"{force}.parquet"
        assert _encode(tmp_path, keys, force, out) == 0
        outs.append(str(out))
    links = tmp_path / "links.csv"
    assert main(["link", *outs, "-o", str(links)]) == 0
    pairs = pd.read_csv(links)
    assert list(pairs.columns) == ["force_a", "record_ref_a", "force_b", "record_ref_b", "score"]
    assert len(pairs) == 11
    labelled = tmp_path / "labelled.csv"
    handmade_frame().to_csv(labelled, index=False)
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(labelled),
                "--force-column",
                "force",
                "--truth-column",
                "person",
                "--json",
            ]
        )
        == 0
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    figures = json.loads(last)
    assert set(figures) == {
        "precision",
        "recall",
        "f1",
        "tp",
        "fp",
        "fn",
        "records",
        "forces",
        "seconds",
    }
    assert figures["f1"] == 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("id,forename,date_of_birth\n1,John,1980-01-01\n", "surname"),
        ("id,forename,surname,date_of_birth\n", "no records"),
    ],
)
def test_bad_input_fails_cleanly_and_writes_nothing(
    tmp_path: Path, keys: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(content)
    out = tmp_path / "bad.parquet"
    code = main(["encode", str(src), "--force", "WY", "--keys", str(keys), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert list(tmp_path.glob("bad.*")) == [src]


def test_wrong_epoch_and_missing_keys_are_clear(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _force_csv(tmp_path, "WY")
    out = tmp_path / "o.parquet"
    assert _encode(tmp_path, keys, "WY", out, "--epoch", "5") == 2
    assert "epoch 5" in capsys.readouterr().err
    assert (
        main(
            ["encode", str(src), "--force", "WY", "--keys", str(tmp_path / "none"), "-o", str(out)]
        )
        == 2
    )
    assert "keys init" in capsys.readouterr().err
    assert not out.exists()


def test_bad_schema_file_lists_problems(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"name": "x", "fields": [], "hardening": {"mode": "weird"}}))
    code = _encode(tmp_path, keys, "WY", tmp_path / "o.parquet", "--schema", str(schema))
    err = capsys.readouterr().err
    assert code == 2 and "fields" in err and "hardening" in err


def test_link_refuses_batches_from_different_epochs(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "a.parquet"
    b = tmp_path / "b.parquet"
    assert _encode(tmp_path, keys, "WY", a) == 0
    assert main(["keys", "init", str(keys)]) == 0  # rotate: epoch 2
    assert _encode(tmp_path, keys, "GM", b) == 0
    assert main(["link", str(a), str(b), "-o", str(tmp_path / "l.csv")]) == 2
    assert "epoch" in capsys.readouterr().err
    assert not (tmp_path / "l.csv").exists()


def test_console_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "matcher", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "encode" in proc.stdout and "evaluate" in proc.stdout


def test_csv_is_read_as_text_into_arrow_columns_as_pandas_would(tmp_path: Path) -> None:
    from matcher.cli.link import read_table
    from matcher.encoding import encode_frame
    from matcher.keys import LinkageSecret
    from matcher.schema import Hardening, default_schema

    df = handmade_frame().drop(columns=["person", "force"])
    path = tmp_path / "in.csv"
    path.write_text("\ufeff" + df.to_csv(index=False), encoding="utf-8")
    got = read_table(path)
    assert list(got.columns) == list(df.columns)  # the byte-order mark is not in a name
    assert all(isinstance(t, pd.ArrowDtype) for t in got.dtypes)
    # the values pandas reads as text, empty fields missing (leading zeros kept)
    want = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    assert (
        got.astype(object).where(got.notna(), None).values.tolist()
        == want.astype(object).where(want.notna(), None).values.tolist()
    )
    # and they encode exactly as the same rows held as Python strings
    schema, secret = default_schema(Hardening(mode="none")), LinkageSecret(1, bytes(32))
    a, b = encode_frame(got, schema, secret, "F01"), encode_frame(want, schema, secret, "F01")
    assert (a.batch.filters == b.batch.filters).all()
    assert [t.tolist() for t in a.batch.blocking_tokens] == [
        t.tolist() for t in b.batch.blocking_tokens
    ]
    assert a.refs["id"].tolist() == b.refs["id"].tolist()


def test_repeated_column_names_are_refused(tmp_path: Path, keys: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("id,surname,surname\n1,Smith,Jones\n", encoding="utf-8")
    out = tmp_path / "dup.parquet"
    rc = main(["encode", str(path), "--force", "WY", "--keys", str(keys), "-o", str(out)])
    assert rc != 0 and not out.exists()
