"""Which tests prove which control: collected from the tests' own markers.

A test says what it proves where it is written, ``@pytest.mark.control("SC-8", "SC-13")``
(registered in pyproject.toml, so ``--strict-markers`` refuses a misspelt marker); the control
matrix lists, for each control, the tests that carry its id. This module reads the markers
from the test files' syntax trees (nothing is imported or run), so the matrix can be built
without running the suite, and a marker naming a control the matrix does not define is an
error, not a silently unproven claim.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

MARKER = "control"


class ControlMarkerError(ValueError):
    """A control marker that names no control of the matrix, or is not on a test."""


def _is_marker(node: ast.AST) -> bool:
    """``pytest.mark.control`` or ``mark.control`` (``from pytest import mark``)."""
    if not (isinstance(node, ast.Attribute) and node.attr == MARKER):
        return False
    owner = node.value
    return (isinstance(owner, ast.Attribute) and owner.attr == "mark") or (
        isinstance(owner, ast.Name) and owner.id == "mark"
    )


def _marker_ids(decorator: ast.expr) -> list[str] | None:
    """The ids of a ``pytest.mark.control(...)`` decorator; None for any other decorator."""
    if not isinstance(decorator, ast.Call):
        return None
    if not _is_marker(decorator.func):
        return None
    ids = []
    for arg in decorator.args:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise ControlMarkerError("a control marker takes control ids as string literals")
        ids.append(arg.value)
    return ids


def _refuse_loose_markers(tree: ast.Module, relative: str) -> None:
    """A control marker anywhere but as a test's decorator call (``pytestmark = ...``,
    ``pytest.param(..., marks=...)``, a bare ``@pytest.mark.control``) would not be seen by
    the matrix: refused rather than ignored."""
    decorating: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            decorating.update(d.func for d in node.decorator_list if isinstance(d, ast.Call))
    for node in ast.walk(tree):
        if _is_marker(node) and node not in decorating:
            raise ControlMarkerError(
                f"{relative}:{getattr(node, 'lineno', '?')}: use the control marker as "
                '@pytest.mark.control("<id>", ...) directly on a module-level test function'
            )


def _marked_ids(
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef,
    top_level: bool,
    relative: str,
    known: Collection[str],
) -> list[str]:
    """The control ids ``node`` is marked with, checked."""
    found: list[str] = []
    for decorator in node.decorator_list:
        ids = _marker_ids(decorator)
        if ids is None:
            continue
        where = f"{relative}:{node.lineno}"
        if not top_level or not node.name.startswith("test_"):
            raise ControlMarkerError(
                f"{where}: a control marker belongs on a module-level test function "
                f"(test_...), not on {node.name}"
            )
        if not ids:
            raise ControlMarkerError(f"{where}: the control marker names no control")
        for control in ids:
            if control not in known:
                raise ControlMarkerError(
                    f"{where}: {node.name} is marked as proving {control!r}, which the "
                    f"control matrix does not define (known: {', '.join(sorted(known))}); fix "
                    "the id or add the control to govdr/compliance/matrix.py"
                )
        found.extend(ids)
    return found


def collect(tests_dir: Path, known: Collection[str]) -> dict[str, tuple[str, ...]]:
    """Control id -> the node ids (``tests/unit/test_x.py::test_y``) of the tests marked with
    it, in file and line order. Raises ControlMarkerError for an id not in ``known``, or a
    marker anywhere but as a decorator call on a module-level test function."""
    found: dict[str, list[str]] = {}
    root = tests_dir.parent
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        relative = path.relative_to(root).as_posix()
        _refuse_loose_markers(tree, relative)
        top_level = set(tree.body)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for control in _marked_ids(node, node in top_level, relative, known):
                    found.setdefault(control, []).append(f"{relative}::{node.name}")
    return {control: tuple(tests) for control, tests in found.items()}


__all__ = ["MARKER", "ControlMarkerError", "collect"]
