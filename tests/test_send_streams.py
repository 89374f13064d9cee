"""send.deliver on streams: batches cut as messages arrive, nothing held beyond them, stream errors reported."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest

from broadcast.channels.base import Channel
from broadcast.errors import LedgerError
from broadcast.message import Message, Receipt, Rendering
from broadcast.send import RetryPolicy, batches, claim_group_size, deliver


class Recorder(Channel):
    name = "email"
    max_batch: ClassVar[int] = 3
    max_concurrency: ClassVar[int] = 1
    live: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        self.batches.append([m.recipient for m in messages])
        return [Receipt(m.id, m.channel, m.recipient, "sent") for m in messages]


def message(n: int, lang: str = "en") -> Message:
    return Message("n", "email", "v", f"p{n}@mail.example", lang, Rendering("email", lang))


def test_batches_leave_as_soon_as_they_fill_and_share_one_rendering() -> None:
    pulled: list[int] = []

    def stream() -> Iterator[Message]:
        for n in range(8):
            pulled.append(n)
            yield message(n, "en" if n % 2 else "sl")

    cut = batches(Recorder(), stream())
    first = next(cut)
    # the first full batch (sl: 0, 2, 4) leaves when message 4 arrives, before the rest of the stream is read
    assert [d.message.recipient for d in first] == ["p0@mail.example", "p2@mail.example", "p4@mail.example"]
    assert pulled == [0, 1, 2, 3, 4]
    rest = [[d.message.language for d in b] for b in cut]
    assert rest == [["en", "en", "en"], ["sl"], ["en"]]


def test_an_error_in_a_stream_is_raised_after_what_was_sent_is_recorded() -> None:
    def stream() -> Iterator[Message]:
        yield from (message(n) for n in range(449))
        raise LedgerError("the ledger went away", hint="check BROADCAST_LEDGER")

    recorded: list[Receipt] = []
    channel = Recorder()
    with pytest.raises(LedgerError, match="went away"):
        deliver({"email": stream()}, {"email": channel}, policy=RetryPolicy(wait=False), on_receipts=recorded.extend)
    # whole claim groups (batches of 3 until a group holds claim_group_size) went out and were recorded; the
    # unfinished group (447 and 448 never made a full group) was never sent
    per_group = -(-claim_group_size(Recorder.max_batch, Recorder.max_concurrency) // 3) * 3
    sent = [r for b in channel.batches for r in b]
    assert len(sent) == 449 // per_group * per_group < 449
    assert sorted(r.recipient for r in recorded) == sorted(sent)
    assert {r.status for r in recorded} == {"sent"}
