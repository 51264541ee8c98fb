"""Benchmarks; each module is runnable with `python -m bench.<name>` and prints a table and one JSON line."""
