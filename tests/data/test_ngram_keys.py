"""The n-gram keys' shared operations (namesmith.data.ngram_keys), checked against plain Python."""

from __future__ import annotations

import torch

from namesmith.data.ngram_keys import find_sorted, longest_match_transitions, sum_by


def test_find_sorted_agrees_with_a_dict_in_any_shape_and_in_an_empty_table():
    generator = torch.Generator().manual_seed(0)
    for size in (0, 1, 7, 300):
        table = torch.unique(torch.randint(0, 1000, (size,), generator=generator))
        where = {int(key): i for i, key in enumerate(table)}
        queries = torch.randint(-5, 1005, (4, 25), generator=generator)
        pos, found = find_sorted(table, queries)
        assert pos.shape == found.shape == queries.shape and found.dtype == torch.bool
        for query, p, f in zip(queries.flatten().tolist(), pos.flatten().tolist(), found.flatten().tolist()):
            assert f == (query in where)
            if f:
                assert p == where[query]
            assert 0 <= p < max(len(table), 1)  # a valid index even for what is not there


def test_sum_by_adds_each_row_into_its_group_in_float64():
    group = torch.tensor([2, 0, 2, 2, 3])
    values = torch.tensor([[1.0, 0.5], [2.0, 0.0], [3.0, 0.25], [0.5, 1.0], [4.0, 2.0]])  # float32 in, float64 out
    sums = sum_by(group, values, 5)
    assert sums.dtype == torch.float64 and sums.shape == (5, 2)
    expected = [[0.0, 0.0] for _ in range(5)]
    for g, row in zip(group.tolist(), values.tolist()):
        expected[g] = [a + b for a, b in zip(expected[g], row)]
    assert sums.tolist() == expected  # group 1 and 4: no rows, zeros
    assert sum_by(torch.tensor([1, 1]), torch.tensor([3, 4]), 2).tolist() == [0.0, 7.0]  # whole counts too


def test_longest_match_transitions_go_to_the_longest_stored_suffix():
    """Every (state, token) of a small set of contexts closed under suffixes, against a search by hand."""
    base, K, V = 4, 3, 3  # tokens 0..2 are digits 1..3

    def key(tokens: tuple[int, ...]) -> int:
        return sum((t + 1) * base**i for i, t in enumerate(reversed(tokens)))

    stored = {(), (0,), (1,), (2,), (0, 1), (1, 1), (2, 0, 1), (0, 1, 1), (2, 1), (1, 2, 1)}
    stored |= {s[i:] for s in stored for i in range(len(s))}  # closed under suffixes
    contexts = sorted(stored, key=key)
    keys = torch.tensor([key(c) for c in contexts])
    table = longest_match_transitions(keys, base, K, V)
    for s, context in enumerate(contexts):
        for w in range(V):
            history = (context + (w,))[-K:]
            longest = next(history[i:] for i in range(len(history) + 1) if history[i:] in stored)
            assert contexts[int(table[s, w])] == longest, (context, w)
