"""The channel registry: channel name → adapter class, imported only when a live send needs it."""

from __future__ import annotations

import importlib
from typing import Any

from broadcast.channels.base import Channel

#: explicit, so a reader sees every adapter in one place; modules load lazily to keep start-up fast
LIVE_ADAPTERS: dict[str, tuple[str, str]] = {
    "email": ("broadcast.channels.sendgrid", "SendGridChannel"),
    "sms": ("broadcast.channels.twilio", "TwilioChannel"),
    "social": ("broadcast.channels.x", "XChannel"),
    "web": ("broadcast.channels.web", "WebChannel"),
}


def live_channel(name: str, settings: Any) -> Channel:
    """Construct the live adapter for ``name`` from its settings (see config.py)."""
    module_name, class_name = LIVE_ADAPTERS[name]
    adapter = getattr(importlib.import_module(module_name), class_name)
    return adapter(settings)
