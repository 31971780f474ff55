"""Registers nothing: what the engine and the Python runtime cost on their own."""

import pulumi

pulumi.export("empty", True)
