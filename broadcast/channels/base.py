"""The one interface every channel adapter implements: Message in, Receipt out."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from broadcast.message import Message, Receipt

if TYPE_CHECKING:  # rate.py is imported only when a send sets limits
    from broadcast.rate import Gate

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
