"""The NumPy chain sampler (namesmith.generation.draws): names distributed as the model says, same seed same names."""

from collections import Counter

import numpy as np
import pytest
from sampling_support import chi_square_pvalue, exact_distribution

from namesmith.generation.draws import ChainSampler, ChainTables
from namesmith.generation.sample import chain_tables, plain_sampler
from namesmith.generation.saved_tables import PlainTables, read_tables, write_tables
from namesmith.namemodel import NameModel

TINY = ["abc", "ba", "cab", "acca", "b", "bbc", "cabba", "ac", "aab", "cc"]


@pytest.fixture(scope="module")
def trigram():
    return NameModel.train(model="ngram", words=TINY, order=3, calibrate="none", prior="none")


def tables_of(model) -> ChainTables:
    tables = chain_tables(model)
    assert tables is not None, "an n-gram is a finite chain"
    return tables


def test_the_chain_sampler_draws_names_as_the_model_gives_them_probability(one_thread, trigram):
    """Pearson's test of 20,000 draws (1 to 5 characters) against P(name | 1 ≤ length ≤ 5) by enumeration."""
    model, vocab = trigram.model, trigram.vocab
    batch = ChainSampler(tables_of(model), vocab, "", max_length=5, seed=0).run(20_000)
    counts = Counter(name for name in batch.names if name)  # the empty name is never printed
    expected = exact_distribution(model, vocab, lambda n: True, 5)
    assert chi_square_pvalue(counts, expected, sum(counts.values())) > 1e-3
    assert len(batch.names) == int(batch.finished.sum())


def test_the_same_seed_draws_the_same_names_and_a_prefix_holds(trigram):
    tables = tables_of(trigram.model)
    first = ChainSampler(tables, trigram.vocab, "ca", max_length=8, seed=3).run(500).names
    assert first == ChainSampler(tables, trigram.vocab, "ca", max_length=8, seed=3).run(500).names
    assert all(name.startswith("ca") for name in first)
    assert first != ChainSampler(tables, trigram.vocab, "ca", max_length=8, seed=4).run(500).names


def test_saved_tables_load_as_they_were(tmp_path, trigram):
    tables = tables_of(trigram.model)
    entry = write_tables(tmp_path, PlainTables("ngram", chain=tables))
    loaded = read_tables(tmp_path, entry, trigram.vocab).chain
    assert loaded.start == tables.start and np.array_equal(loaded.cdf, tables.cdf)
    assert np.array_equal(loaded.next_state, tables.next_state) and loaded.next_state.dtype == np.int32
    assert np.allclose(loaded.cdf[:, -1], 1.0, atol=1e-5)  # every row a distribution


def test_plain_sampling_of_an_ngram_is_the_chain_sampler(trigram):
    """One sampling rule: the model's own chain, in NumPy, wherever it is sampled from."""
    sampler = plain_sampler(trigram.model, trigram.vocab, prefix="", max_length=10, seed=0)
    assert isinstance(sampler, ChainSampler)
    assert sampler.run(50).names == ChainSampler(tables_of(trigram.model), trigram.vocab, "", 10, 0).run(50).names


def test_the_model_s_own_chain_is_built_once(trigram):
    """A server samples the same model on every plain request: its tables are kept while the model is unchanged."""
    assert chain_tables(trigram.model) is chain_tables(trigram.model)
    assert chain_tables(trigram.model, temperature=0.5) is not chain_tables(trigram.model, temperature=0.5)
