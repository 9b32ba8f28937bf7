"""Base models: registering a model folder, a GGUF (dequantized) or a hub model (downloaded) as an artifact."""
