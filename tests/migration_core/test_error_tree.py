"""The one exception tree: every exception class of the project is defined in migration_core/errors.py and drawn
in its docstring, so the drawing is the complete list of failures a front end may have to answer."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from migration_core import errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("migration_core", "bot", "handlers")


def _exception_classes() -> set[str]:
    return {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }


def _raises_like_an_exception(node: ast.ClassDef, known: set[str]) -> bool:
    for base in node.bases:
        name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
        if name in known or name.endswith(("Error", "Exception")) or name in ("Exception", "BaseException"):
            return True
    return False


def test_no_exception_class_is_defined_outside_errors_py() -> None:
    known = _exception_classes()
    outside = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "migration_core" / "errors.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            outside += [
                f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                for node in ast.walk(tree)
                if isinstance(node, ast.ClassDef) and _raises_like_an_exception(node, known)
            ]
    assert outside == [], "define these in migration_core/errors.py and draw them in its tree"


def test_every_class_of_errors_py_is_drawn_in_its_docstring() -> None:
    drawing = errors.__doc__ or ""
    missing = [name for name in sorted(_exception_classes()) if f" {name} " not in drawing]
    assert missing == []
