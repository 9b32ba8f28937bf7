"""tunedeck's user-facing side: the Textual app and the `tunedeck` command line."""
