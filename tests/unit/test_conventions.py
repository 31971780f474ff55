"""Conventions kept true by tests: every component calls register_outputs once, as its last statement."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMPONENTS = Path(__file__).resolve().parents[2] / "components" / "dockyard_components"


def component_classes() -> list[tuple[str, ast.ClassDef]]:
    found = []
    for path in sorted(COMPONENTS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Attribute) and base.attr == "ComponentResource" for base in node.bases
            ):
                found.append((f"{path.name}:{node.name}", node))
    return found


def test_components_are_found() -> None:
    names = {name.split(":")[1] for name, _ in component_classes()}
    assert {"AppImage", "ContainerRegistry", "KubernetesApp"} <= names


@pytest.mark.parametrize(("name", "node"), component_classes(), ids=[n for n, _ in component_classes()])
def test_register_outputs_once_and_last(name: str, node: ast.ClassDef) -> None:
    (init,) = [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"]
    calls = [
        n
        for n in ast.walk(init)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "register_outputs"
    ]
    assert len(calls) == 1, f"{name}: register_outputs called {len(calls)} times"
    last = init.body[-1]
    assert isinstance(last, ast.Expr), f"{name}: the last statement is not register_outputs"
    assert last.value is calls[0], f"{name}: register_outputs is not the last statement"


@pytest.mark.parametrize(("name", "node"), component_classes(), ids=[n for n, _ in component_classes()])
def test_type_token_is_dockyard_index(name: str, node: ast.ClassDef) -> None:
    module = ast.parse((COMPONENTS / name.split(":")[0]).read_text())
    tokens = [
        n.value
        for n in ast.walk(module)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("dockyard:index:")
    ]
    assert f"dockyard:index:{node.name}" in tokens, f"{name}: type token must be dockyard:index:{node.name}"
