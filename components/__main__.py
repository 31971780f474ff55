"""Serves Dockyard's components to programs in any Pulumi language (see PulumiPlugin.yaml)."""

from dockyard_components.provider import serve

if __name__ == "__main__":
    serve()
