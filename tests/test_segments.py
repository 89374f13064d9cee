"""Tests for SMS encoding, segment counting and GSM-7 transliteration."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from broadcast.segments import SegmentCount, count_segments, is_gsm7, transliterate

# The GSM 03.38 tables written out again, by row of the spec, independently of the
# module, so a typo in one of them shows up as a disagreement.
GSM_BASIC = frozenset(
    "@Δ 0¡P¿p"
    + "£_!1AQaq"
    + '$Φ"2BRbr'
    + "¥Γ#3CScs"
    + "èΛ¤4DTdt"
    + "éΩ%5EUeu"
    + "ùΠ&6FVfv"
    + "ìΨ'7GWgw"
    + "òΣ(8HXhx"
    + "ÇΘ)9IYiy"
    + "\nΞ*:JZjz"
    + "Ø+;KÄkä"  # 0x1B, between Ø and +, is ESC: not a character
    + "øÆ,<LÖlö"
    + "\ræ-=MÑmñ"
    + "Åß.>NÜnü"
    + "åÉ/?O§oà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

SWAHILI = "Tafadhali chemsha maji kabla ya kunywa. Piga simu 0800 123 456 saa 24."
SWAHILI_LONG = (
    "Maji ya bomba si salama kwa sasa. Chemsha maji yote ya kunywa na kupikia kwa dakika "
    "moja. Habari zaidi: piga simu 0800 123 456 au tembelea ofisi ya kata iliyo karibu nawe."
)
SLOVENIAN = "Prosimo, prekuhajte vodo pred pitjem. Pokličite nujno linijo."
SLOVENIAN_LONG = (
    "Prosimo, prekuhajte vodo pred pitjem. Pokličite nujno linijo 112. "
    "Ne pijte vode iz pipe, dokler občina ne sporoči, da je varna."
)
SLOVENIAN_ROAD = "Zaradi poplav je cesta čez Savo zaprta. Uporabite obvoz skozi Šentvid in Žiri."
ARABIC = "يرجى غلي الماء قبل الشرب. اتصلوا بالرقم 0800 123 456."


def reference(text: str) -> SegmentCount:
    """Brute force: one character at a time, open a new segment when it would not fit."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text):
        encoding, single, multi = "GSM-7", 160, 153
        costs = [2 if ch in GSM_EXTENSION else 1 for ch in text]
    else:
        encoding, single, multi = "UCS-2", 70, 67
        # What goes on the wire: adjacent lone surrogates become one astral character.
        wire = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in wire]
    units = sum(costs)
    if units == 0:
        return SegmentCount(encoding, len(text), 0, 0, single)
    if units <= single:
        return SegmentCount(encoding, len(text), units, 1, single)
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return SegmentCount(encoding, len(text), units, segments, multi)


def test_gsm_tables_have_the_spec_sizes() -> None:
    assert len(GSM_BASIC) == 127 and len(GSM_EXTENSION) == 10
    assert is_gsm7("".join(GSM_BASIC) + "".join(GSM_EXTENSION))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", ("GSM-7", 0, 0, 0, 160), id="empty"),
        pytest.param("a" * 160, ("GSM-7", 160, 160, 1, 160), id="gsm-160"),
        pytest.param("a" * 161, ("GSM-7", 161, 161, 2, 153), id="gsm-161"),
        pytest.param("a" * 306, ("GSM-7", 306, 306, 2, 153), id="gsm-306"),
        pytest.param("a" * 307, ("GSM-7", 307, 307, 3, 153), id="gsm-307"),
        pytest.param("ж" * 70, ("UCS-2", 70, 70, 1, 70), id="ucs2-70"),
        pytest.param("ж" * 71, ("UCS-2", 71, 71, 2, 67), id="ucs2-71"),
        pytest.param("ж" * 134, ("UCS-2", 134, 134, 2, 67), id="ucs2-134"),
        pytest.param("ж" * 135, ("UCS-2", 135, 135, 3, 67), id="ucs2-135"),
        pytest.param("a" * 159 + "€", ("GSM-7", 160, 161, 2, 153), id="159-plus-euro"),
        pytest.param("a" * 158 + "€", ("GSM-7", 159, 160, 1, 160), id="158-plus-euro"),
        # ESC would be septet 153 and '€' septet 154: the pair moves to segment 2,
        # which then overflows. 306 septets, but 3 segments, not 306 / 153 = 2.
        pytest.param("a" * 152 + "€" + "a" * 152, ("GSM-7", 305, 306, 3, 153), id="ext-at-split"),
        pytest.param("a" * 151 + "€" + "a" * 153, ("GSM-7", 305, 306, 2, 153), id="ext-before-split"),
        # The high surrogate would be unit 67: the emoji moves whole to segment 2.
        pytest.param("ж" * 66 + "😀" + "ж" * 66, ("UCS-2", 133, 134, 3, 67), id="emoji-at-split"),
        pytest.param("ж" * 65 + "😀" + "ж" * 67, ("UCS-2", 133, 134, 2, 67), id="emoji-before-split"),
        pytest.param("😀" * 35, ("UCS-2", 35, 70, 1, 70), id="emoji-single-segment"),
        pytest.param("a" * 100 + "č", ("UCS-2", 101, 101, 2, 67), id="one-c-caron"),
        pytest.param("a" * 100 + "`", ("UCS-2", 101, 101, 2, 67), id="backtick-is-not-gsm"),
        pytest.param("Ça coûte 5€", ("UCS-2", 11, 11, 1, 70), id="u-circumflex"),
        pytest.param("Çà et là: 5€ [ok]", ("GSM-7", 17, 20, 1, 160), id="gsm-accents"),
        pytest.param(SWAHILI, ("GSM-7", 70, 70, 1, 160), id="swahili"),
        pytest.param(SWAHILI_LONG, ("GSM-7", 171, 171, 2, 153), id="swahili-long"),
        pytest.param(SLOVENIAN, ("UCS-2", 61, 61, 1, 70), id="slovenian"),
        pytest.param(SLOVENIAN_LONG, ("UCS-2", 127, 127, 2, 67), id="slovenian-long"),
        pytest.param(ARABIC, ("UCS-2", 53, 53, 1, 70), id="arabic"),
        pytest.param(ARABIC * 2, ("UCS-2", 106, 106, 2, 67), id="arabic-twice"),
    ],
)
def test_known_counts(text: str, expected: tuple[str, int, int, int, int]) -> None:
    assert count_segments(text) == SegmentCount(*expected)


def test_one_non_gsm_character_switches_the_whole_message() -> None:
    text = SLOVENIAN.replace("č", "c")
    assert count_segments(text).encoding == "GSM-7"
    assert count_segments(text.replace("c", "č", 1)).encoding == "UCS-2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SLOVENIAN, "Prosimo, prekuhajte vodo pred pitjem. Poklicite nujno linijo."),
        (SLOVENIAN_ROAD, "Zaradi poplav je cesta cez Savo zaprta. Uporabite obvoz skozi Sentvid in Ziri."),
        ("čćžšđ ČĆŽŠĐ", "cczsd CCZSD"),
        ("‘single’ “double” «guillemets» ‹one›", "'single' \"double\" \"guillemets\" 'one'"),
        ("a–b—c", "a-b-c"),
        ("wait…", "wait..."),
        ("no\u00a0break\u2009thin\u202fnarrow\u3000wide", "no break thin narrow wide"),
        ("Łódź, Kraków", "Lodz, Krakow"),
        ("ﬁre ½ m² ①", "fire 1/2 m2 1"),
        ("e\u0301 c\u030c", "é c"),  # decomposed input: compose to GSM-7 if possible, else drop
        ("café über niño Äpfel ß Ø", "café über niño Äpfel ß Ø"),  # already GSM-7
        ("soft\u00adhyphen zero\u200bwidth", "softhyphen zerowidth"),
        (ARABIC, ARABIC),  # no GSM-7 form: unchanged
        ("水 😀", "水 😀"),
        ("“水” 😀…", '"水" 😀...'),  # fold what can be folded; the rest stays UCS-2
        ("ٱلْمَاء", "ٱلْمَاء"),  # Arabic marks belong to the script and stay
        ("नमस्ते", "नमस्ते"),
    ],
)
def test_transliterate(text: str, expected: str) -> None:
    assert transliterate(text) == expected


@pytest.mark.parametrize("text", [SLOVENIAN, SLOVENIAN_LONG, SLOVENIAN_ROAD])
def test_transliterate_makes_slovenian_gsm7(text: str) -> None:
    folded = transliterate(text)
    assert is_gsm7(folded) and not is_gsm7(text)
    assert count_segments(folded).encoding == "GSM-7"


def test_transliterate_cuts_slovenian_segments() -> None:
    assert count_segments(SLOVENIAN_LONG).segments == 2
    assert count_segments(transliterate(SLOVENIAN_LONG)).segments == 1
    assert count_segments(SLOVENIAN_ROAD).segments == 2
    assert count_segments(transliterate(SLOVENIAN_ROAD)).segments == 1


# Text that hits the interesting paths: extension characters and emoji next to
# segment boundaries, foldable characters, decomposed marks, other scripts.
GSM_CHARS = sorted(GSM_BASIC | GSM_EXTENSION)
FOLDABLE = list("čćžšđČŽŠĐáóíúłœ‘’“”«»–—…\u00a0\u2009\u00ad½ﬁ①`´\t")
OTHER = ["ж", "水", "ا", "\u064e", "न", "\u094d", "😀", "👍", "🏽", "\u0301", "\u030c", "\u200d"]
mixed_text = st.text(
    st.one_of(
        st.sampled_from(GSM_CHARS),
        st.sampled_from(sorted(GSM_EXTENSION)),
        st.sampled_from(FOLDABLE),
        st.sampled_from(OTHER),
        st.characters(),
    ),
    max_size=400,
)
gsm_text = st.text(st.sampled_from(GSM_CHARS), max_size=400)


def runs_with_pairs(filler: str, pairs: list[str], longest_run: int) -> st.SearchStrategy[str]:
    """Runs of `filler` each ending in a two-unit character, so boundaries land on pairs."""
    chunk = st.tuples(st.integers(0, longest_run), st.sampled_from(pairs))
    return st.lists(chunk, max_size=5).map(lambda chunks: "".join(filler * n + p for n, p in chunks))


gsm_near_boundaries = runs_with_pairs("a", ["€", "{", "\f", "a"], 160)
ucs2_near_boundaries = runs_with_pairs("ж", ["😀", "ж", "\ud83d"], 70)  # and a lone surrogate
any_text = st.text(st.characters(exclude_categories=()), max_size=300)  # lone surrogates too


@given(st.one_of(any_text, mixed_text))
@example("\ud83d")
@example("ж" * 66 + "\ud83d\ude00" + "ж" * 66)
def test_count_segments_never_raises(text: str) -> None:
    result = count_segments(text)
    assert result.segments >= (1 if text else 0)


@settings(max_examples=300)
@given(st.one_of(gsm_near_boundaries, ucs2_near_boundaries, mixed_text, gsm_text, any_text))
@example("ж" * 66 + "\ud83d" + "ж" * 67)  # lone high surrogate at the boundary: no pair
def test_count_segments_matches_brute_force(text: str) -> None:
    assert count_segments(text) == reference(text)


@given(mixed_text)
@example("č\u0301")
@example("ŋ\u0301")
def test_transliterate_is_idempotent(text: str) -> None:
    once = transliterate(text)
    assert transliterate(once) == once


@given(gsm_text)
def test_transliterate_leaves_gsm_text_alone(text: str) -> None:
    assert transliterate(text) == text


@given(mixed_text)
def test_transliterate_to_gsm_does_not_add_segments(text: str) -> None:
    before, after = count_segments(text), count_segments(transliterate(text))
    # Precondition: no more than 2 septets per UTF-16 unit replaced (true of letters,
    # quotes, dashes, spaces). Then a UCS-2 segment (67/70 units) always fits in a
    # GSM-7 one (153/160 septets). A fold such as "…" -> "..." is 3 septets, and 70
    # of them (1 UCS-2 segment) become 210 septets (2 segments); see the docstring.
    if after.encoding == "GSM-7" and after.units <= 2 * before.units:
        assert after.segments <= before.segments


def test_transliterate_is_not_always_cheaper() -> None:
    # Pins the known exception, so callers know to compare counts when cost matters.
    assert count_segments("…" * 70).segments == 1
    assert count_segments(transliterate("…" * 70)).segments == 2


# -- billing per name shape (plan.Billing): one count serves every name of a shape, and must be exact ----------

_BILLING_TEXTS = [
    "Hi %%name%%, boil water before use. " * 4,  # GSM-7, several segments
    "Pozdravljeni %%name%%: prekuhajte vodo, {} pomoč € " * 3,  # UCS-2 (č) with extension characters
    ("a" * 140) + "%%name%%" + ("€" * 10) + "%%name%%",  # escapes near segment boundaries, the name twice
]


@settings(max_examples=400, deadline=None)
@given(
    text=st.sampled_from(_BILLING_TEXTS),
    names=st.lists(st.text(alphabet=st.sampled_from("abcXYZ €{}čšžÄ😀éñ-'"), max_size=40), min_size=1, max_size=6),
)
def test_billing_by_name_shape_equals_counting_every_message(text: str, names: list[str]) -> None:
    from broadcast.message import Message, Rendering
    from broadcast.plan import Billing

    billing = Billing()  # shared across names, so a memo from one name serves the next of its shape
    rendering = Rendering("sms", "en", text=text)
    for name in names:
        message = Message("n", "sms", "v", "+38641000000", "en", rendering, fields={"name": name}, key=name)
        assert billing(message) == count_segments(message.personal().text).segments, name
