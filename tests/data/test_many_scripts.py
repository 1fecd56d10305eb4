"""A table of names in many scripts (a vocabulary of more than 1,000 characters) trains within bounds.

The built-in `world` set (1,004 characters, 150,000 contexts) once took 11 GB and 20 minutes: every
conditional n-gram component and every label combination scored was a dense (contexts, V) table. These
tests count what is built instead of timing it: the cells of dense tables, which mixtures are
assembled whole, and the size of each batch scored. A model held sparsely must also predict exactly
what the dense one does (checked on a small alphabet, where both fit).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import namesmith.models.weighted_kn as weighted_kn
from namesmith import NameModel
from namesmith.core.vocab import BOUNDARY
from namesmith.models.conditional_counts import ConditionalCounts
from namesmith.models.nll import EVAL_CELLS, row_log_probs

pytestmark = pytest.mark.slow  # 12-34 s each on the busy 2-core machine

# (locale, first code point, letters): ten scripts without case, 1,191 letters in all, each drawn often
SCRIPTS = (("zh", 0x4E00, 120), ("zh2", 0x5000, 120), ("ko", 0xAC00, 120), ("ko2", 0xB000, 120),
           ("am", 0x1200, 72), ("iu", 0x1401, 120), ("iu2", 0x1480, 120), ("ii", 0xA000, 120), ("ii2", 0xA100, 120),
           ("ja", 0x3041, 86), ("th", 0x0E01, 46), ("he", 0x05D0, 27))
DENSE_LIMIT = 1 << 24  # cells of a (contexts, V) table: 64 MB of float32


def many_script_rows(per_locale: int = 200, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for locale, first, letters in SCRIPTS:
        alphabet = [chr(first + i) for i in range(letters)]
        for _ in range(per_locale):
            name = "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 7)))
            rows.append((name, locale, rng.choice("FM")))
    return rows


@pytest.fixture(scope="module")
def many_scripts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "many_scripts.tsv"
    path.write_text("name\tlocale\tsex\n" + "".join(f"{n}\t{loc}\t{s}\n" for n, loc, s in many_script_rows()),
                    encoding="utf-8")
    return path


def test_a_many_script_table_builds_no_dense_table_and_scores_in_bounded_batches(one_thread, many_scripts,
                                                                                   monkeypatch):
    dense_cells, aligned, batch_cells = [], [], []
    distributions = weighted_kn.distributions

    def counted_distributions(keys_by_order, counts_by_order, discounts, vocab_size):
        contexts = sum(len(torch.unique(keys // (vocab_size + 1))) for keys in keys_by_order)
        dense_cells.append(contexts * vocab_size)
        return distributions(keys_by_order, counts_by_order, discounts, vocab_size)

    aligned_of = ConditionalCounts._aligned
    forward = ConditionalCounts.forward

    def counted_forward(self, idx):
        batch_cells.append(idx.numel() * self.vocab_size)
        return forward(self, idx)

    monkeypatch.setattr(weighted_kn, "distributions", counted_distributions)
    monkeypatch.setattr(ConditionalCounts, "_aligned",
                        lambda self, node: aligned.append(node) or aligned_of(self, node))
    monkeypatch.setattr(ConditionalCounts, "forward", counted_forward)

    model = NameModel.train(many_scripts, "ngram")
    assert model.vocab.size > 1000
    conditional = model.model
    assert isinstance(conditional, ConditionalCounts) and conditional.sparse
    korean = model.generate(20, where={"locale": "ko"}, seed=1).names
    scored = model.score(["가각간"], where={"locale": "ko"})

    assert max(dense_cells, default=0) <= DENSE_LIMIT  # the pooled model's table alone would be far larger
    assert aligned == []  # no label combination was mixed into a whole (contexts, V) table
    assert batch_cells and max(batch_cells) <= EVAL_CELLS  # every scored batch bounded
    # and it is a model of the data: Korean names for locale=ko, held-out names likelier than uniform
    hangul = ["\uac00" <= c <= "\ud7a3" for name in korean for c in name]
    assert sum(hangul) >= 0.5 * len(hangul)  # 240 of the 1,191 characters are Hangul
    assert scored[0].log_prob > 4 * -torch.log(torch.tensor(model.vocab.size)).item()
    assert model.metrics["test"]["nll"] < 0.8 * torch.log(torch.tensor(model.vocab.size)).item()


def test_a_sparse_conditional_model_predicts_what_the_dense_one_does(one_thread, tmp_path, monkeypatch):
    rng = random.Random(4)
    rows = [("".join(rng.choice(letters) for _ in range(rng.randint(2, 7))), locale, rng.choice("FM"))
            for locale, letters in (("a", "abcdefg"), ("b", "hijklmn"), ("c", "abchijk")) for _ in range(300)]
    path = tmp_path / "small.tsv"
    path.write_text("name\tlocale\tsex\n" + "".join(f"{n}\t{loc}\t{s}\n" for n, loc, s in rows), encoding="utf-8")
    dense = NameModel.train(path, "ngram", order=4)
    monkeypatch.setattr("namesmith.models.conditional_counts.DENSE_CELLS", 100)
    sparse = NameModel.train(path, "ngram", order=4)
    assert sparse.model.sparse and not dense.model.sparse
    corpus = labelled_corpus_of(path)
    x, y = corpus.tensors("test")
    assert torch.allclose(row_log_probs(sparse.model, x, y), row_log_probs(dense.model, x, y), atol=1e-4)
    x[:, 0] = BOUNDARY  # a plain model's rows: no labels in the start token
    for where in ({"locale": "b"}, {"locale": "c", "sex": "F"}, {"locale": ["a", "b"]}):
        assert torch.allclose(sparse.model.given(where, guidance=0.5)(x), dense.model.given(where, guidance=0.5)(x),
                              atol=1e-4)
    assert sparse.metrics["test"]["nll"] == pytest.approx(dense.metrics["test"]["nll"], abs=1e-5)


def labelled_corpus_of(path: Path):
    from namesmith.data.words import DataConfig
    from namesmith.training.provenance import read_corpus

    return read_corpus(DataConfig(path=str(path)))[0]


def test_a_plain_list_too_large_for_dense_tables_trains_sparse_and_equals_the_dense(one_thread, tmp_path,
                                                                                     monkeypatch):
    from namesmith.models.ngram import NGram

    words = tmp_path / "names.txt"
    words.write_text("\n".join(name for name, _, _ in many_script_rows(120)) + "\n", encoding="utf-8")
    dense_cells = []
    build = NGram._distributions

    def counted(self, keys_by_order, counts_by_order, discounts):
        dense_cells.append(sum(len(torch.unique(k // self.base)) for k in keys_by_order) * self.vocab_size)
        return build(self, keys_by_order, counts_by_order, discounts)

    monkeypatch.setattr(NGram, "_distributions", counted)
    sparse = NameModel.train(words, "ngram", prior="none", out=tmp_path / "sparse")
    assert sparse.vocab.size > 1000 and sparse.model_type == "sparse-ngram"
    assert max(dense_cells, default=0) <= DENSE_LIMIT
    assert len(NameModel.load(tmp_path / "sparse").generate(5, seed=2).names) == 5
    monkeypatch.setattr("namesmith.training.fitting.DENSE_CELLS", 1 << 40)  # the same list, held densely: same model
    dense = NameModel.train(words, "ngram", prior="none")
    assert dense.model_type == "ngram"
    for part in ("val", "test"):
        assert sparse.metrics[part]["nll"] == pytest.approx(dense.metrics[part]["nll"], abs=1e-4)


def test_a_streamed_list_too_large_for_dense_tables_is_counted_into_a_sparse_model(one_thread, tmp_path, monkeypatch):
    words = tmp_path / "names.txt"
    rng = random.Random(5)
    words.write_text("\n".join("".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 8)))
                               for _ in range(3000)) + "\n")
    dense = NameModel.train(words, "ngram", stream=True, prior="none")
    monkeypatch.setattr("namesmith.training.fitting.DENSE_CELLS", 1000)
    sparse = NameModel.train(words, "ngram", stream=True, prior="none")
    assert (dense.model_type, sparse.model_type) == ("ngram", "sparse-ngram")
    for part in ("train", "val", "test"):
        assert sparse.metrics[part]["nll"] == pytest.approx(dense.metrics[part]["nll"], abs=1e-5)
