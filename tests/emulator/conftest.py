"""Fixtures for the emulator's control-plane tests: a running emulator and a webhook app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from emu_support import FAST_RETRY, Webhook, serve

from callwright.emulator.service import Emulator


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    async with serve(hook.app()) as base:
        hook.base = base
        yield hook


@pytest.fixture
async def emulator(webhook: Webhook) -> AsyncIterator[Emulator]:
    async with Emulator(webhook_url=webhook.eventgrid_url, retry=FAST_RETRY, answer_timeout_s=20) as emu:
        yield emu
