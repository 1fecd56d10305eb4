"""Scoring with a vocabulary of many scripts stays within bounded blocks (issue 26: the server's peak).

The built-in `surnames` model (1,187 characters) took 1.3 GB at the peak to load and warm up for the server,
beside 0.5 GB held: its percentile table scores 10,000 training names, and each chunk of them was assembled
8,192 contexts of (V,) rows at a time inside (B, T, V) chunks of 64 MB. These tests count the blocks
built, in bytes of float32, instead of timing or measuring the process.
"""

from __future__ import annotations

import random

import torch

import namesmith.models.backoff_table as backoff_table
from namesmith.core.vocab import Vocab
from namesmith.data.words import encode_words
from namesmith.models.backoff_table import kn_table
from namesmith.models.base import ngram_windows
from namesmith.models.nll import word_log_probs
from namesmith.models.sparse_ngram import SparseNGram

MB = 1 << 20


def many_script_model(letters: int = 1200, words: int = 400, seed: int = 0) -> tuple[SparseNGram, Vocab, list[str]]:
    rng = random.Random(seed)
    alphabet = [chr(0x4E00 + i) for i in range(letters)]
    names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 7))) for _ in range(words)]
    vocab = Vocab.from_chars(alphabet)
    x, y = encode_words(names, vocab)
    model = SparseNGram.from_tables(vocab.size, 4, [], [kn_table(ngram_windows(x, y, 4), vocab.size)]).eval()
    return model, vocab, names


def test_scoring_a_large_vocabulary_assembles_bounded_blocks(monkeypatch):
    model, vocab, names = many_script_model()
    words = names * 5  # 2,000 words: more than one old (B, T, V) chunk of 64 MB, and 8,192 contexts in it
    reference = word_log_probs(model, words[:50], vocab)
    blocks, chunks = [], []
    probs, forward = SparseNGram._probs, SparseNGram.forward

    def counted_probs(self, keys, last):
        blocks.append(len(keys) * self.vocab_size * 4)
        return probs(self, keys, last)

    def counted_forward(self, idx):
        chunks.append(idx.numel() * self.vocab_size * 4)
        return forward(self, idx)

    monkeypatch.setattr(SparseNGram, "_probs", counted_probs)
    monkeypatch.setattr(SparseNGram, "forward", counted_forward)
    scores = word_log_probs(model, words, vocab)

    assert blocks and max(blocks) <= 8 * MB  # each (rows, V) block assembled: was 8,192 × 1,201 (38 MB)
    assert chunks and max(chunks) <= 16 * MB  # each (B, T, V) chunk scored: was up to 64 MB
    assert torch.allclose(scores[:50], reference)  # the same scores, however they are cut
    monkeypatch.setattr(backoff_table, "ROW_CELLS", 1 << 30)  # one block per chunk: the same scores again
    assert torch.allclose(word_log_probs(model, words[:50], vocab), scores[:50])


def test_a_small_vocabulary_keeps_its_blocks_of_8192_contexts():
    assert backoff_table.rows_at_once(27) == backoff_table.ROWS_CHUNK == 8192
    assert backoff_table.rows_at_once(1201) * 1201 * 4 <= 8 * MB
    assert backoff_table.rows_at_once(10**9) == 1
