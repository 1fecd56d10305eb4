"""Issue #5, property-based: over arbitrary Unicode word lists (and arbitrary bytes), reading,
training, sampling and scoring raise nothing but namesmith's own errors, sampled names use only
vocabulary characters, and every next-character distribution sums to 1."""

from __future__ import annotations

import math
import os
import tempfile
import unicodedata

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from namesmith import NameModel
from namesmith.core.casing import fold, resolve, restore
from namesmith.core.errors import DataError, NamesmithError
from namesmith.core.vocab import BOUNDARY
from namesmith.data.words import DataConfig, decode_text, has_bad_chars, load_words, parse_words
from namesmith.models.nll import word_log_probs

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)

# any code point except surrogates (which UTF-8 cannot hold); weighted towards names' alphabets
chars = st.one_of(st.characters(codec="utf-8"), st.sampled_from("aeiouyбгдαβγ李小é\u0301 -'.\t\r\n\x00\ufeff"))
word_lists = st.lists(st.text(chars, min_size=0, max_size=12), min_size=1, max_size=12)
line_ends = st.sampled_from(["\n", "\r\n", "\r"])


pytestmark = pytest.mark.usefixtures("one_thread")


def read(words: list[str], end: str, **options) -> list[str]:
    """A word list as `load_words` reads it from a UTF-8 file (without touching the disk)."""
    raw = end.join(words).encode("utf-8")
    return parse_words(decode_text(raw, "words.txt"), "words.txt", **options)


def check_clean(words: list[str], max_line_length: int = 64) -> None:
    assert words
    for w in words:
        assert w and w == w.strip() and unicodedata.is_normalized("NFC", w)
        assert "\t" not in w and not has_bad_chars(w) and len(w) <= max_line_length


@SETTINGS
@given(word_lists, line_ends, st.booleans(), st.booleans(), st.integers(1, 20))
def test_reading_gives_clean_words_or_a_data_error(words, end, lowercase, dedupe, max_len):
    try:
        got = read(words, end, lowercase=lowercase, dedupe=dedupe, max_line_length=max_len)
    except DataError as e:
        assert "\n" not in str(e) and str(e).startswith("words.txt: ")
        return
    check_clean(got, max_len)
    if dedupe:
        assert len(set(got)) == len(got)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.binary(max_size=300), st.sampled_from(["utf-8", "latin-1", "utf-16", "ascii"]))
def test_arbitrary_bytes_give_clean_words_or_a_data_error(raw, encoding):
    try:
        got = parse_words(decode_text(raw, "f.bin", encoding), "f.bin")
    except DataError as e:
        assert "\n" not in str(e) and str(e).startswith("f.bin: ")
        return
    check_clean(got)


@SETTINGS
@given(word_lists, line_ends, st.sampled_from(["bigram-counts", "bigram"]), st.integers(0, 2**31),
       st.sampled_from([0.5, 1.0, 3.0]), st.one_of(st.none(), st.integers(1, 5)), st.booleans(),
       st.sampled_from(["exact", "auto", "lower"]), st.sampled_from([None, str.title, str.upper]))
def test_load_train_sample_score(words, end, model_type, seed, temperature, top_k, use_prefix, case, recase):
    try:
        data = read([recase(w) for w in words] if recase else words, end)
        casing = resolve(data, case)
        learned = fold(data, casing)  # the words as the model learns them
        result = NameModel.train(model=model_type, words=data, case=case, split_seed=seed % 100, max_steps=5,
                                 device="cpu")
        vocab, model = result.vocab, result.model
        prefix = data[0][:1] if use_prefix else ""
        generated = result.generate(25, seed=seed, temperature=temperature, top_k=top_k, starts_with=prefix,
                                    max_tries=1000)  # a barely trained bigram may rarely end a name
        names = generated.stats.names  # as the model spelled them (printed: restored to the list's casing)
        scores = word_log_probs(model, learned + [n for n in names if n], vocab)
    except NamesmithError as e:
        assert "\n" not in str(e)
        event(f"refused: {type(e).__name__}")
        return
    event(f"trained and sampled ({casing})")
    assert result.casing == casing
    assert set(vocab.chars) == set().union(*map(set, learned)) and BOUNDARY not in vocab.stoi.values()
    assert len(names) == 25 or generated.stats.stop_reason == "max-tries"
    assert generated.names == [restore(n, casing) if casing in ("title", "upper") else n for n in names]
    for name in names:
        assert set(name) <= set(vocab.chars), name
        assert name.startswith(fold([prefix], casing)[0])
    if casing == "exact":
        assert generated.names == names and all(name.startswith(prefix) for name in names)
    probs = model.transition_probs()  # (V, V), row = previous token
    assert torch.allclose(probs.sum(1), torch.ones(vocab.size), atol=1e-5)
    x = torch.tensor([[BOUNDARY, *vocab.encode(learned[0])]])
    assert torch.allclose(model(x).float().softmax(-1).sum(-1), torch.ones(x.shape), atol=1e-5)
    assert all(math.isfinite(s) and s <= 1e-9 for s in scores.tolist())
    for m in result.metrics.values():
        assert m["nll"] is None or (math.isfinite(m["nll"]) and m["nll"] >= 0)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(word_lists, line_ends)
def test_through_a_real_file(words, end):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "words.txt")
        with open(path, "wb") as f:
            f.write(end.join(words).encode("utf-8"))
        try:
            got = load_words(DataConfig(path=path))
        except DataError as e:
            assert str(e).startswith(path)
            return
        assert got == read(words, end)
