"""Plain sampling: the batched samplers draw from exactly the model's distribution.

The exact first-letter and length distributions of a bigram model follow from its transition
matrix P: with s = P[start] and Q the character-to-character block, P(length = l) = s Q^(l-1) r
(r: the end column) and names longer than the length guard are dropped (counted as unfinished).
Sampled counts are compared with them by a chi-square test at a fixed seed.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sampling_support import chi_square_p

from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.words import Corpus, load_words
from namesmith.generation.config import GenerateConfig
from namesmith.generation.draws import CHUNK, Batch, alias_tables, decode_batch
from namesmith.generation.generate import generate
from namesmith.generation.sample import next_token_probs, plain_sampler
from namesmith.models.bigram import BigramCounts, BigramCountsConfig


@pytest.fixture(scope="module")
def bigram() -> tuple[BigramCounts, Vocab]:
    corpus = Corpus.from_words(load_words("builtin")[:2000], seed=1)
    model = BigramCounts(corpus.vocab.size, BigramCountsConfig(smoothing=0.1))  # empty names possible
    model.fit(corpus, None)
    return model.eval(), corpus.vocab


class HiddenTable(BigramCounts):
    """The same model seen as an arbitrary CharModel: forces the generic (torch) sampler."""

    def transition_table(self) -> None:
        return None

    def markov_chain(self) -> None:
        return None

    @property
    def context_size(self) -> None:
        return None


def table(model: BigramCounts, **decoding) -> np.ndarray:
    with torch.no_grad():
        probs = next_token_probs(BigramCounts.transition_probs(model).log(), **decoding).double().numpy()
    return probs / probs.sum(1, keepdims=True)  # top-p leaves the kept mass unnormalised


def draw_names(model, vocab: Vocab, num: int, seed: int, prefix: str = "", max_length: int = 32,
               **decoding) -> Batch:
    """`num` draws of the plain sampler, in batches of at most CHUNK."""
    sampler = plain_sampler(model, vocab, prefix=prefix, max_length=max_length, seed=seed, **decoding)
    batches = [sampler.run(min(CHUNK, num - start)) for start in range(0, num, CHUNK)]
    return Batch([n for b in batches for n in b.names], np.concatenate([b.finished for b in batches]))


def exact_distributions(P: np.ndarray, start: int, room: int) -> tuple[np.ndarray, np.ndarray]:
    """First-token and length distributions of names of at most `room` characters.

    Both have a last entry for "unfinished" (no end within `room` characters). first[0] is the
    empty name; length[l] for l = 0..room, by the absorbing-chain recursion s Q^(l-1) r.
    """
    s, Q, r = P[start, 1:], P[1:, 1:], P[1:, BOUNDARY]
    length = np.zeros(room + 2)
    length[0] = P[start, BOUNDARY]
    reach = s.copy()  # P(l characters drawn, none the end), per last character
    for n in range(1, room + 1):
        length[n] = reach @ r
        reach = reach @ Q
    length[-1] = 1 - length[:-1].sum()
    finish = r.copy()  # P(end within m more draws | character), m = 1..room
    for _ in range(room - 1):
        finish = r + Q @ finish
    first = np.concatenate([[P[start, BOUNDARY]], s * finish, [0.0]])
    first[-1] = 1 - first[:-1].sum()
    return first, length


def observed_distributions(samples: Batch, vocab: Vocab, prefix: str, room: int) -> tuple[np.ndarray, np.ndarray]:
    first = np.zeros(vocab.size + 1)
    length = np.zeros(room + 2)
    for name, count in Counter(name[len(prefix):] for name in samples.names).items():
        first[vocab.stoi[name[0]] if name else 0] += count
        length[len(name)] += count
    first[-1] = length[-1] = samples.unfinished
    return first, length


@pytest.mark.parametrize("generic", [False, True], ids=["table", "generic"])
@pytest.mark.parametrize("options", [
    {},
    {"temperature": 0.7, "top_k": 8},
    {"top_p": 0.8, "prefix": "ma"},
    {"max_length": 4},  # a tight guard: many names are unfinished
])
def test_first_letter_and_length_follow_the_exact_distribution(bigram, generic, options):
    model, vocab = bigram
    if generic:
        hidden = HiddenTable(vocab.size, model.config)
        hidden.load_state_dict(model.state_dict())
        model = hidden.eval()
    num = 20_000 if generic else 200_000
    options = {"prefix": "", "max_length": 32, **options}
    result = draw_names(model, vocab, num, 12345, **options)
    prefix, max_length = options.pop("prefix"), options.pop("max_length")
    room = max_length - len(prefix)
    assert len(result.names) + result.unfinished == num
    assert all(name.startswith(prefix) and len(name) <= max_length for name in result.names)
    start = vocab.encode(prefix)[-1] if prefix else BOUNDARY
    exact_first, exact_length = exact_distributions(table(model, **options), start, room)
    first, length = observed_distributions(result, vocab, prefix, room)
    assert chi_square_p(first, exact_first) > 1e-3
    assert chi_square_p(length, exact_length) > 1e-3


def test_a_wrong_distribution_is_detected(bigram):
    # the test above has power: a sampler at temperature 1.1 fails it against the exact table at 1.0
    model, vocab = bigram
    result = draw_names(model, vocab, 200_000, 12345, temperature=1.1)
    first, length = observed_distributions(result, vocab, "", 32)
    exact_first, exact_length = exact_distributions(table(model), BOUNDARY, 32)
    assert min(chi_square_p(first, exact_first), chi_square_p(length, exact_length)) < 1e-6


@pytest.mark.parametrize("generic", [False, True], ids=["table", "generic"])
def test_same_seed_same_names(bigram, generic):
    model, vocab = bigram
    if generic:
        hidden = HiddenTable(vocab.size, model.config)
        hidden.load_state_dict(model.state_dict())
        model = hidden
    a = generate(model, vocab, GenerateConfig(num=500, seed=7), max_word_length=16).names
    assert a == generate(model, vocab, GenerateConfig(num=500, seed=7), max_word_length=16).names
    assert a != generate(model, vocab, GenerateConfig(num=500, seed=8), max_word_length=16).names


def test_zero_probability_tokens_are_never_drawn():
    vocab = Vocab(tuple("abc"))
    model = BigramCounts(vocab.size, BigramCountsConfig(smoothing=0))
    model.pair_counts.copy_(torch.tensor([[0, 5, 0, 1], [3, 0, 2, 0], [1, 0, 0, 4], [1, 1, 0, 0]]))
    names = generate(model, vocab, GenerateConfig(num=20_000, seed=0), max_word_length=8).names
    pairs = {(a, b) for name in names for a, b in zip("^" + name, name + "$")}
    assert pairs <= {("^", "a"), ("^", "c"), ("a", "$"), ("a", "b"), ("b", "$"), ("b", "c"), ("c", "$"), ("c", "a")}


def test_alias_tables_reproduce_each_row():
    rng = np.random.default_rng(0)
    probs = rng.random((6, 9)) ** 3
    probs[1] = 0
    probs[1, 4] = 2.0  # one certain token
    probs[2, ::2] = 0  # impossible tokens
    probs[3] = 1.0  # uniform
    accept, alias = alias_tables(probs)
    implied = np.zeros_like(probs)
    for r in range(len(probs)):
        for k in range(probs.shape[1]):
            implied[r, k] += accept[r, k]
            implied[r, alias[r, k]] += 1 - accept[r, k]
    np.testing.assert_allclose(implied / probs.shape[1], probs / probs.sum(1, keepdims=True), atol=1e-12)
    assert ((accept == 0) | (probs > 0)).all()


@pytest.mark.parametrize("chars", ["abcé", "abł", "ab😀"], ids=["latin-1", "ucs-2", "astral"])
def test_decode_batch_any_alphabet(chars):
    vocab = Vocab(tuple(sorted(chars)))
    words = ["", chars, chars[::-1][:2], chars[-1] * 3]
    width = 5
    tokens = np.full((len(words), width), 2, dtype=np.int64)  # garbage after each name's end
    for i, w in enumerate(words):
        tokens[i, : len(w)] = vocab.encode(w)
    lengths = np.array([len(w) for w in words])
    assert decode_batch(tokens, lengths, vocab) == words
    assert decode_batch(tokens[:0], lengths[:0], vocab) == []
