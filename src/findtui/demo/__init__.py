"""The embedded demo SCP: a server with deterministic synthetic data, for a new user and
for the tests. Not part of the client engine; headless (no textual, no rich)."""

from findtui.demo.scp import SPECIAL_NAMES, DemoData, DemoSCP, main

__all__ = ["DemoSCP", "DemoData", "SPECIAL_NAMES", "main"]
