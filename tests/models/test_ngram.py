"""The Kneser-Ney n-gram: proper distributions everywhere, and the same numbers as a slow reference."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import pytest
import torch
from safetensors.torch import load_file, save_file

from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.words import Corpus, Split, encode_words, load_words
from namesmith.generation.config import GenerateConfig
from namesmith.generation.generate import generate
from namesmith.models.kneser_ney import continuation_counts, held_out_features, held_out_nll
from namesmith.models.ngram import NGram, NGramConfig

TEN = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn"]


def fit(words: list[str], split: bool = True, **config) -> tuple[NGram, Corpus]:
    """A fitted model; split=False trains on every word (so references count the same words)."""
    corpus = Corpus.from_words(words, seed=42) if split else Corpus(Split(words, [], []), Vocab.from_words(words))
    model = NGram(corpus.vocab.size, NGramConfig(**config))
    model.fit(corpus, TrainConfig())
    return model, corpus


@pytest.fixture(scope="module")
def builtin() -> list[str]:
    return load_words("builtin")[:2000]


def random_contexts(model: NGram, n: int, seed: int = 0) -> torch.Tensor:
    """(n, K) token sequences, mostly never seen in training."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.vocab_size, (n, model.context_size), generator=g)


# --- a slow, plain-Python interpolated modified Kneser-Ney, straight from the formulas -----------------
def reference_model(words: list[str], stoi: dict[str, int], order: int, discount="modified-kn"):
    """P(w | h) for contexts h of order-1 tokens, from dictionaries and loops."""
    V = len(stoi) + 1
    pad = [0] * (order - 1)
    counts = {order: Counter()}  # counts[k][k-gram]: raw at the top order, continuation counts below
    for word in words:
        tokens = pad + [stoi[c] for c in word] + [0]
        for t in range(order - 1, len(tokens)):
            counts[order][tuple(tokens[t - order + 1 : t + 1])] += 1
    for k in range(order - 1, 0, -1):
        left = defaultdict(set)
        for gram in counts[k + 1]:
            left[gram[1:]].add(gram[0])
        counts[k] = {gram: len(before) for gram, before in left.items()}

    discounts = {}
    for k in counts:
        n1, n2, n3, n4 = (sum(1 for c in counts[k].values() if c == i) for i in (1, 2, 3, 4))
        if discount == "modified-kn" and 0 in (n1, n2, n3, n4):
            discounts[k] = (0.5, 1.0, 1.5)  # the fallback for tiny data
        elif discount == "modified-kn":
            y = n1 / (n1 + 2 * n2)
            d1, d2, d3 = 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3
            discounts[k] = (min(max(d1, 0), 1), min(max(d2, 0), 2), min(max(d3, 0), 3))
        else:
            discounts[k] = (discount, discount, discount)

    totals = {k: defaultdict(int) for k in counts}  # c(h)
    types = {k: defaultdict(lambda: [0, 0, 0]) for k in counts}  # N1(h•), N2(h•), N3+(h•)
    for k in counts:
        for gram, c in counts[k].items():
            totals[k][gram[:-1]] += c
            types[k][gram[:-1]][min(c, 3) - 1] += 1

    def prob(w: int, h: tuple) -> float:
        k = len(h) + 1
        lower = prob(w, h[1:]) if h else 1 / V
        if totals[k].get(h, 0) == 0:
            return lower  # unseen context: back off with weight 1
        c = counts[k].get(h + (w,), 0)
        d = discounts[k]
        kept = max(c - d[min(c, 3) - 1], 0) if c else 0
        gamma = sum(di * ni for di, ni in zip(d, types[k][h])) / totals[k][h]
        return kept / totals[k][h] + gamma * lower

    return prob, counts


WORDS = load_words("builtin")[:400]


@pytest.mark.parametrize("order", [2, 3, 4])
def test_modified_kn_equals_the_plain_python_reference(order):
    model, corpus = fit(WORDS, split=False, order=order, discount="modified-kn")
    prob, counts = reference_model(WORDS, corpus.vocab.stoi, order)
    for k in range(2, order + 1):  # the formulas themselves are exercised, not just the fallbacks
        assert all(sum(1 for c in counts[k].values() if c == i) > 0 for i in (1, 2, 3, 4))
    seen = {gram[:-1] for gram in counts[order]}
    contexts = sorted(seen) + [tuple(h) for h in random_contexts(model, 50).tolist()]
    probs = model(torch.tensor(contexts).view(len(contexts), -1))[:, -1].exp().double()  # (n, V)
    expected = torch.tensor([[prob(w, h) for w in range(model.vocab_size)] for h in contexts], dtype=torch.float64)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("discount", [0.0, 0.4, 1.0])
def test_fixed_discount_equals_the_reference(discount):
    model, corpus = fit(WORDS[:60], split=False, order=3, discount=discount)
    prob, counts = reference_model(WORDS[:60], corpus.vocab.stoi, 3, discount=discount)
    contexts = sorted({gram[:-1] for gram in counts[3]})
    probs = model(torch.tensor(contexts))[:, -1].exp().double()
    expected = torch.tensor([[prob(w, h) for w in range(model.vocab_size)] for h in contexts], dtype=torch.float64)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)


def test_order_2_without_discount_is_the_maximum_likelihood_bigram():
    model, corpus = fit(WORDS, split=False, order=2, discount=0)
    pairs = Counter()
    for word in WORDS:
        tokens = [0] + corpus.vocab.encode(word) + [0]
        pairs.update(zip(tokens, tokens[1:]))
    for a in {a for a, _ in pairs}:
        row_total = sum(n for (x, _), n in pairs.items() if x == a)
        expected = torch.tensor([pairs[a, b] / row_total for b in range(model.vocab_size)], dtype=torch.float64)
        torch.testing.assert_close(model(torch.tensor([[a]]))[0, 0].exp().double(), expected, atol=1e-7, rtol=0)


# --- proper distributions -------------------------------------------------------------------------------
@pytest.mark.parametrize("discount", ["modified-kn", "tuned", "kn", 0.7])
def test_every_context_seen_or_not_sums_to_one(builtin, discount):
    model, _ = fit(builtin, discount=discount)
    row_sums = model.next_token_logprobs.double().exp().sum(1)  # every context seen, all orders
    torch.testing.assert_close(row_sums, torch.ones_like(row_sums), atol=1e-5, rtol=0)
    probs = model(random_contexts(model, 2000)).double().exp()  # (n, K, V): every prefix of random contexts
    assert (probs > 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1], dtype=torch.float64), atol=1e-5, rtol=0)


def test_discounts_are_estimated_per_order_within_their_ranges(builtin):
    model, _ = fit(builtin, discount="modified-kn")
    d = model.discounts
    assert d.shape == (6, 3)
    assert (d >= 0).all() and (d <= torch.tensor([1.0, 2.0, 3.0])).all()
    assert (d[1:, 0] < d[1:, 2]).all()  # D1 < D3+, as Chen & Goodman observe


def test_unfitted_model_is_uniform():
    model = NGram(5, NGramConfig(order=3))
    torch.testing.assert_close(model(torch.tensor([[0, 1, 2]])).exp(), torch.full((1, 3, 5), 0.2))


@pytest.mark.parametrize("order", [1, 2, 7])
def test_any_order_gives_distributions_of_the_right_shape(order):
    model, _ = fit(TEN, order=order)
    assert model.context_size == order - 1
    probs = model(torch.tensor([[0, 1, 2, 3]])).exp()
    assert probs.shape == (1, 4, model.vocab_size)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 4))


# --- fitting --------------------------------------------------------------------------------------------
def test_fits_ten_words():
    corpus = Corpus.from_words(TEN, seed=42)
    log_v = math.log(corpus.vocab.size)
    for discount, bound in [("modified-kn", 0.6), (0.0, 0.2)]:
        model = NGram(corpus.vocab.size, NGramConfig(discount=discount))
        history = model.fit(corpus, TrainConfig())
        assert history.steps == 1 and history.seconds > 0
        assert history.train_loss[0][1] < bound * log_v
        assert history.train_loss[0][1] == pytest.approx(model.nll(*corpus.tensors("train")))


def test_tiny_data_does_not_crash():
    for words in (["ann", "bob", "cy"], ["a"], ["ab", "ab"]):
        for discount in ("modified-kn", "tuned", "kn"):
            model, corpus = fit(words, discount=discount)
            probs = model(random_contexts(model, 50)).exp()
            torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
            names = generate(model, corpus.vocab, GenerateConfig(num=20, seed=0),
                             max_word_length=corpus.max_word_length).names
            assert all(set(name) <= set(corpus.vocab.chars) for name in names)


def test_tuned_discounts_score_held_out_words_as_the_fitted_tables_do(builtin):
    # the differentiable held-out score that tunes the discounts is the model's own likelihood
    vocab = Vocab.from_words(builtin)
    model = NGram(vocab.size, NGramConfig(order=4))
    rest, held_out = encode_words(builtin[:1500], vocab), encode_words(builtin[1500:], vocab)
    keys_by_order, counts_by_order = continuation_counts(model.count(*rest))
    discounts = torch.tensor([[0.3, 0.9, 1.7]] * 4, dtype=torch.float64)
    model.context_keys, model.next_token_logprobs = model._distributions(keys_by_order, counts_by_order, discounts)
    features = held_out_features(keys_by_order, counts_by_order, model.count(*held_out))
    assert held_out_nll(discounts, features, vocab.size).item() == pytest.approx(model.nll(*held_out), abs=1e-5)
    assert model.nll_counts(model.count(*held_out)) == pytest.approx(model.nll(*held_out), abs=1e-6)


def test_tuning_changes_the_discounts_only_with_enough_words(builtin):
    formula, corpus = fit(builtin, discount="modified-kn")
    tuned, _ = fit(builtin)  # the default
    assert tuned.nll(*corpus.tensors("val")) < formula.nll(*corpus.tensors("val")) + 0.01
    assert not torch.equal(tuned.discounts, formula.discounts)
    assert torch.equal(fit(TEN)[0].discounts, fit(TEN, discount="modified-kn")[0].discounts)  # 8 words: the formulas


# --- one model, three ways to ask it ------------------------------------------------------------------
def test_forward_equals_the_product_of_steps(builtin):
    model, corpus = fit(builtin, discount="modified-kn")
    x, y = encode_words(["emma", "zyxwvutsrq", "a"], corpus.vocab)
    logits = model(x)  # (B, T, V)
    state = model.init_state(len(x))
    assert state.shape == (3,)
    step_score = torch.zeros(3)
    for t in range(x.size(1)):
        step_logits, state = model.step(state, x[:, t])
        torch.testing.assert_close(step_logits, logits[:, t])
        step_score += step_logits.gather(1, y[:, t : t + 1].clamp(min=0)).squeeze(1).where(y[:, t] >= 0, 0.0)
    forward_score = logits.gather(2, y.clamp(min=0).unsqueeze(2)).squeeze(2).where(y >= 0, 0.0).sum(1)
    torch.testing.assert_close(step_score, forward_score)
    assert torch.equal(model.select_state(state, torch.tensor([2, 0])), state[[2, 0]])


@pytest.mark.parametrize("order", [1, 2, 3, 6])
def test_stepping_through_random_sequences_equals_forward(builtin, order):
    # the sampler's state is the row of the longest context seen; any history must give forward's rows
    model, corpus = fit(builtin[:500], order=order)
    tokens = torch.randint(0, model.vocab_size, (300, 11), generator=torch.Generator().manual_seed(order))
    random_names = torch.cat([torch.zeros(300, 1, dtype=torch.long), tokens], 1)  # mostly unseen contexts
    for idx in (random_names, corpus.tensors("train")[0]):  # and the longest matches
        logits = model(idx)
        state = model.init_state(len(idx))
        for t in range(idx.size(1)):
            step_logits, state = model.step(state, idx[:, t])
            assert torch.equal(step_logits, logits[:, t])


def test_save_and_load_give_identical_logits(builtin, tmp_path):
    model, corpus = fit(builtin, order=5, discount="modified-kn")
    save_file(model.weights(), tmp_path / "w.safetensors")
    loaded = NGram.from_config_dict(corpus.vocab.size, model.config_dict())
    loaded.load_weights(load_file(tmp_path / "w.safetensors"))
    x, _ = corpus.tensors("test")
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.discounts, model.discounts)


def test_load_weights_refuses_inconsistent_tables(builtin):
    model, corpus = fit(builtin, order=4, discount="modified-kn")
    weights = model.weights()
    V = corpus.vocab.size
    bad = [
        (NGram(V + 1, NGramConfig(order=4)), weights, "vocabulary"),
        (NGram(V, NGramConfig(order=3)), weights, "order"),
        (NGram(V, NGramConfig(order=4)), {k: v for k, v in weights.items() if k != "discounts"}, "expected"),
        (NGram(V, NGramConfig(order=4)), {**weights, "context_keys": weights["context_keys"].flip(0)}, "sorted"),
        (NGram(V, NGramConfig(order=4)), {**weights, "next_token_logprobs": weights["next_token_logprobs"] + 1},
         "normalised"),
    ]
    for fresh, tensors, message in bad:
        with pytest.raises(CheckpointError, match=message):
            fresh.load_weights(tensors)


def test_samples_through_the_generic_sampler(builtin):
    model, corpus = fit(builtin, discount="modified-kn")
    names = generate(model, corpus.vocab, GenerateConfig(num=500, seed=1),
                     max_word_length=corpus.max_word_length).names
    assert len(names) > 450 and len(set(names)) > 200


# --- config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    dict(order=0), dict(order=2.5), dict(discount="witten-bell"), dict(discount=1.5), dict(discount=-0.1),
    dict(discount=True),
])
def test_bad_configs_are_config_errors(options):
    (name,) = options
    with pytest.raises(ConfigError, match=f"^{name} must be ") as error:  # the parameter, as Python spells it
        NGramConfig(**options)
    assert error.value.field == name


def test_defaults():
    assert NGramConfig() == NGramConfig(order=6, discount="tuned")
    assert NGram.counts_only and NGram.default_train_config == {}


def test_numeric_discount_strings_become_numbers():
    assert NGramConfig(discount="0.75").discount == 0.75
    assert NGramConfig(discount=0).discount == 0.0


def test_too_high_an_order_for_the_vocabulary_is_a_config_error():
    with pytest.raises(ConfigError, match="at most 13"):
        NGram(27, NGramConfig(order=14))
    NGram(27, NGramConfig(order=13))


# --- vocabularies too large for order 6 (Chinese or Japanese names): the default order fits them ------------

def test_the_highest_order_whose_keys_fit_int64():
    from namesmith.data.ngram_keys import MAX_KEY, default_order, max_order

    for vocab_size in (1, 26, 1447, 1448, 6207, 6208, 100_000):
        order = max_order(vocab_size)
        assert (vocab_size + 1) ** order <= MAX_KEY < (vocab_size + 1) ** (order + 1)
        assert default_order(vocab_size) == min(6, order)
    assert (max_order(1447), max_order(1448)) == (6, 5)


def test_a_list_of_many_characters_trains_at_the_order_that_fits_unless_one_is_asked_for(tmp_path):
    from namesmith import NameModel
    from namesmith.generation.guided import fit_twist

    chars = [chr(0x4E00 + i) for i in range(1600)]  # 1,600 Han characters, each in one name
    words = tmp_path / "names.txt"
    words.write_text("".join(a + b + "\n" for a, b in zip(chars[::2], chars[1::2])))
    model = NameModel.train(words, "ngram", prior="none", seed=1)
    assert model.vocab.size == 1601 and model.model.config.order == 5  # the characters and the boundary
    streamed = NameModel.train(words, "ngram", prior="none", stream=True)
    assert streamed.model.config.order == 5
    network = NameModel.train(words, "gru", prior="none", n_embd=8, n_hidden=16, max_steps=3, eval_every=3)
    assert network.model.ngram.config.order == 5  # the default mix, at the order that fits
    assert fit_twist(network.corpus).config.order == 5
    for options in ({"model": "ngram", "order": 6}, {"model": "gru", "ngram_mix": 6, "max_steps": 3}):
        out = tmp_path / options["model"]
        with pytest.raises(ConfigError, match="6 is too high for a vocabulary of 1601 tokens .* use at most 5"):
            NameModel.train(words, prior="none", out=out, **options)  # before training: nothing saved
        assert not out.exists()


def test_a_long_lists_orders_are_made_unique_a_piece_at_a_time_with_progress(monkeypatch):
    import random

    import namesmith.models.kneser_ney as kneser_ney

    rng = random.Random(2)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9))) for _ in range(3000)]
    vocab = Vocab.from_words(words)
    model = NGram(vocab.size, NGramConfig(order=5))
    counts = model.count(*encode_words(words, vocab))
    whole_ticks, pieced_ticks = [], []
    keys, continuations = continuation_counts(counts, whole_ticks.append)
    monkeypatch.setattr(kneser_ney, "UNIQUE_PIECE", 500)  # a long list's orders: sorted in pieces
    pieced_keys, pieced_continuations = continuation_counts(counts, pieced_ticks.append)
    assert all(torch.equal(a, b) for a, b in zip(keys, pieced_keys))
    assert all(torch.equal(a, b) for a, b in zip(continuations, pieced_continuations))
    assert whole_ticks == [1] * 4
    assert len(pieced_ticks) >= len(counts.keys) // 500 and math.isclose(sum(pieced_ticks), 4)


def test_tuning_the_discounts_takes_out_the_held_out_words_as_a_step_of_its_own(monkeypatch):
    import random

    import namesmith.models.kneser_ney as kneser_ney
    from namesmith.core.progress import Phase

    rng = random.Random(3)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9))) for _ in range(3000)]
    vocab = Vocab.from_words(words)
    model = NGram(vocab.size, NGramConfig(order=4))
    x, y = encode_words(words, vocab)
    seen = []
    advance, orders = Phase.advance, kneser_ney.continuation_counts
    monkeypatch.setattr(Phase, "advance", lambda self, n=1: seen.append(self.what) or advance(self, n))
    monkeypatch.setattr(kneser_ney, "continuation_counts", lambda counts, progress=None: seen.append("orders") or
                        orders(counts, progress))
    kneser_ney.fitted_discounts(model.count(x, y), model.count(x[::10], y[::10]), model.config.discount)
    before = seen[: seen.index("orders")]  # a long list's held-out words take seconds to take out of its counts
    assert any("order by order" in what for what in before)
