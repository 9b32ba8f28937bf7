"""tunedeck's SQLite store: the schema, migrations and the queries every part shares.

Imports nothing heavy (no torch, transformers, engine or tui).
"""
