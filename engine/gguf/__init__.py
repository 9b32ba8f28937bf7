"""GGUF: llama.cpp's own converter and quantizer, run in the engine, and the checks that the GGUF is the model."""
