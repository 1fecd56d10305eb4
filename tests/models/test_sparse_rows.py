"""A sparse n-gram's rows assembled in NumPy (namesmith.models.sparse_rows) are the torch model's rows: components
mixed, a table over them, a table of whole rows, a class table, and an adapted model's own letters; and a sampler
drawing from them follows them."""

from __future__ import annotations

import random

import numpy as np
import torch

from namesmith.core.vocab import Vocab
from namesmith.data.words import encode_words
from namesmith.generation.draws import RowSampler
from namesmith.models.backoff_table import BackoffTable, kn_table
from namesmith.models.base import ngram_windows
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.models.sparse_rows import own_letters

ORDER = 4


def made_up(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "ri", "to", "ma", "ne", "lo", "sa", "ku", "el", "dor", "wen", "thi", "zy"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def whole_rows(keys: torch.Tensor, vocab_size: int, seed: int) -> BackoffTable:
    """A table holding every context's whole row and passing nothing down (adaptation's form of a dense n-gram)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.rand(len(keys), vocab_size, generator=g) + 0.01
    rows /= rows.sum(1, keepdim=True)
    R = len(keys)
    return BackoffTable().set(keys, torch.zeros(R), None, torch.arange(R + 1) * vocab_size,
                              torch.arange(vocab_size).repeat(R), rows.ravel())


def a_model(classes: bool, whole: bool) -> tuple[SparseNGram, Vocab, torch.Tensor]:
    names = made_up(400, 0)
    vocab = Vocab.from_chars(sorted(set("".join(names)) | set("qx")))  # q, x: never seen
    x, y = encode_words(names, vocab)
    windows = ngram_windows(x, y, ORDER)
    components = [kn_table(windows, vocab.size), kn_table(windows[::3], vocab.size, discount=0.5)]
    tables = [kn_table(windows[:200], vocab.size)]
    if whole:
        tables.append(whole_rows(components[0].keys, vocab.size, 1))
    class_table = None
    if classes:  # the end, vowels, consonants
        class_of = torch.tensor([0] + [1 if c in "aeiouy" else 2 for c in vocab.chars])
        class_table = (class_of, kn_table(class_of[windows], 3))
    model = SparseNGram.from_tables(vocab.size, ORDER, tables, components, torch.tensor([0.7, 0.3]), class_table)
    contexts = windows[:, :-1]
    rng = np.random.default_rng(0)
    unseen = torch.from_numpy(rng.integers(0, vocab.size, (300, ORDER - 1)))
    return model.eval(), vocab, torch.cat([contexts, unseen])


def test_numpy_rows_are_the_models_rows_to_1e_6():
    for classes, whole in ((False, False), (True, False), (False, True), (True, True)):
        model, vocab, contexts = a_model(classes, whole)
        with torch.no_grad():
            expected = model.next_token_probs(contexts).numpy()
        rows = model.numpy_rows().probs(contexts.numpy())
        assert rows.dtype == np.float32 and np.abs(rows - expected).max() < 1e-6, (classes, whole)
        allowed = own_letters(vocab, "aeiklmnorst")  # an adapted model's letters: the others renormalised away
        restricted = np.where(allowed, expected, 0)
        restricted /= restricted.sum(1, keepdims=True)
        assert np.abs(model.numpy_rows(allowed).probs(contexts.numpy()) - restricted).max() < 1e-6


def test_the_rows_are_rebuilt_when_the_tables_change():
    model, _, contexts = a_model(False, False)
    before = model.numpy_rows()
    assert model.numpy_rows() is before
    model.mixture = torch.tensor([0.2, 0.8])
    with torch.no_grad():
        expected = model.next_token_probs(contexts).numpy()
    assert model.numpy_rows() is not before
    assert np.abs(model.numpy_rows().probs(contexts.numpy()) - expected).max() < 1e-6


def test_the_row_sampler_draws_by_the_rows():
    model, vocab, _ = a_model(True, False)
    rows = model.numpy_rows()
    names = RowSampler(rows, vocab, "", 30, seed=0).run(20_000).names
    first = np.bincount([vocab.stoi[n[0]] if n else 0 for n in names], minlength=vocab.size) / 20_000
    expected = rows.probs(np.zeros((1, ORDER - 1), dtype=np.int64))[0]
    assert np.abs(first - expected).max() < 0.015
    after_ka = [n[2] if len(n) > 2 else "" for n in names if n.startswith("ka")]
    drawn = np.bincount([vocab.stoi[c] if c else 0 for c in after_ka], minlength=vocab.size) / len(after_ka)
    ka = np.array([[0] + vocab.encode("ka")])
    assert np.abs(drawn - rows.probs(ka)[0]).max() < 0.05
    again = RowSampler(rows, vocab, "", 30, seed=0).run(20_000).names
    assert again == names  # a seed draws the same names
    prefixed = RowSampler(rows, vocab, "ka", 30, seed=1).run(200).names
    assert all(n.startswith("ka") for n in prefixed)
