"""The chat model side: loading a GGUF and streaming answers with llama-cpp-python, sampling parameters, the
machine's threads and memory, llama.cpp's log. The GGUF reader and the chat-template renderer it uses are
engine/gguf's (shared with the converter's fidelity check); the chat session (model lookup, recording, export)
is core/chat.py. Nothing here imports llama_cpp or gguf at module level: they load inside the functions that
need them, in a worker thread.
"""
