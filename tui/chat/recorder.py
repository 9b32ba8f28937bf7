"""Saving a conversation as it happens: the session row is made with the first message, so a chat that
never got going (a model that failed to load, nothing sent) leaves nothing in the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tui.chat.model_ref import ModelRef
from tui.chat.params import SamplingParams

if TYPE_CHECKING:
    from store.db import Store


def session_params(system: str, params: SamplingParams, settings: dict[str, Any]) -> dict[str, Any]:
    """What a session stores as its parameters: the system prompt, the sampling settings, how the model runs."""
    return {"system": system, **params.to_dict(), **settings}


class ChatRecorder:
    """Writes one chat session's rows; each call is its own short transaction."""

    def __init__(self, store: Store, model: ModelRef, project_id: int | None = None,
                 session_id: int | None = None) -> None:  # fmt: skip
        self.store = store
        self.model = model
        self.project_id = project_id if project_id is not None else model.project_id
        self.session_id = session_id

    def add(self, role: str, content: str, timing: dict[str, Any] | None = None,
            params: dict[str, Any] | None = None) -> int:  # fmt: skip
        """Append a message (making the session first if needed, and storing `params` when given); its id."""
        from store.chat import add_message, create_session, update_params

        with self.store.write() as session:
            if self.session_id is None:
                chat = create_session(session, self.model.path, project_id=self.project_id,
                                      artifact_id=self.model.artifact_id, params=params)  # fmt: skip
                assert chat.id is not None
                self.session_id = chat.id
            elif params is not None:
                update_params(session, self.session_id, params)
            message = add_message(session, self.session_id, role, content, timing)
            assert message.id is not None
            return message.id

    def delete_from(self, message_id: int) -> None:
        """Drop message `message_id` and the later ones (regenerate, edit)."""
        if self.session_id is None:
            return
        from store.chat import delete_messages_from

        with self.store.write() as session:
            delete_messages_from(session, self.session_id, message_id)
