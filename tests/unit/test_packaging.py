"""`pip install .` gives a working `govdr` command: its runtime dependencies are declared."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clean_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding govdr and only what pyproject.toml declares (versions from the lock)."""
    target = tmp_path_factory.mktemp("clean-venv")
    venv.create(target, with_pip=False)
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv is installed by make install"
    source = tmp_path_factory.mktemp("source")
    # A copy of the project files only (no venv, node_modules or build output).
    # govdr_emulator is copied too: the package list must leave it out of the install.
    for item in ("pyproject.toml", "govdr", "govdr_emulator", "README.md"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, source / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, source / item)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            str(source),
            "--constraint",
            str(ROOT / "requirements.lock"),
        ],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": str(target)},
        timeout=600,
    )
    return target / "bin" / "govdr"


def test_govdr_help_in_a_clean_install(clean_install: Path) -> None:
    done = subprocess.run([clean_install, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("txlog", "status", "drill", "preflight"):
        assert command in done.stdout


def test_replay_reaches_the_database_in_a_clean_install(
    clean_install: Path, tmp_path: Path
) -> None:
    """Without psycopg2 declared, this ends in ModuleNotFoundError; with it, in the one-line
    connection error (nothing listens on port 1)."""
    done = subprocess.run(
        [
            clean_install,
            "txlog",
            "replay",
            "--dir",
            str(tmp_path),
            "--key-file",
            str(tmp_path / "key"),
            "--target-dsn",
            "host=127.0.0.1 port=1 dbname=restored connect_timeout=5",
            "--start-time",
            "2026-01-01T00:00:00+00:00",
            "--until",
            "2026-01-02T00:00:00+00:00",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert done.stderr.startswith("govdr: cannot connect to the target database")


def _python(clean_install: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by the clean venv's Python, outside the source tree."""
    return subprocess.run(
        [clean_install.parent / "python", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


def test_the_emulator_is_not_installed_and_govdr_runs_without_moto(clean_install: Path) -> None:
    """The emulator is test support: `pip install .` leaves it (and moto) out, and the CLI's
    commands still load (nothing in govdr imports it)."""
    for module in ("govdr_emulator", "moto"):
        done = _python(clean_install, f"import {module}")
        assert done.returncode == 1, f"{module} is installed"
        assert f"No module named '{module}'" in done.stderr
    done = _python(clean_install, "import govdr.cli.main, govdr.drills.commands, govdr.aws")
    assert done.returncode == 0, done.stderr


def _installed_runtime(clean_install: Path) -> Path:
    """The ``govdr.lambda_support`` package directory inside the clean venv (not the source
    tree)."""
    done = _python(
        clean_install,
        "import govdr.lambda_support as s, os; print(os.path.dirname(s.__file__))",
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def installed_lacks(runtime_dir: Path) -> list[str]:
    """The verified-TLS files missing from an installed ``govdr.lambda_support`` package."""
    pinned = (ROOT / "govdr" / "lambda_support" / "rds-ca-eu-central-2.pem").read_bytes()
    missing = []
    if not (runtime_dir / "pg_tls.py").is_file():
        missing.append("govdr/lambda_support/pg_tls.py")
    pem = runtime_dir / "rds-ca-eu-central-2.pem"
    if not pem.is_file() or pem.read_bytes() != pinned:
        missing.append("govdr/lambda_support/rds-ca-eu-central-2.pem")
    return missing


def test_the_installed_package_ships_the_pinned_rds_roots(
    clean_install: Path, tmp_path: Path
) -> None:
    """`pip install .` carries govdr/lambda_support/rds-ca-eu-central-2.pem (package-data), and the
    installed pg_tls verifies with that copy."""
    runtime_dir = _installed_runtime(clean_install)
    assert ROOT not in runtime_dir.parents, runtime_dir
    assert installed_lacks(runtime_dir) == []
    done = _python(
        clean_install, "from govdr.lambda_support.pg_tls import verified_tls; print(verified_tls())"
    )
    assert done.returncode == 0, done.stderr
    assert str(runtime_dir / "rds-ca-eu-central-2.pem") in done.stdout
    # The twin: a package without the PEM (as before package-data named it) is reported.
    copy = tmp_path / "lambda_support"
    shutil.copytree(runtime_dir, copy, ignore=shutil.ignore_patterns("*.pem", "__pycache__"))
    assert installed_lacks(copy) == ["govdr/lambda_support/rds-ca-eu-central-2.pem"]
