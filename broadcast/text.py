"""Text shaping the channels share: tidy lines, compact SMS lines, X's weighted length and thread splitting."""

from __future__ import annotations

import html
import re


def tidy(text: str) -> str:
    """Strip line ends and keep at most one blank line between paragraphs."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def compact(text: str) -> str:
    """SMS: every character costs, so strip each line and drop empty ones."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def weighted_length(text: str) -> int:
    """X's weighted length: URLs count 23, CJK and emoji 2 (twitter-text rules)."""
    if text.isascii():
        # Exactly what parse_tweet counts, at a fraction of its cost (it tries its emoji pattern at every
        # character): ASCII holds no emoji and every ASCII character weighs 1, so only links differ
        from twitter_text import extract_urls_with_indices

        text = text.replace("\r\n", "\n")
        # a link needs a dot before its top-level domain, so most sentences never reach the link pattern
        links = extract_urls_with_indices(text) if _DOT_LETTER.search(text) else []
        return len(text) - sum(end - start for start, end in (u["indices"] for u in links)) + 23 * len(links)
    from twitter_text import parse_tweet

    return parse_tweet(text).weightedLength


_DOT_LETTER = re.compile(r"\.[A-Za-z]")
#: where a paragraph too long for one post is split, in order of preference: lines, sentences, words
_SEPARATORS = ("\n", ". ", " ")


def split_thread(text: str, limit: int, tag: str = "") -> tuple[str, ...]:
    """One post if it fits, else a thread: paragraphs packed greedily, numbered " (1/3)", or " (1/3, v2)" with
    ``tag`` ", v2": a later version's thread repeats most of the first one, and X refuses a post it has seen.

    Every post is at most ``limit`` with its number. Packing adds up the weights of the pieces, each
    measured once, so a long text costs time in proportion to its length (re-measuring each growing
    post made a 1 MB headline take minutes); every post is measured once more at the end to be sure.
    """
    if weighted_length(text) <= limit:
        return (text,)
    digits, slack = 1, 0
    while True:
        # the suffix " (n/N)" is as wide as N, and N is what the packing decides: try widths until they agree
        room = limit - len(f" ({'9' * digits}/{'9' * digits}{tag})") - slack
        if room < 1:
            raise ValueError(f"a thread post cannot hold any text within {limit} characters")
        pieces = [piece for paragraph in text.split("\n\n") for piece in _fit(paragraph, room)]
        posts = [post for post, _ in _pack(pieces, "\n\n", room)]
        total = len(posts)
        if len(str(total)) > digits:
            digits = len(str(total))
            continue
        numbered = tuple(f"{post} ({i}/{total}{tag})" for i, post in enumerate(posts, 1))
        over = max(weighted_length(post) for post in numbered) - limit
        if over <= 0:
            return numbered
        slack += over  # weights did not add up exactly (a link or emoji across a join): pack tighter


def _pack(pieces: list[tuple[str, int]], join: str, room: int) -> list[tuple[str, int]]:
    """Greedy packing by summed weights: pieces joined by ``join`` while they fit in ``room``."""
    out: list[tuple[str, int]] = []
    for piece, weight in pieces:
        if out and out[-1][1] + len(join) + weight <= room:
            out[-1] = (f"{out[-1][0]}{join}{piece}", out[-1][1] + len(join) + weight)
        else:
            out.append((piece, weight))
    return out


def _fit(paragraph: str, room: int, weight: int | None = None) -> list[tuple[str, int]]:
    """Split a paragraph that is too long for one post: by lines, then sentences, then words; with weights."""
    if weight is None:
        weight = weighted_length(paragraph)
    if weight <= room:
        return [(paragraph, weight)]
    for separator in _SEPARATORS:
        units = paragraph.split(separator)
        if len(units) == 1:
            continue
        if separator == ". ":
            units = [unit + "." for unit in units[:-1]] + units[-1:]
        join = " " if separator == ". " else separator
        pieces: list[tuple[str, int]] = []
        for unit in units:
            unit_weight = weighted_length(unit)
            pieces.extend(_fit(unit, room, unit_weight) if unit_weight > room else [(unit, unit_weight)])
        return _pack(pieces, join, room)
    # a single unbroken run of text longer than a post: cut it by characters (none weighs more than 2)
    cut = max(1, room // 2)
    return [(chunk, weighted_length(chunk)) for chunk in (paragraph[i : i + cut] for i in range(0, len(paragraph), cut))]


def html_text(markup: str) -> str:
    """The words of an HTML fragment, a line per block, for agents to read what the banner says."""
    text = re.sub(r"<(br|/p|/h\d|/li|/div|/tr)\b[^>]*>", "\n", markup, flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)
