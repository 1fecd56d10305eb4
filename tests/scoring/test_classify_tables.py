"""Classification is interactive: the tables it needs are built once per model, and it runs on one thread.

A conditional count model scores every combination of labels from its components' rows at the
names' own positions; that must equal scoring each combination's plain model, and a second call
must build nothing again. The CLI classifies on one torch thread, so a busy core beside it does
not make OpenMP's threads spin-wait for each other.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from namesmith import NameModel
from namesmith.models import conditional_counts
from namesmith.models.conditional_counts import ConditionalCounts
from namesmith.models.nll import word_log_probs
from namesmith.scoring.classify import combination_log_likelihoods

pytestmark = pytest.mark.usefixtures("one_thread")
ENDINGS = {("F", "north"): "a", ("F", "south"): "ette", ("F", "east"): "ine",
           ("M", "north"): "o", ("M", "south"): "son", ("M", "east"): "ek"}


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    """Names whose ending says their sex and region (2 x 3 combinations), with counts."""
    rng = random.Random(3)
    lines = ["name\tsex\tregion\tcount"]
    for (sex, region), ending in ENDINGS.items():
        for _ in range(120):
            stem = "".join(rng.choice("bdklmnrstv") + rng.choice("aeiou") for _ in range(rng.randint(1, 3)))
            lines.append(f"{stem}{ending}\t{sex}\t{region}\t{rng.randint(1, 50)}")
    path = tmp_path_factory.mktemp("classify") / "names.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def model(table_path, tmp_path_factory) -> NameModel:
    torch.set_num_threads(1)
    return NameModel.train(table_path, "ngram", order=4, out=tmp_path_factory.mktemp("classify") / "model")


def test_every_combination_scored_at_once_equals_each_plain_model(model):
    counts = model.model
    assert isinstance(counts, ConditionalCounts)
    names = ["davina", "kolette", "marek", "a", "tosino"]
    nodes = [tuple(c) for c in counts.node_codes.tolist()]  # the root, each label alone, each combination
    assert len(nodes) == 1 + 2 + 3 + 6
    at_once = combination_log_likelihoods(counts, model.vocab, names, nodes)
    one_by_one = torch.stack([word_log_probs(counts.given_codes([codes]), names, model.vocab) for codes in nodes], 1)
    assert at_once.shape == (len(names), len(nodes))
    torch.testing.assert_close(at_once, one_by_one, atol=1e-4, rtol=0)


def test_a_second_classification_builds_no_table_again(model, monkeypatch):
    first = model.classify(["davina", "marek"])
    sexes = [result.labels["sex"] for result in first]
    assert max(sexes[0], key=sexes[0].get) == "F" and max(sexes[1], key=sexes[1].get) == "M"
    built = []
    real = conditional_counts.build_component

    def counted(*args):
        built.append(args)
        return real(*args)

    monkeypatch.setattr(conditional_counts, "build_component", counted)
    monkeypatch.setattr(ConditionalCounts, "given_codes", lambda *a, **k: pytest.fail("built a plain model"))
    again = model.classify(["davina", "marek"])
    assert built == [] and again == first


def test_a_few_names_are_classified_from_the_counts_as_the_tables_classify_them(model, monkeypatch):
    counts = model.model
    names = ["davina", "kolette", "marek", "a", "tosino", "vvv"]
    nodes = [tuple(c) for c in counts.node_codes.tolist()]
    counts.kept.clear()
    counts._kept_bytes = 0
    # a few names need only their own contexts' rows: no component table is built for them
    monkeypatch.setattr(conditional_counts, "build_component", lambda *a: pytest.fail("built a component table"))
    from_counts = combination_log_likelihoods(counts, model.vocab, names, nodes)
    posterior = model.classify(names)
    monkeypatch.undo()
    model.keep_classification_tables()  # the tables' path, as a server warms it
    assert len(counts.kept) == len(nodes)
    monkeypatch.setattr(ConditionalCounts, "counts_rows", lambda *a: pytest.fail("read rows off the counts"))
    from_tables = combination_log_likelihoods(counts, model.vocab, names, nodes)
    monkeypatch.undo()
    counts.kept.clear()
    counts._kept_bytes = 0
    torch.testing.assert_close(from_counts, from_tables, atol=1e-9, rtol=0)
    assert posterior == model.classify(names)


def test_a_model_saved_without_low_order_rows_classifies_from_its_tables(model):
    counts = model.model
    names = ["davina", "marek"]
    expected = model.classify(names)
    saved = {k: v for k, v in counts.weights().items() if k != "node_low_probs"}  # as older versions saved it
    older = ConditionalCounts.from_config_dict(counts.vocab_size, counts.config_dict())
    older.load_weights(saved)
    assert len(older.node_low_probs) == 0
    again = NameModel(older, model.vocab, model.meta).classify(names)
    for old, new in zip(again, expected):
        for label, probs in new.labels.items():
            assert old.labels[label] == pytest.approx(probs, abs=1e-9)


def test_malformed_low_order_rows_are_refused(model):
    from namesmith.core.errors import CheckpointError

    counts = model.model
    tensors = counts.weights()
    tensors["node_low_probs"] = tensors["node_low_probs"] * 2  # rows that are not distributions
    with pytest.raises(CheckpointError, match="low-order rows"):
        ConditionalCounts.from_config_dict(counts.vocab_size, counts.config_dict()).load_weights(tensors)


ONE_THREAD = """
import sys
from namesmith.cli.common import load_model
from types import SimpleNamespace
model = load_model(SimpleNamespace(model_dir=sys.argv[1], device="cpu"))  # as `namesmith classify` loads it
import torch
model.classify(["davina", "marek"])
print(torch.get_num_threads())
"""


def test_the_cli_classifies_on_one_thread(model):
    # with a thread per core, OpenMP's threads spin-waited for the one that shared a busy core: 10x slower (the
    # time beside a busy core is benchmarks/bench_busy_core.py's figure; a test counts threads, not seconds)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", ONE_THREAD, str(model.directory)], check=True, capture_output=True,
                         text=True, env=env).stdout.split()
    assert int(out[-1]) == 1
