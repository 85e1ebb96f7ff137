"""Lambda assets with third-party dependencies, bundled locally (no Docker).

The dependencies are installed by ``uv`` for the Lambda platform (Python 3.14 on arm64, manylinux
wheels only, every file checked against the hashes of
``govdr/lambda_support/lambda-requirements.txt``), next to the Lambda code of the given
capabilities. The installed dependencies are cached under ``.cache/lambda-bundles/`` by the hash of
the requirements file, so only the first synth on a machine downloads anything; every later synth
copies the cache and the current sources. The asset hash is computed from the requirements and the
sources, so an unchanged function keeps its asset and a changed line of code gives a new one.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parents[2]
GOVDR_DIR = REPO_ROOT / "govdr"
REQUIREMENTS = GOVDR_DIR / "lambda_support" / "lambda-requirements.txt"
CACHE_DIR = REPO_ROOT / ".cache" / "lambda-bundles"
PYTHON_VERSION = "3.14"
PLATFORM = "aarch64-manylinux_2_28"
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


class BundlingError(RuntimeError):
    """Local bundling failed; the message says why and how to fix it."""


def _uv() -> str:
    beside_python = Path(sys.executable).parent / "uv"
    found = str(beside_python) if beside_python.exists() else shutil.which("uv")
    if not found:
        raise BundlingError(
            "Lambda bundling needs uv, which was not found next to the Python interpreter or "
            "on PATH. Run `make install` (it installs the pinned uv into .venv)."
        )
    return found


# What a function's bundle holds of govdr: the package's (empty) __init__, the shared Lambda
# support (database TLS with the pinned RDS CA roots, the custom-resource contract), and, of each
# capability it runs, the capability's __init__, its contract and its runtime/ package. Never a
# capability's infrastructure, nor anything else of govdr (import-linter keeps the runtime code
# from importing it).
LAMBDA_SUPPORT = "lambda_support"
SUPPORT_PATTERNS = ("*.py", "*.pem")


def _capability_files(capability: str) -> list[Path]:
    root = GOVDR_DIR / capability
    files = [root / "__init__.py", root / "contract.py"]
    files += sorted(p for p in (root / "runtime").rglob("*.py") if "__pycache__" not in p.parts)
    return [p for p in files if p.is_file()]


def _source_files(capabilities: Iterable[str]) -> list[Path]:
    """Every file of govdr a bundle of these capabilities holds."""
    files = [GOVDR_DIR / "__init__.py"]
    support = GOVDR_DIR / LAMBDA_SUPPORT
    files += sorted(p for pattern in SUPPORT_PATTERNS for p in support.glob(pattern))
    for capability in capabilities:
        files += _capability_files(capability)
    return files


def bundle_hash(capabilities: Iterable[str], requirements: Path | None = REQUIREMENTS) -> str:
    digest = hashlib.sha256(f"{PLATFORM}/{PYTHON_VERSION}".encode())
    if requirements is not None:
        digest.update(requirements.read_bytes())
    for path in _source_files(capabilities):
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install_dependencies(requirements: Path = REQUIREMENTS, cache_dir: Path = CACHE_DIR) -> Path:
    """The dependencies installed for the Lambda platform; built once per requirements file."""
    key = hashlib.sha256(f"{PLATFORM}/{PYTHON_VERSION}".encode() + requirements.read_bytes())
    target = cache_dir / key.hexdigest()[:32]
    if (target / ".complete").exists():
        return target
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    command = [
        _uv(),
        "pip",
        "install",
        "--quiet",
        "--no-config",
        "--target",
        str(scratch),
        "--python-platform",
        PLATFORM,
        "--python-version",
        PYTHON_VERSION,
        "--only-binary",
        ":all:",
        "--require-hashes",
        "--no-deps",
        "-r",
        str(requirements),
    ]
    result = subprocess.run(  # noqa: S603 - fixed arguments, uv from the project's venv
        command, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise BundlingError(
            f"installing the Lambda dependencies of {requirements.name} failed "
            f"(uv exit {result.returncode}): {result.stderr.strip()[-800:]}. The package index "
            "must be reachable on the first synth of a machine; later synths use the cache in "
            f"{cache_dir}."
        )
    shutil.rmtree(scratch / "bin", ignore_errors=True)
    (scratch / ".complete").write_text("\n".join(command[1:]) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return target


@jsii.implements(ILocalBundling)
class _LocalBundler:
    def __init__(self, packages: tuple[str, ...], dependencies: bool) -> None:
        self.packages = packages
        self.dependencies = dependencies

    def try_bundle(self, output_dir: str, _options: Any = None) -> bool:
        out = Path(output_dir)
        if self.dependencies:
            shutil.copytree(install_dependencies(), out, dirs_exist_ok=True, ignore=_SKIP)
            (out / ".complete").unlink(missing_ok=True)
        for source in _source_files(self.packages):
            target = out / source.relative_to(REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return True


def bundled_code(*packages: str, dependencies: bool = True) -> lambda_.Code:
    """Lambda code: for each capability ``govdr/<package>``, its contract and its ``runtime/``;
    the shared ``govdr/lambda_support`` and, with ``dependencies``, the pinned third-party
    packages.

    Handlers are addressed as ``govdr.<package>.runtime.<module>.<function>``.
    """
    for package in packages:
        if not (GOVDR_DIR / package / "runtime" / "__init__.py").exists():
            raise BundlingError(f"govdr/{package}/runtime is not a Python package")
    return lambda_.Code.from_asset(
        str(GOVDR_DIR / packages[0] / "runtime"),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=bundle_hash(packages, REQUIREMENTS if dependencies else None),
        bundling=BundlingOptions(
            # Never pulled: the local bundler always succeeds or raises a BundlingError.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.14"),
            # jsii calls try_bundle(output_dir, options) positionally, unlike its type stub.
            local=_LocalBundler(tuple(packages), dependencies),  # type: ignore[arg-type]
        ),
    )
