"""The operator CLI rejects bad input with one clear line (no PostgreSQL needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from govdr.cli.main import main


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["txlog", "list", "--dir", "/nonexistent/archive"], "is not a directory"),
        (["txlog", "list", "--dir", "{tmp}", "--from", "yesterday"], "is not an ISO 8601 time"),
        (["txlog", "list", "--dir", "{tmp}", "--to", "2026-11-22T08:00:00"], "has no time zone"),
        (
            [
                "txlog",
                "replay",
                "--dir",
                "{tmp}",
                "--key-file",
                "{tmp}/key",
                "--target-dsn",
                "host=/x",
                "--until",
                "2026-11-22T08:00:00+00:00",
            ],
            "exactly one of --start-lsn and --start-time",
        ),
        (
            [
                "txlog",
                "replay",
                "--dir",
                "{tmp}",
                "--key-file",
                "{tmp}/key",
                "--target-dsn",
                "host=/x",
                "--start-lsn",
                "zz",
                "--until",
                "2026-11-22T08:00:00+00:00",
            ],
            "is not an LSN",
        ),
        (
            [
                "txlog",
                "replay",
                "--dir",
                "{tmp}",
                "--key-file",
                "{tmp}/key",
                "--target-dsn",
                "host=/nonexistent port=1",
                "--start-lsn",
                "0/0",
                "--until",
                "2026-11-22T08:00:00+00:00",
            ],
            "cannot connect to the target database",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.startswith("govdr: ")
    assert "Traceback" not in err


def test_empty_archive_lists_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["txlog", "list", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "(nothing in that range)"


@pytest.mark.parametrize(
    ("dsn", "needle"),
    [
        # A forgotten "password=": libpq's own message quotes the stray word.
        ("host=/nonexistent user=app s3cr3tpw", "is not a valid libpq connection string"),
        ("host=/nonexistent passwrd=s3cr3tpw", "is not a valid libpq connection string"),
        ("host=/nonexistent password='s3cr3tpw", "is not a valid libpq connection string"),
        (
            "host=/nonexistent/s3cr3tpw port=1 password=s3cr3tpw",
            "cannot connect to the target database",
        ),
    ],
)
def test_item_13_a_bad_target_dsn_is_not_echoed(
    dsn: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: the error for a bad --target-dsn repeated part of the DSN (libpq quotes the
    offending word), which can be the password."""
    argv = ["txlog", "replay", "--dir", str(tmp_path), "--key-file", "k", "--target-dsn", dsn]
    assert main([*argv, "--start-lsn", "0/0", "--until", "2026-11-22T08:00:00+00:00"]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "s3cr3t" not in err
    assert err.startswith("govdr: ") and err.count("\n") == 1


def test_replay_help_says_how_the_target_is_verified(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["txlog", "replay", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "sslmode=verify-full against the pinned RDS eu-central-2 roots" in text
    assert "GOVDR_PG_ROOT_CERT" in text and "require_auth=scram-sha-256" in text
    assert "a DSN naming its own sslmode (e.g. sslmode=disable for a local PostgreSQL)" in text


def test_replay_with_a_missing_ca_file_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOVDR_PG_ROOT_CERT", str(tmp_path / "missing.pem"))
    argv = ["txlog", "replay", "--dir", str(tmp_path), "--key-file", "k"]
    argv += ["--target-dsn", "host=db.example"]
    argv += ["--start-lsn", "0/0", "--until", "2026-11-22T08:00:00+00:00"]
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"govdr: CA bundle {tmp_path / 'missing.pem'} does not exist")
    # The twin: without the variable the pinned roots are used and the command goes on to
    # connect (and cannot reach the host).
    monkeypatch.delenv("GOVDR_PG_ROOT_CERT")
    assert main([*argv[:5], "host=/nonexistent port=1", *argv[6:]]) == 2
    assert "cannot connect to the target database" in capsys.readouterr().err
