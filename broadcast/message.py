"""The values that flow between the steps (Rendering, Message, Receipt, Decision) and per-recipient filling; no I/O.

Every step imports these from here, so the ledger knows no channel and render knows no adapter. This module
imports nothing of broadcast's own.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

#: What happened to one message. ``retry`` means a transient failure the sender may try again;
#: ``unknown`` means the request may or may not have reached the provider (a crash or a lost answer);
#: ``previewed`` is the outbox's answer in a dry-run: written to disk, sent to nobody. ``not_started`` means Ctrl-C
#: came before the request: nothing reached the provider, and the next run sends it.
Status = Literal["sent", "failed", "retry", "unknown", "skipped", "previewed", "not_started"]


@dataclass(frozen=True, slots=True)
class Rendering:
    """One channel's text in one language, shared by every recipient of that variant.

    Per-recipient fields appear as placeholders (see render.PLACEHOLDER) and are filled by
    ``Message.personal()``, or by the provider itself where it supports substitutions.
    """

    channel: str
    language: str
    variant: str = ""
    subject: str = ""
    html: str = ""
    text: str = ""
    posts: tuple[str, ...] = ()
    #: which of the SMS template's forms this is (1 = full; see templates/sms.txt.j2); 0 for other channels
    form: int = 0
    #: the notice's phase (alert, update, all_clear) and when it expires (ISO 8601, "" for never), for channels that
    #: publish them beside the text (web: banner.json); not part of what recipients read, so not of the version
    phase: str = "alert"
    expires: str = ""


#: per-recipient fields templates may use; they render as placeholders and are filled per message
CONTACT_FIELDS = ("name",)


def placeholder(name: str, *, html_part: bool = False) -> str:
    """The token a contact field renders as; the HTML form differs so a provider can substitute an escaped value."""
    return f"%%{name}:html%%" if html_part else f"%%{name}%%"


def personalize(rendering: Rendering, fields: Mapping[str, str]) -> Rendering:
    """Fill a rendering's placeholders with one recipient's fields (HTML-escaped in the HTML part)."""
    if not fields:
        return rendering

    def fill(text: str, *, html_part: bool = False) -> str:
        if "%%" not in text:
            return text
        for name, value in fields.items():
            if html_part:
                # render_file writes every token in HTML as the HTML token; escape a stray plain one all the same
                text = text.replace(placeholder(name, html_part=True), html.escape(value))
                text = text.replace(placeholder(name), html.escape(value))
            else:
                text = text.replace(placeholder(name), value)
        return text

    return replace(
        rendering,
        subject=fill(rendering.subject),
        html=fill(rendering.html, html_part=True),
        text=fill(rendering.text),
        posts=tuple(fill(p) for p in rendering.posts),
    )


@dataclass(frozen=True, slots=True)
class Message:
    """One rendering addressed to one recipient.

    Its ledger key, ``id``, is made of the notice, channel, version and recipient it carries as fields: the same
    recipient, channel and notice version is the same message. The id is derived, never parsed back.
    """

    notice_id: str
    channel: str
    version: str
    recipient: str
    language: str
    rendering: Rendering
    fields: Mapping[str, str] = field(default_factory=dict)
    contact_key: str = ""
    #: the recipient as the ledger keys it when that differs from the address: an email, lower-cased
    key: str = ""
    #: other versions a row of this same release may be recorded under: the channel's version over every language
    #: (how broadcast versioned messages before versions were per language) and the other languages' current
    #: versions (a contact whose language was corrected got this release already). See equivalent_ids.
    equivalents: tuple[str, ...] = ()
    #: a public channel's post to reply to: the last post of this notice's latest thread in this language
    reply_to: str | None = None
    #: what earlier messages of the notice put up on this channel (X post ids), for Channel.withdraw
    posted: tuple[str, ...] = ()
    id: str = field(init=False)

    def __post_init__(self) -> None:
        # built once: the id is read at every claim, settle and receipt
        object.__setattr__(self, "id", f"{self.notice_id}/{self.channel}/{self.version}/{self.key or self.recipient}")

    def equivalent_ids(self) -> list[str]:
        """The ids this message's recipient has if they got this same release under another version."""
        recipient = self.key or self.recipient
        return [f"{self.notice_id}/{self.channel}/{v}/{recipient}" for v in self.equivalents if v != self.version]

    def personal(self) -> Rendering:
        """The rendering with this recipient's fields filled in."""
        return personalize(self.rendering, self.fields)


#: the reason on a receipt for a message not sent because the person pressed Ctrl-C
INTERRUPTED = "not sent: interrupted (Ctrl-C); the next run sends it"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a channel says about one message: the ledger records exactly this."""

    message_id: str
    channel: str
    recipient: str
    status: Status
    provider_id: str | None = None
    reason: str | None = None
    #: the recipient asked not to be contacted (Twilio 21610, STOP): suppress on every later run
    suppress: bool = False
    #: seconds the provider asked us to wait before trying again (Retry-After and friends)
    retry_after: float | None = None
    #: the ids of the posts a public channel put up for this message, in order (X): a later update of the notice
    #: replies to the last one, and `cancel --delete-posts` deletes them all
    thread: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """What the ledger says about one planned message: send it, or skip it and why."""

    message: Message
    send: bool
    reason: str = ""
    #: the previous attempt's outcome is not known (a crash or a lost answer)
    unknown: bool = False
    #: when the previous attempt was made, for asking the provider about an unknown
    since: datetime | None = None
    #: the language the previous attempt was written in: the contact's may have been corrected since
    language: str = ""
    #: the ledger has a row for this message (an earlier attempt, or another run's claim)
    recorded: bool = False
    #: the version the earlier attempt was recorded under, when not the message's own (Message.equivalents)
    version: str = ""

