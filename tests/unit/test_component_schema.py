"""The schema other languages see: inferred by Pulumi's component provider from the Args and outputs, as
``pulumi package add`` reads it. Every component is in it, under its unchanged type token, with plain Inputs only."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from pulumi.provider.experimental.component import ComponentProvider

from dockyard_components import provider

TOKENS = {
    "dockyard:index:ContainerRegistry",
    "dockyard:index:AppImage",
    "dockyard:index:ScannedImage",
    "dockyard:index:SignedImage",
    "dockyard:index:KubernetesApp",
    "dockyard:index:CiPipeline",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    served = ComponentProvider(provider.COMPONENTS, provider.PACKAGE, None, "0.2.0")
    assert served.schema is not None
    loaded: dict[str, Any] = json.loads(served.schema)
    return loaded


def test_every_component_is_served_under_its_unchanged_type_token(schema: dict[str, Any]) -> None:
    assert schema["name"] == "dockyard"
    assert set(schema["resources"]) == TOKENS
    assert all(resource["isComponent"] for resource in schema["resources"].values())


def test_required_inputs_are_only_what_a_component_cannot_default(schema: dict[str, Any]) -> None:
    required = {token.split(":")[-1]: set(r.get("requiredInputs", [])) for token, r in schema["resources"].items()}
    assert required["KubernetesApp"] == {"namespace"}
    assert required["CiPipeline"] == {"repository"}
    assert required["ContainerRegistry"] == {"kind", "repository", "username"}
    assert required["AppImage"] == {"imageName", "registryServer", "username", "tags"}


def test_the_app_spec_is_typed_all_the_way_down(schema: dict[str, Any]) -> None:
    app = schema["resources"]["dockyard:index:KubernetesApp"]["inputProperties"]
    assert app["strategy"]["$ref"] == "#/types/dockyard:index:StrategyArgs"
    strategy = schema["types"]["dockyard:index:StrategyArgs"]
    assert strategy["properties"]["type"]["$ref"] == "#/types/dockyard:index:StrategyType"
    assert {v["value"] for v in schema["types"]["dockyard:index:StrategyType"]["enum"]} == {
        "rolling",
        "blueGreen",
        "canary",
    }
    assert app["replicas"]["type"] == "integer"
    # Documented for other languages' SDKs and IDEs: every input carries its docstring.
    undocumented = [name for name, prop in app.items() if not prop.get("description")]
    assert not undocumented


def test_no_arg_is_a_dockyard_config_object() -> None:
    """The components know nothing of Dockyard's stack config: no Args field names a dockyard.* type."""
    for component in provider.COMPONENTS:
        args_type = inspect.get_annotations(component.__init__)["args"]
        for field, hint in inspect.get_annotations(args_type).items():
            assert "dockyard." not in repr(hint).replace("dockyard_components.", ""), (component.__name__, field)
