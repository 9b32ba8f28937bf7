"""The headless core both faces call: the verbs (queue, cancel, resume, wait, ...) written once, and what the
command line and the app share to show a job's progress. Imports no textual and nothing heavy at import time."""
