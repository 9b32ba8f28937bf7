"""Training, merging, export and demo-fixture engine for tunedeck."""
