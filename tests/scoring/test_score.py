"""Scoring and ranking names: log-probabilities, NLL per character, percentiles, odd names."""

import json
import math

import pytest

import namesmith
from namesmith import NameModel
from namesmith.cli import main
from namesmith.scoring.score import rank, reference_scores, score_names

WORDS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]


@pytest.fixture(scope="module")
def model():
    return NameModel.train(model="bigram-counts", words=WORDS, split=False)


def test_scores_match_the_transition_table(model):
    probs = model.model.transition_probs().double()
    stoi = model.vocab.stoi
    [score] = score_names(model.model, model.vocab, ["mia"])
    expected = math.log(probs[0, stoi["m"]] * probs[stoi["m"], stoi["i"]] * probs[stoi["i"], stoi["a"]]
                        * probs[stoi["a"], 0])
    assert score.log_prob == pytest.approx(expected)
    assert score.nll_per_char == pytest.approx(-expected / 4) and score.percentile is None and score.error is None


def test_percentiles_and_ranking(model):
    reference = reference_scores(model.model, WORDS, model.vocab)
    scores = score_names(model.model, model.vocab, ["emma", "xyz", "ava", "mmmmmmmmmm", "amelia"], reference)
    by_name = {s.name: s for s in scores}
    assert by_name["xyz"].error and by_name["xyz"].log_prob is None  # 'x' is not in the vocabulary
    assert 0 <= by_name["mmmmmmmmmm"].percentile < by_name["ava"].percentile <= 100
    ranked = [s.name for s in rank(scores)]
    assert ranked[-1] == "xyz" and ranked[-2] == "mmmmmmmmmm"
    nlls = [s.nll_per_char for s in rank(scores)[:-1]]
    assert nlls == sorted(nlls)
    # NameModel.score: the same scores, percentiles among the words it was trained on (all of them here)
    api = model.score(["emma", "xyz", "ava", "mmmmmmmmmm", "amelia"])
    assert [s.to_dict() for s in api] == [s.to_dict() for s in scores]
    assert [s.to_dict() for s in model.score(["EMMA", "Ava"])] == [
        {**s.to_dict(), "name": name} for s, name in zip(score_names(model.model, model.vocab, ["emma", "ava"],
                                                                     reference), ["EMMA", "Ava"])]
    with pytest.raises(namesmith.ConfigError, match="^names must be a list") as error:
        model.score("emma")
    assert error.value.field == "names"


def test_zero_probability_is_minus_infinity_not_a_crash():
    result = NameModel.train(model="bigram-counts", words=WORDS, smoothing=0)
    [score, empty] = score_names(result.model, result.vocab, ["mmmm", ""])
    assert score.log_prob == -math.inf and score.nll_per_char == math.inf
    assert score.to_dict()["log_prob"] == "-inf" and empty.error == "empty name"


def test_cli_score(tmp_path, capsys):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    out = tmp_path / "m"
    assert main(["-q", "train", "--model", "bigram-counts", "--data", str(data), "--out", str(out),
                 "--samples", "0", "--no-split"]) == 0
    capsys.readouterr()
    listing = tmp_path / "list.txt"
    listing.write_text("mmmm\nolivia\n", encoding="utf-8")
    assert main(["score", "-m", str(out), "emma", "ñame", "--file", str(listing), "--sort"]) == 0
    lines = capsys.readouterr()[0].splitlines()
    assert lines[0].split() == ["name", "log-prob", "nll/char", "percentile"]
    assert [line.split()[0] for line in lines[1:]][-1] == "ñame" and "not in the model's vocabulary" in lines[-1]
    assert main(["score", "-m", str(out), "emma", "ava", "--json"]) == 0
    payload = json.loads(capsys.readouterr()[0])
    assert [s["name"] for s in payload["scores"]] == ["emma", "ava"]
    assert payload["scores"][0]["percentile"] >= 10  # emma is one of the 10
    data.unlink()
    assert main(["score", "-m", str(out), "emma"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "n/a" in stdout and "percentiles not available" in stderr
    assert main(["score", "-m", str(out)]) == 1


def test_a_long_reference_list_is_a_fixed_sample(monkeypatch):
    """Percentiles of a list longer than MAX_REFERENCE come from a fixed sample of it: bounded work, same figures."""
    import numpy as np

    import namesmith.scoring.score as score_module
    from namesmith.core.vocab import Vocab
    from namesmith.models.ngram import NGram, NGramConfig

    vocab = Vocab(tuple("abc"))
    model = NGram(vocab.size, NGramConfig(order=2)).eval()
    words = ["a" * (1 + i % 7) + "b" * (i % 5) + "c" * (i % 3) for i in range(500)]
    full = score_module.reference_scores(model, words, vocab)
    monkeypatch.setattr(score_module, "MAX_REFERENCE", 100)
    sample = score_module.reference_scores(model, words, vocab)
    assert len(full) == 500 and len(sample) == 100
    assert np.array_equal(sample, score_module.reference_scores(model, words, vocab))  # the same sample each time
    assert set(sample.tolist()) <= set(full.tolist()) and np.all(np.diff(sample) >= 0)
