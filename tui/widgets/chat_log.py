"""A conversation: one block per message, the newest at the bottom, growing while an answer streams in."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

ROLE_LABELS = {"system": "System", "user": "You", "assistant": "Assistant", "error": "Problem", "info": "Note"}
ROLE_STYLES = {"user": "bold $accent", "assistant": "bold $success", "error": "bold $error", "info": "bold $warning",
               "system": "bold $secondary"}  # fmt: skip


class MessageView(Static):
    """One message: a role label with a note (timing, "stopped"), then the text, shown as plain text."""

    DEFAULT_CSS = """
    MessageView {
        height: auto;
        padding: 0 1;
        margin-bottom: 1;
    }
    MessageView.-user { background: $boost; }
    MessageView.-error { color: $error; }
    """

    def __init__(self, role: str, text: str = "", note: str = "", label: str | None = None) -> None:
        super().__init__(markup=False, classes=f"-{role}")
        self.role = role
        self.text = text
        self.note = note
        self.label = label or ROLE_LABELS.get(role, role)
        self.update(self._content())

    def _content(self) -> Content:
        head = [(self.label, ROLE_STYLES.get(self.role, "bold"))]
        if self.note:
            head.append(("  " + self.note, "dim"))
        return Content.assemble(*head, "\n", self.text or "…")

    def set_text(self, text: str) -> None:
        """Show `text` as the message (while it streams: all of it so far)."""
        self.text = text
        self.update(self._content())

    def set_note(self, note: str) -> None:
        """Show `note` after the role label."""
        self.note = note
        self.update(self._content())


class ChatLog(VerticalScroll):
    """The messages of a conversation; follows the bottom while it grows unless the user scrolled up."""

    DEFAULT_CSS = """
    ChatLog {
        height: 1fr;
        padding: 0 0;
    }
    """
    can_focus = True

    def add(self, role: str, text: str = "", note: str = "", label: str | None = None) -> MessageView:
        """Append a message block and scroll to it."""
        view = MessageView(role, text, note, label)
        self.mount(view)
        self.call_after_refresh(self.scroll_end, animate=False)
        return view

    def follow(self) -> None:
        """Keep the newest text in view (call after a block grew)."""
        if self.max_scroll_y - self.scroll_y <= 3:
            self.call_after_refresh(self.scroll_end, animate=False)

    @property
    def views(self) -> list[MessageView]:
        """The message blocks, oldest first."""
        return list(self.query(MessageView))

    def clear_messages(self) -> None:
        """Remove every message block."""
        self.remove_children()

    @property
    def text(self) -> str:
        """Everything shown, as plain text (labels and messages)."""
        return "\n\n".join(f"{v.label}: {v.text}" for v in self.views)
