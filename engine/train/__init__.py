"""Training runs: the run configuration, its presets, and (later) the trainer that executes it."""
