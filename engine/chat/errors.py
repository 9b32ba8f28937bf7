"""What can go wrong with a GGUF model (reading it, loading it in llama.cpp, chatting with it), each with a
message fit to show in the chat pane or on stderr. The GGUF reader (engine/gguf/reader.py) raises the file ones."""

from __future__ import annotations

from store.errors import TunedeckError


class ChatError(TunedeckError):
    """Base for chat errors."""


class ModelNotFound(ChatError):
    """The model path (or artifact) does not exist."""


class NotGGUF(ChatError):
    """The file is not a GGUF file at all."""


class CorruptGGUF(ChatError):
    """A GGUF file that cannot be read: truncated or damaged."""


class ModelTooLarge(ChatError):
    """The model file is bigger than the memory that is free."""


class UnknownArchitecture(ChatError):
    """llama.cpp does not know the model's architecture."""


class ModelLoadError(ChatError):
    """llama.cpp refused to load the model for another reason."""


class ContextFull(ChatError):
    """The conversation no longer fits in the context window."""


class TemplateError(ChatError):
    """The model's chat template failed on these messages."""


class BadParams(ChatError):
    """A sampling parameter is out of range."""
