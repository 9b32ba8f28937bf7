"""Helpers the TUI tests share: run the real app at 80x24 with a scenario, wait, type, read the screen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot
from textual.widgets import Static

from store.db import Store
from tui.app import TunedeckApp

SIZE = (80, 24)
KEY_NAMES = {" ": "space", "/": "slash", ".": "full_stop"}


def drive(store: Store, scenario: Callable[[TunedeckApp, Pilot], Awaitable[None]], refresh: float = 0.3) -> TunedeckApp:
    """Run `scenario` against a fresh app at 80x24; return the app afterwards."""
    app = TunedeckApp(store, refresh_seconds=refresh)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(app, pilot)

    asyncio.run(main())
    return app


async def wait_for(pilot: Pilot, condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def type_text(pilot: Pilot, value: str) -> None:
    """Type `value` key by key."""
    await pilot.press(*[KEY_NAMES.get(ch, ch) for ch in value])


def text(app: TunedeckApp, selector: str) -> str:
    """The text of a Static on the current screen."""
    return str(app.screen.query_one(selector, Static).visual)


def screen_text(app: TunedeckApp) -> str:
    """The current screen as plain text lines, as the compositor renders them."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def notes(app: TunedeckApp) -> str:
    """Every notification shown so far, one per line."""
    return "\n".join(n.message for n in app._notifications)
