"""The decision guide's outcome in one line, for the project screen (the guide itself is tui/screens/guide.py)."""

from __future__ import annotations

from typing import Any


def guide_summary(guide: dict[str, Any]) -> str:
    """The guide's outcome for the project screen: verdict and open checklist items ("" when skipped)."""
    verdict = guide.get("verdict")
    if not verdict:
        return ""
    missing = [key for key, done in (guide.get("checklist") or {}).items() if not done]
    return f"guide: {verdict}" + (f" · data checklist: {len(missing)} open" if missing else "")
