"""The one chat-template renderer: a conversation through a model's own (Jinja) chat template, as
llama-server --jinja and llama-cpp-python render it.

The chat pane and `tunedeck chat` (`ChatTemplate`), the converter's fidelity check (the GGUF's template against
the HF tokenizer's) and the Ollama Modelfile export (the Go template proven against it) all render through
`compile_template` and `apply_template`. The template comes from the GGUF (`tokenizer.chat_template`); for chat,
a file without one gets ChatML, flagged as a fallback with a warning: llama-cpp-python would otherwise silently
use the llama-2 format, which most small chat models were never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.chat.errors import TemplateError

# ChatML, written here as a Jinja template so the fallback goes through the same renderer.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_STOP = "<|im_end|>"


def fallback_warning(model_name: str) -> str:
    """What the pane and the CLI say when a GGUF has no chat template."""
    return (f"{model_name} has no chat template in its GGUF metadata; using ChatML as a fallback "
            "(answers may be poor if the model was trained on another format)")  # fmt: skip


def compile_template(source: str, bos_token: str = "", eos_token: str = "",
                     eos_token_id: int | None = None) -> Any:  # fmt: skip
    """`source` compiled by llama-cpp-python's Jinja formatter (stopping at `eos_token_id` when given);
    TemplateError when it does not compile."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    try:
        return Jinja2ChatFormatter(template=source, eos_token=eos_token, bos_token=bos_token,
                                   stop_token_ids=None if eos_token_id is None else [eos_token_id])  # fmt: skip
    except Exception as exc:  # jinja2 syntax errors
        raise TemplateError(f"the model's chat template does not compile: {exc}") from None


def apply_template(formatter: Any, messages: list[dict[str, str]]) -> Any:
    """`messages` through a compiled template, the reply opened: llama-cpp-python's ChatFormatterResponse
    (prompt, stop, stopping_criteria); TemplateError when the template refuses them."""
    try:
        return formatter(messages=messages)
    except Exception as exc:  # raise_exception() in templates, undefined variables...
        raise TemplateError(f"the model's chat template refused these messages: {exc}") from None


def render_prompt(source: str, messages: list[dict[str, str]], bos_token: str = "", eos_token: str = "") -> str:
    """The prompt text of `messages` through the template `source`, with the generation prompt."""
    return apply_template(compile_template(source, bos_token, eos_token), messages).prompt


@dataclass
class ChatTemplate:
    """A model's chat template, ready to render; `fallback` is True when it is ChatML standing in."""

    source: str  # the Jinja text
    fallback: bool
    bos_token: str
    eos_token: str
    eos_token_id: int
    _formatter: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return "ChatML (fallback)" if self.fallback else "from GGUF"

    def render(self, messages: list[dict[str, str]]) -> tuple[str, list[str], Any]:
        """(prompt text, stop strings, llama-cpp stopping criteria) for `messages`, with the reply opened."""
        if self._formatter is None:
            self._formatter = compile_template(self.source, self.bos_token, self.eos_token, self.eos_token_id)
        result = apply_template(self._formatter, messages)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        if self.fallback and CHATML_STOP not in stop:
            stop = [*stop, CHATML_STOP]
        return result.prompt, [s for s in stop if s], result.stopping_criteria


def template_for(llm: Any, gguf_template: str | None) -> ChatTemplate:
    """The template of a loaded `llama_cpp.Llama`: the GGUF's own, else flagged ChatML."""
    eos_id = llm.token_eos()
    bos_id = llm.token_bos()
    eos = llm.detokenize([eos_id], special=True).decode("utf-8", "replace") if eos_id >= 0 else ""
    bos = llm.detokenize([bos_id], special=True).decode("utf-8", "replace") if bos_id >= 0 else ""
    if gguf_template:
        return ChatTemplate(gguf_template, False, bos, eos, eos_id)
    return ChatTemplate(CHATML_TEMPLATE, True, bos, eos, eos_id)
