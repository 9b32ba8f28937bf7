"""`python -m cli`: the `tunedeck` command line."""

from cli.main import entry

entry()
