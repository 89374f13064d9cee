"""The one interface every channel adapter implements: Message in, Receipt out."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:  # rate.py is imported only when a send sets limits
    from broadcast.rate import Gate

#: What happened to one message. ``retry`` means a transient failure the sender may try again;
#: ``unknown`` means the request may or may not have reached the provider (a crash or a lost answer);
#: ``previewed`` is the outbox's answer in a dry-run: written to disk, sent to nobody.
Status = Literal["sent", "failed", "retry", "unknown", "skipped", "previewed"]


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


@dataclass(frozen=True, slots=True)
class Message:
    """One rendering addressed to one recipient; ``id`` is its stable key in the ledger."""

    id: str
    channel: str
    recipient: str
    language: str
    rendering: Rendering
    fields: Mapping[str, str] = field(default_factory=dict)
    contact_key: str = ""
    #: the notice id, for providers that tag messages (SendGrid custom_args) so events match the ledger
    notice: str = ""

    def personal(self) -> Rendering:
        """The rendering with this recipient's fields filled in."""
        from broadcast.render import personalize

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


class Channel(ABC):
    """A way to deliver messages. Limits are class attributes so render and plan can ask them."""

    #: the channel name used on the command line and in the ledger: email, sms, social, web
    name: ClassVar[str]
    #: how many messages one ``send`` call may carry (SendGrid: 1000 personalizations)
    max_batch: ClassVar[int] = 1
    #: how many ``send`` calls may run at once
    max_concurrency: ClassVar[int] = 1
    #: True when the adapter talks to a network; the dry-run never constructs one
    live: ClassVar[bool] = True
    #: this run's --rate / --concurrency limits for the channel (a rate.Gate), and its Ctrl-C event; set by send.deliver
    gate: Gate | None = None
    stop: threading.Event | None = None

    @contextmanager
    def request(self) -> Iterator[bool]:
        """Wrap every request to the provider, retries and look-ups included: waits until the channel's rate
        and concurrency limits allow it to start. Yields False, having waited for nothing, once Ctrl-C was pressed.
        """
        if self.gate is None:
            # no limits, but Ctrl-C still holds: a thread's next post or retry must not start after it
            yield not (self.stop is not None and self.stop.is_set())
            return
        with self.gate.request(self.stop) as ok:
            yield ok

    def open(self) -> None:
        """Prepare connections; called once before the first ``send``."""

    def close(self) -> None:
        """Release connections; called once after the last ``send``."""

    @abstractmethod
    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        """Deliver ``messages`` and return one receipt per message, in the same order.

        Raise ``ChannelError`` only when the whole channel must stop (bad credentials).
        """

    def reconcile(self, lost: Sequence[tuple[Message, datetime]]) -> list[Receipt] | None:
        """Ask the provider what became of messages whose outcome is unknown, each with when it was tried.

        Return one receipt per message: "sent" when the provider has it, "retry" when it provably never
        arrived (so sending is safe), "unknown" when it cannot tell; or None when the provider offers no
        look-up at all (the default), so those messages stay unknown until a person says --retry-unknown.
        """
        return None

    def __enter__(self) -> Channel:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
