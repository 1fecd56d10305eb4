"""One word-cleaning rule (issue 28): counting's fast path cleans a block exactly as `parse_words` cleans its lines.

namesmith.data.counting reads a large list in binary blocks, and a block with no character the line rules act
on is cleaned by array operations (`plain_codes`) instead of line by line. Over nasty inputs (spaces at the
ends of lines, combining marks that NFC composes, letters whose lower case is longer or not NFC, tabs, controls,
format characters, emoji, lines around the length limit, CR and CRLF) the words it keeps are `parse_words`'s, in
order, with and without lowercasing. The inputs are drawn so that the fast path is taken for many of them,
and the test checks it was.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from namesmith.core.errors import DataError
from namesmith.data.blocks import clean_block, plain_codes
from namesmith.data.words import DataConfig, decode_text, parse_words

# Letters of names in several scripts; characters the fast path must handle as the rules do although no rule
# removes them (a space inside a name stays, a combining acute and Hangul jamo that NFC composes, the Kelvin and
# Angstrom signs that NFC maps, İ whose lower case is longer, ß, Greek sigma and ypogegrammeni, the titlecase
# ǅ, the ligature ﬁ); and what the rules act on (tab, CR, NUL, other controls, U+00A0 and U+2028: whitespace,
# U+200B and U+FEFF: removed format characters, U+200D: a kept one, an emoji and a keycap mark: a skipped line)
PLAIN = "abcdeyzABZ-'.éñøабвгдΑαβγ李小أبתשक्ष"
TRICKY = " \u0301e\u0301\u1100\u1161\u212a\u212bİßΣσς\u0345ǅﬁ"
ACTED_ON = "\t\r\x00\x1f\x7f\u00a0\u2028\u200b\ufeff\u200d🦄\u20e3"
plain_lines = st.lists(st.text(st.sampled_from(PLAIN + TRICKY), max_size=10), min_size=1, max_size=8)
nasty_lines = st.lists(st.text(st.sampled_from(PLAIN + TRICKY + ACTED_ON), max_size=10), min_size=1, max_size=8)
any_lines = st.lists(st.text(st.characters(codec="utf-8"), max_size=10), min_size=1, max_size=8)


def rule_words(raw: bytes, config: DataConfig) -> list[str] | str:
    """The words `parse_words` keeps from a block (none where it finds no usable name), or the error that
    the block cannot be read (a NUL byte: a binary file)."""
    try:
        text = decode_text(raw, "words.txt")
    except DataError as e:
        return str(e)
    try:
        return parse_words(text, "words.txt", lowercase=config.lowercase, max_line_length=config.max_line_length)
    except DataError:
        return []


def fast_words(raw: bytes, config: DataConfig) -> list[str] | str:
    """The words counting keeps from a block (`clean_block`: the fast path where it applies), or its error."""
    try:
        codes, lengths, _ = clean_block(raw.replace(b"\r\n", b"\n"), 0, "words.txt", config)
    except DataError as e:
        return str(e)
    words = "".join(map(chr, codes.tolist())).split("\n")[:-1]
    assert lengths.tolist() == [len(w) for w in words]
    return words


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.generate, Phase.shrink])
@given(st.one_of(plain_lines, nasty_lines, any_lines), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(),
       st.integers(1, 12))
def test_the_fast_path_keeps_the_words_parse_words_keeps(lines, end, lowercase, max_line_length):
    raw = (end.join(lines) + "\n").encode("utf-8")
    config = DataConfig(path="words.txt", case="lower" if lowercase else "exact", max_line_length=max_line_length)
    fast, rule = fast_words(raw, config), rule_words(raw, config)
    if isinstance(rule, str):  # a NUL byte: both say it is a binary file (a line number may count CRs apart)
        assert isinstance(fast, str) and fast.split(" (")[0] == rule.split(" (")[0]
    else:
        assert fast == rule
    if b"\x00" not in raw:  # (a NUL byte: both raise the binary-file error)
        fast = plain_codes(raw.replace(b"\r\n", b"\n"), 0, "words.txt", config) is not None
        event("fast path" if fast else "line by line")



def test_the_fast_path_is_taken_for_plain_blocks():
    """The property above tests the fast path, not only the line-by-line fallback."""
    config = DataConfig(path="words.txt", case="lower", max_line_length=5)
    assert plain_codes(b"emma\nOLIVIA\nmia\n", 0, "words.txt", config) is not None
    assert plain_codes("émile\nσοφία\nli na\n".encode(), 0, "words.txt", config) is not None
    assert plain_codes(b"emma\n mia\n", 0, "words.txt", config) is None  # a space at a line's end
    assert plain_codes("ipek\nİpek\n".encode(), 0, "words.txt", config) is None  # lower case one longer
