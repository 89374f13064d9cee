"""The one interface every channel adapter implements: Message in, Receipt out; and the facts render, plan,
config, the report and the preview page read about a channel instead of branching on its name."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from broadcast.message import Message, Receipt, Rendering

if TYPE_CHECKING:  # rate.py is imported only when a send sets limits
    from broadcast.config import Env
    from broadcast.notice import LocalNotice, Notice
    from broadcast.rate import Gate
    from broadcast.results import Event, Sent


@dataclass(frozen=True)
class RenderOptions:
    """How a run asked for text to be shaped: a channel reads the options that concern it and ignores the rest."""

    #: --max-sms-segments: a channel with forms sends the first that fits; None sends the first form
    max_segments: int | None = None
    #: --sms-transliterate: fold text to GSM-7 where a channel bills by segment
    transliterate: bool = False
    #: which release of the notice this is (1: the alert); a thread of a later one is told apart from the first
    release: int = 1


@dataclass(frozen=True)
class Cost:
    """What one message costs on a channel, in the units it bills or counts (SMS segments, X posts)."""

    units: int
    #: the unit's name, singular and plural: ("segment", "segments")
    unit: tuple[str, str] = ("message", "messages")


class Channel(ABC):
    """A way to deliver messages, and the facts about it: every other module asks these, never the name.

    The facts are class attributes and class methods, so check and preview read them without building an
    adapter, and an adapter imports its SDK only where it makes a request.
    """

    #: the channel name used on the command line and in the ledger: email, sms, social, web
    name: ClassVar[str]
    #: how a person names it in reports and on the preview page, and who carries it (in messages about limits)
    title: ClassVar[str] = ""
    provider: ClassVar[str] = ""
    #: True: one message per contact, to ``address``; False: one message per language (a post, a banner)
    personal: ClassVar[bool] = True
    #: the contact field a personal channel sends to ("email" or "phone")
    address: ClassVar[str] = ""
    #: True for a personal channel a contact gets only when its channels column names it (or an alias): voice calls.
    #: False: also every contact whose channels column is empty (contacts.py reads it)
    opt_in: ClassVar[bool] = False
    #: other words a contacts file's channels column may use for this channel ("e-mail", "text")
    aliases: ClassVar[tuple[str, ...]] = ()
    #: part → template file (under templates/); the parts a rendering of this channel has
    templates: ClassVar[Mapping[str, str]] = {}
    #: the template's forms, longest first; the first that ``fits`` is sent (templates/sms.txt.j2)
    forms: ClassVar[Sequence[int]] = (0,)
    #: the longest message body the provider takes, in characters (Twilio: 1,600), whatever else allows; check
    #: refuses a rendering over it before anything is sent
    max_body: ClassVar[int | None] = None
    #: a channel that posts threads: the most weighted characters one post may have (X: 280)
    max_post_weight: ClassVar[int | None] = None
    #: True for a channel that shows the notice only while it is current (the web banner): taken down when the notice
    #: expires or is cancelled (``withdraw``), never sent a correction
    standing: ClassVar[bool] = False
    #: True when the provider bills per unit of ``cost`` (SMS segments): the plan adds up every message's units
    #: with its recipient's name filled in, and --sms-segment-price prices them
    billed: ClassVar[bool] = False
    #: True when a notice's ``override_suppressions`` reaches this channel's unsubscribed (email, never SMS STOP)
    overridable_suppressions: ClassVar[bool] = False
    #: True when a message rings the recipient's phone (SMS, a voice call): an info or advisory notice holds it during
    #: the recipient's quiet hours (quiet.py) and the first run after them sends it
    quiet_at_night: ClassVar[bool] = False
    #: the settings class; ``Settings.from_env(env)`` reads them for a live send (see config.Env)
    settings: ClassVar[type[Any] | None] = None
    #: variables whose values are secrets, masked everywhere; and the one that says where the provider is
    secrets: ClassVar[tuple[str, ...]] = ()
    host_variable: ClassVar[str | None] = None
    #: how many messages one ``send`` call may carry (SendGrid: 1000 personalizations)
    max_batch: ClassVar[int] = 1
    #: how many ``send`` calls may run at once
    max_concurrency: ClassVar[int] = 1
    #: True when the adapter talks to a network; the dry-run never constructs one
    live: ClassVar[bool] = True
    #: True when a run without --channel uses it; False for a channel that needs an account people must set up first
    #: (Mastodon, Bluesky, team chat): a run uses those only when --channel names them
    by_default: ClassVar[bool] = True
    gate: Gate | None
    stop: threading.Event

    def __init__(self, settings: Any = None, *, gate: Gate | None = None, stop: threading.Event | None = None) -> None:
        #: this run's --rate / --concurrency limits for the channel (a rate.Gate), or None for none
        self.gate = gate
        #: set on Ctrl-C (send.deliver sets it): no request starts after it, retries and look-ups included
        self.stop = stop if stop is not None else threading.Event()

    # --- facts: what render, plan and report ask about this channel ---

    @classmethod
    def languages(cls, notice: Notice) -> list[str]:
        """The notice languages this channel renders."""
        return list(notice.languages)

    @classmethod
    def written_in(cls, lang: str, notice: Notice) -> tuple[str, str]:
        """The notice language this channel's message to ``lang`` readers is written in, and why when it is not
        ``lang`` ("" otherwise): a channel that cannot carry a language (voice: Twilio has no voice for it) falls
        back. Render renders in it; check, preview and send show the why as a caution."""
        return lang, ""

    @classmethod
    def shape(cls, rendering: Rendering, parts: Mapping[str, str], options: RenderOptions, local: LocalNotice) -> Rendering:
        """The rendering as it goes out, from its rendered template parts (``local``: the notice in its language)."""
        return replace(rendering, subject=parts.get("subject", "").strip(), html=parts.get("html", "").strip(),
                       text=parts.get("text", "").strip())

    @classmethod
    def fits(cls, rendering: Rendering, options: RenderOptions) -> bool:
        """Whether this form of a rendering keeps within the run's limits (only channels with several forms)."""
        return True

    @classmethod
    def address_key(cls, address: str) -> str:
        """The address as suppressions and the ledger compare it."""
        return address

    @classmethod
    def post_length(cls, post: str) -> int:
        """One post's length as the service counts it against ``max_post_weight`` (X weighs CJK 2 and links 23,
        Mastodon counts links 23, Bluesky counts graphemes); the report and the preview page show it."""
        return len(post)

    @classmethod
    def cost(cls, rendering: Rendering) -> Cost:
        """What one message of this rendering counts as (a personal one with its name filled in)."""
        return Cost(1)

    @classmethod
    def stats(cls, rendering: Rendering) -> dict[str, Any]:
        """What a person checks in a rendering before sending (segments, post lengths, subject), for the report."""
        return {}

    @classmethod
    def preview(cls, rendering: Rendering, now: datetime) -> Rendering:
        """The rendering as the preview page shows it: what the adapter fills in when it sends, filled in now."""
        return rendering

    @classmethod
    def readable(cls, rendering: Rendering) -> str:
        """The message as a person reads it, in plain text (the staff brief quotes it)."""
        from broadcast.text import html_text

        return rendering.text or html_text(rendering.html)

    @classmethod
    def recipient(cls, language: str, target: str = "") -> str:
        """A public channel's recipient for one language and target, as the ledger records it."""
        return f"{cls.name}:{language}:{target}" if target else f"{cls.name}:{language}"

    @classmethod
    def targets(cls, env: Env) -> tuple[str, ...]:
        """A public channel's separate destinations, each its own recipient in the ledger, so a post that failed at
        one is retried there alone (team chat: one per chat URL). Names only, never a secret; ``("",)``: one."""
        return ("",)

    @classmethod
    def ledger_key(cls, address: str) -> str:
        """How the ledger keys a personal message's address, when it differs from the address itself."""
        return ""

    @classmethod
    def looks_up_lost_answers(cls) -> bool:
        """True when the provider can say what became of a message whose answer was lost (``reconcile``)."""
        return cls.reconcile is not Channel.reconcile

    @contextmanager
    def request(self) -> Iterator[bool]:
        """Wrap every request to the provider, retries and look-ups included: waits until the channel's rate
        and concurrency limits allow it to start. Yields False, having waited for nothing, once Ctrl-C was pressed.
        """
        if self.gate is None:
            # no limits, but Ctrl-C still holds: a thread's next post or retry must not start after it
            yield not self.stop.is_set()
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

    @classmethod
    def reports_results(cls) -> bool:
        """True when the provider can be asked what became of messages and what people replied (``results``)."""
        return cls.results is not Channel.results

    def results(self, since: datetime | None, messages: Sequence[Sent]) -> Iterable[Event]:
        """What the provider reports about ``messages`` (sent with this channel, not yet in a final state), and the
        replies people sent since ``since`` (None: as far back as the provider keeps), as results.Event values.

        The default: this channel reports no delivery results. Raise results.ResultsUnavailable when the provider
        offers them but not to these credentials; `sync` says so and goes on with the other channels.
        """
        return ()

    def withdraw(self, messages: Sequence[Message], why: str) -> list[Receipt] | None:
        """Take down what earlier ``messages`` published, for an expired ("expired") or cancelled ("cancelled") notice.

        Return one receipt per message, in the same order: "sent" when taken down, "skipped" when there was nothing
        of it to take down, "failed" with a reason when it could not be; or None when this channel publishes nothing
        that can be taken down (the default: an email or SMS, once sent, stays sent).
        """
        return None

    def __enter__(self) -> Channel:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadChannel(Channel):
    """A public account that posts each language as a post or a thread of replies (X, Mastodon, Bluesky): the facts
    they share. Each adapter says how it splits a text into posts (``split``) and posts them."""

    personal: ClassVar[bool] = False
    #: the same public-post text on every account: the followers read the same notice; only the split differs
    templates: ClassVar[dict[str, str]] = {"text": "social.txt.j2"}
    max_batch: ClassVar[int] = 1
    # one language after another, so an account's followers see whole threads, not interleaved ones
    max_concurrency: ClassVar[int] = 1

    @classmethod
    def split(cls, text: str, limit: int, tag: str) -> tuple[str, ...]:
        """The text as posts of at most ``limit`` (as the service counts), each numbered with ``tag`` in a thread."""
        raise NotImplementedError

    @classmethod
    def shape(cls, rendering: Rendering, parts: Mapping[str, str], options: RenderOptions, local: LocalNotice) -> Rendering:
        from broadcast.text import tidy

        text = tidy(parts["text"])
        # a later release's thread repeats most posts of the first, which services refuse as duplicates: number it apart
        return replace(rendering, text=text, posts=cls.split(text, cls.max_post_weight, cls.release_tag(options)))

    @classmethod
    def languages(cls, notice: Notice) -> list[str]:
        # the notice says which languages its public accounts post in (social.languages)
        return list(notice.social_languages)

    @classmethod
    def cost(cls, rendering: Rendering) -> Cost:
        return Cost(len(rendering.posts or (1,)), ("post", "posts"))

    @classmethod
    def readable(cls, rendering: Rendering) -> str:
        return "\n\n".join(rendering.posts)

    @classmethod
    def stats(cls, rendering: Rendering) -> dict[str, Any]:
        # "weighted": the key report.py reads post lengths from, shown "of <max_post_weight>"
        return {"posts": len(rendering.posts), "weighted": [cls.post_length(p) for p in rendering.posts]}

    @staticmethod
    def release_tag(options: RenderOptions) -> str:
        """Numbering that tells a later release's thread apart: it repeats most posts of the first, and services
        refuse a post they have seen (", v2" in "(1/3, v2)")."""
        return f", v{options.release}" if options.release > 1 else ""
