"""The `tunedeck` verbs, one module each; `register(verbs, common)` adds a verb's parser."""
