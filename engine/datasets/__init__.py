"""Dataset import: reading sources, normalizing formats, linting, and writing snapshots."""
