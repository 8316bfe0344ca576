"""The headless query engine: no textual, no rich (tests/test_headless.py proves it)."""
