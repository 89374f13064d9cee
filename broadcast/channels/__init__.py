"""The channel registry: the one place that lists channels; everything about one is read from its adapter class."""

from __future__ import annotations

from typing import Any

from broadcast import config
from broadcast.channels.base import Channel
from broadcast.channels.bluesky import BlueskyChannel
from broadcast.channels.mastodon import MastodonChannel
from broadcast.channels.sendgrid import SendGridChannel
from broadcast.channels.team import TeamChannel
from broadcast.channels.twilio import TwilioChannel
from broadcast.channels.voice import VoiceChannel
from broadcast.channels.web import WebChannel
from broadcast.channels.x import XChannel

#: channel name → adapter class, in the order reports and the preview page list them. The adapters import their
#: SDKs only where they make a request, so reading this costs no provider import
REGISTRY: dict[str, type[Channel]] = {}


def register(adapter: type[Channel]) -> type[Channel]:
    """Add a channel: its name on the command line and in the ledger, and its secrets to what is always masked."""
    REGISTRY[adapter.name] = adapter
    config.SECRET_VARIABLES.update(adapter.secrets)
    return adapter


# one line per channel
register(SendGridChannel)
register(TwilioChannel)
register(XChannel)
register(WebChannel)
register(MastodonChannel)
register(BlueskyChannel)
register(TeamChannel)
register(VoiceChannel)


def names() -> tuple[str, ...]:
    """Every channel's name, in the registry's order."""
    return tuple(REGISTRY)


def defaults() -> tuple[str, ...]:
    """The channels a run uses when --channel names none (Channel.by_default)."""
    return tuple(name for name, adapter in REGISTRY.items() if adapter.by_default)


def adapter(name: str) -> type[Channel]:
    """The adapter class of channel ``name``; KeyError for a name no adapter has."""
    return REGISTRY[name]


def personal(channel: str) -> bool:
    """True when ``channel`` sends one message per contact (email, SMS), False for one per language (X, banner)."""
    return REGISTRY[channel].personal


def live_channel(name: str, settings: Any, **run: Any) -> Channel:
    """Construct the live adapter for ``name`` from its settings (``Settings.from_env``) and this run's gate and stop."""
    return REGISTRY[name](settings, **run)
