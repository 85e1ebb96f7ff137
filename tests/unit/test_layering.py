"""The layering contracts of `make lint` (import-linter, [tool.importlinter] in pyproject.toml)
and the complexity gate (ruff's mccabe), each with the mutation it must reject."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGES = ("govdr", "govdr_emulator")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and pyproject.toml, to mutate."""
    target = tmp_path_factory.mktemp("layering")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(root), "PATH": str(BIN)},
    )


def _with_line(tree: Path, relative: str, line: str, tmp_path: Path) -> Path:
    """A copy of ``tree`` whose module ``relative`` gets ``line`` appended."""
    copy = tmp_path / "tree"
    shutil.copytree(tree, copy)
    module = copy / relative
    module.write_text(module.read_text() + f"\n{line}\n")
    return copy


def test_the_project_keeps_every_contract(tree: Path) -> None:
    done = _lint_imports(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "govdr/rpo/runtime/handler.py",
            "import aws_cdk  # noqa",
            "never imports the CDK or the rest of govdr",
        ),
        (
            "govdr/txlog/runtime/archive.py",
            "from govdr import config  # noqa",
            "never imports the CDK or the rest of govdr",
        ),
        (
            "govdr/rpo/runtime/handler.py",
            "from govdr.txlog import contract as other  # noqa",
            "Capabilities do not import each other",
        ),
        (
            "govdr/txlog/contract.py",
            "from govdr.lambda_support import pg_tls  # noqa",
            "A capability's contract imports nothing of govdr",
        ),
        (
            "govdr/drills/status.py",
            "from govdr_emulator import deploy  # noqa",
            "Nothing in govdr imports the emulator",
        ),
        (
            "govdr/stacks/storage.py",
            "from govdr.txlog.runtime import handler  # noqa",
            "read a function's names from its capability's contract, never its handler",
        ),
        (
            "govdr/compliance/gate.py",
            "from govdr.stacks import tap_stack  # noqa",
            "govdr in layers",
        ),
        (
            "govdr/stacks/database.py",
            "from govdr.compliance import template_checks  # noqa",
            "govdr in layers",
        ),
        (
            # stacks build with constructs: a construct that imports a stack closes a cycle
            "govdr/constructs/log_group.py",
            "from govdr.stacks import database  # noqa",
            "No import cycles between the packages",
        ),
    ],
)
def test_each_contract_rejects_its_mutation(
    tree: Path, tmp_path: Path, module: str, line: str, contract: str
) -> None:
    done = _lint_imports(_with_line(tree, module, line, tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    broken = done.stdout.split("Broken contracts", 1)[1]
    assert contract in " ".join(broken.split())  # the report wraps long names


def test_the_complexity_gate_rejects_a_tangled_function(tmp_path: Path) -> None:
    """ruff's C901 at the project's threshold: the code meets it, a function past it fails."""
    ruff = [
        str(BIN / "ruff"),
        "check",
        "--select",
        "C901",
        "--config",
        str(ROOT / "pyproject.toml"),
    ]
    clean = subprocess.run(
        [*ruff, *(str(ROOT / p) for p in PACKAGES)], capture_output=True, text=True, timeout=120
    )
    assert clean.returncode == 0, clean.stdout

    def function(name: str, complexity: int) -> str:
        branches = "\n".join(f"    if x == {i}:\n        return {i}" for i in range(complexity - 1))
        return f"def {name}(x: int) -> int:\n{branches}\n    return -1\n"

    # The threshold is 12: a function at 12 passes, one at 13 fails.
    at_limit = tmp_path / "at_limit.py"
    at_limit.write_text(function("at_limit", 12))
    done = subprocess.run([*ruff, str(at_limit)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    tangled = tmp_path / "tangled.py"
    tangled.write_text(function("tangled", 13))
    done = subprocess.run([*ruff, str(tangled)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "C901 `tangled` is too complex (13 > 12)" in done.stdout
