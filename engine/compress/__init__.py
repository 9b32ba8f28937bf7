"""GPTQ and AWQ exports through llm-compressor (compressed-tensors, W4A16), run in llm-compressor's own
environment (toolenv), as `compress` jobs that register `compressed` artifacts with a perplexity check."""
