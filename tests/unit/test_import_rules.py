"""The house's import rules, read from the source (no import runs): who may lean on whom.

- ``dockyard.model`` is the floor: it imports nothing of Dockyard's above it.
- Nothing the ``dockyard`` CLI runs (``cli``, ``releases``, ``verify``, ``pipeline``, and what they import in turn)
  reaches a resource provider or dynamic resource: ``dockyard.program`` (the credential check is a dynamic resource),
  ``pulumi.dynamic`` or ``pulumi_kubernetes``.
- The pipeline generator stands on the model alone.
- The components library (``components/dockyard_components``) imports nothing of ``dockyard``.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.stacks import PROJECT

PACKAGE = PROJECT / "dockyard"
LIBRARY = PROJECT / "components" / "dockyard_components"
#: Modules only the program may import: they register resources or are a resource provider.
PROVIDERS = ("dockyard.program", "pulumi.dynamic", "pulumi_kubernetes")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts ``a.b`` when ``b`` is a module of this house)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if (PACKAGE.parent / node.module.replace(".", "/") / f"{alias.name}.py").is_file()
            )
    return found


GRAPH = {module_name(path, PACKAGE): imports(path) for path in PACKAGE.rglob("*.py")}


def reached(start: Iterable[str]) -> dict[str, str]:
    """Every module reachable from ``start`` (Dockyard's own modules followed), with the module that imports it."""
    seen: dict[str, str] = {}
    todo = [(module, "") for module in start]
    while todo:
        module, importer = todo.pop()
        if module in seen:
            continue
        seen[module] = importer
        todo += [(name, module) for name in GRAPH.get(module, ()) if name not in seen]
    return seen


def within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def audience(*prefixes: str) -> list[str]:
    return [module for module in GRAPH if within(module, prefixes)]


@pytest.mark.parametrize("start", ["dockyard.cli", "dockyard.releases", "dockyard.verify", "dockyard.pipeline"])
def test_nothing_the_cli_runs_reaches_a_resource_provider(start: str) -> None:
    found = reached(audience(start))
    wrong = {module: importer for module, importer in found.items() if within(module, PROVIDERS)}
    assert not wrong, f"imported by the CLI's side (module: its importer): {wrong}"


def test_the_model_is_the_floor() -> None:
    wrong = {
        module: sorted(
            name for name in GRAPH[module] if within(name, ["dockyard"]) and not within(name, ["dockyard.model"])
        )
        for module in audience("dockyard.model")
    }
    assert not {module: names for module, names in wrong.items() if names}


def test_the_pipeline_stands_on_the_model_alone() -> None:
    above = ["dockyard.cli", "dockyard.program", "dockyard.releases", "dockyard.verify"]
    wrong = {
        module: importer for module, importer in reached(audience("dockyard.pipeline")).items() if within(module, above)
    }
    assert not wrong


def test_the_library_imports_nothing_of_dockyard() -> None:
    wrong = {
        str(path.relative_to(PROJECT)): sorted(name for name in imports(path) if within(name, ["dockyard"]))
        for path in LIBRARY.rglob("*.py")
    }
    assert not {path: names for path, names in wrong.items() if names}


def test_starting_the_cli_loads_no_kubernetes_api_types_or_client() -> None:
    """As run, not as read: every ``dockyard`` command pays for what ``dockyard.cli`` loads. pulumi_kubernetes's API
    types (``core.v1`` alone is ~0.15 s) and the Kubernetes client (~0.15 s) are for the program and the webhook."""
    probe = "import sys, dockyard.cli; print(sorted(m for m in sys.modules if m.startswith(HEAVY)))"
    heavy = "('pulumi_kubernetes.core.v1._inputs', 'kubernetes')"
    loaded = subprocess.run(
        [sys.executable, "-c", probe.replace("HEAVY", heavy)], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_every_public_name_of_the_library_is_imported_from_its_module_on_first_use() -> None:
    import dockyard_components

    assert sorted(dockyard_components.__all__) == sorted(dockyard_components._HOMES)
    for name, home in dockyard_components._HOMES.items():
        module = importlib.import_module(f"dockyard_components.{home}")
        assert getattr(dockyard_components, name) is getattr(module, name), name
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        dockyard_components.Nothing  # noqa: B018
