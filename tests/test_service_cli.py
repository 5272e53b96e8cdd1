"""The command line: keys init/issue, submit, query --json, retract and watch."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from matcher.cli import main

from service_helpers import people, running


def test_cli_story(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    assert main(["keys", "init", str(keys)]) == 0
    for force in ("F01", "F02"):
        assert main(["keys", "issue", str(keys), "--force", force, "--role", "submitter"]) == 0
    assert main(["keys", "issue", str(keys), "--force", "F03", "--role", "assessor"]) == 0
    assert (keys / "force-keys" / "F01.pub").exists()
    assert (keys / "audit-signing-key.pem").exists() and (keys / "server.pem").exists()
    df = people(20, seed=50)
    df.to_csv(tmp_path / "f01.csv", index=False)
    df.iloc[[0, 1]].to_csv(tmp_path / "subjects.csv", index=False)
    df.iloc[[5]].to_csv(tmp_path / "late.csv", index=False)
    for name, force in (("f01", "F01"), ("late", "F02")):
        assert (
            main(
                [
                    "encode",
                    str(tmp_path / f"{name}.csv"),
                    "--force",
                    force,
                    "--keys",
                    str(keys),
                    "-o",
                    str(tmp_path / f"{name}.parquet"),
                ]
            )
            == 0
        )
    capsys.readouterr()
    with running(keys, f"sqlite:///{tmp_path / 'store.db'}") as (server, port):
        common = ["--keys", str(keys), "--server", f"127.0.0.1:{port}"]
        assert main(["submit", str(tmp_path / "f01.parquet"), "--force", "F01", *common]) == 0
        assert "20 records applied" in capsys.readouterr().out
        query = [
            "query",
            str(tmp_path / "subjects.csv"),
            "--force",
            "F03",
            "--purpose",
            "safeguarding_child",
            "--reference",
            "case 12",
            *common,
        ]
        assert main([*query, "--json"]) == 0
        alerts = json.loads(capsys.readouterr().out)
        assert {a["subject_id"] for a in alerts} == {"p0", "p1"}
        assert all(a["force"] == "F01" and a["band"] for a in alerts)
        assert set(alerts[0]) >= {"subject_id", "force", "record_ref", "score", "band"}
        # Retract p0's record by its local id, using the force's private reference map.
        assert (
            main(
                ["retract", str(tmp_path / "f01.refs.csv"), "--id", "p0", "--force", "F01", *common]
            )
            == 0
        )
        assert "retracted 1" in capsys.readouterr().out
        assert main([*query, "--json"]) == 0
        assert {a["subject_id"] for a in json.loads(capsys.readouterr().out)} == {"p1"}
        # A watch on p5 alerts when F02 later submits a record of the same person.
        watch = [
            "watch",
            str(tmp_path / "late.csv"),
            "--force",
            "F03",
            "--purpose",
            "vetting",
            "--reference",
            "case 13",
            "--json",
            "--max-alerts",
            "1",
            "--timeout",
            "30",
            *common,
        ]
        rc: list[int] = []
        t = threading.Thread(target=lambda: rc.append(main(watch)))
        t.start()
        deadline = 0
        while len(server.core.watches) == 0 and deadline < 200:
            threading.Event().wait(0.05)
            deadline += 1
        assert main(["submit", str(tmp_path / "late.parquet"), "--force", "F02", *common]) == 0
        t.join(30)
        assert rc == [0]
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
        alert = [x for x in lines if x.get("event") == "alert"]
        assert alert and alert[0]["subject_id"] == "p5" and alert[0]["force"] == "F02"
        # Refusals are one line on stderr naming the field or status, exit status 2.
        no_cert = [
            "query",
            str(tmp_path / "subjects.csv"),
            "--force",
            "F01",
            "--purpose",
            "vetting",
            "--reference",
            "x",
            *common,
        ]
        assert main(no_cert) == 2
        assert "missing" in capsys.readouterr().err
        no_ref = [*query[: -len(common)], "--reference", " ", *common]
        assert main(no_ref) == 2
        err = capsys.readouterr().err
        assert "INVALID_ARGUMENT" in err and "case_reference" in err


def test_query_subjects_are_read_as_encode_reads_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    assert main(["keys", "init", str(keys)]) == 0
    common = ["--force", "F03", "--purpose", "safeguarding_child", "--reference", "case 1"]
    common += ["--keys", str(keys)]
    common += ["--server", "127.0.0.1:1"]  # never reached: the subjects are read first
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "dup.csv").write_text("id,surname,surname\np0,Ng,Ng\n", encoding="utf-8")
    for name, says in (
        ("missing.csv", "no such file"),
        ("empty.csv", "empty"),
        ("dup.csv", "repeated"),
    ):
        capsys.readouterr()
        assert main(["query", str(tmp_path / name), *common]) != 0
        assert says in capsys.readouterr().err, name
