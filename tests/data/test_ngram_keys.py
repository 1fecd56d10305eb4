"""The n-gram keys' shared operations (namesmith.data.ngram_keys), checked against plain Python."""

from __future__ import annotations

import torch

from namesmith.data.ngram_keys import find_sorted


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
