"""The chat pane's model side: GGUF metadata, chat templates, loading and streaming with llama-cpp-python.

The TUI's chat screens and `tunedeck chat` share it. Nothing here imports llama_cpp or gguf
at module level: they load inside the functions that need them, in a worker thread.
"""
