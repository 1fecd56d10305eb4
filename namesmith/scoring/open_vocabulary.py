"""An open vocabulary: scoring names that hold characters a model has never seen (adapted models).

A model adapted onto a prior (namesmith.adaptation.adapt) keeps the list's characters and the prior's of the
same scripts, so its names and constraints may use them. Other characters — ones no model has seen — get a
documented fallback when scoring and evaluating (`open_word_log_probs`, the "fallback" of the one
unknown-character policy, namesmith.core.vocab.Vocab.readable): each costs log(NEW_CHAR_PROB /
NEW_CHAR_CHOICES) nats, and what follows it is predicted as after a character of the same script that the
model knows, any of them equally likely: the word's probability is averaged over its readings with each unseen
character replaced by one of the vocabulary's characters of its script (at most `STAND_INS` of them,
evenly spaced in code-point order; at most `MAX_STAND_IN_ROWS` readings per word). A model knows
nothing of an unseen character but its script, and most of the characters of a script it knows are
rare ones, so the context after it is mostly the shorter one an n-gram backs off to, and a name goes
on (or ends) as after any letter. An unseen format character (a zero-width joiner or non-joiner, a
direction mark: script "FORMAT", which the vocabulary takes from the background only if the list has
one) costs the same and is otherwise skipped: it joins or separates the letters around it. Only a
character of no script the vocabulary has (punctuation, symbols, a script the model never saw) is read
as a break in the name (the boundary token), so what follows is predicted as the start of a name.
(Reading it as the boundary always made the end of a two-character name scored as that of an empty one;
reading it as the model's likeliest character of its script favours models that know the list's own
characters.) Generation never produces such characters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from namesmith.core.vocab import BOUNDARY, Vocab, script_of
from namesmith.data.words import encode_words
from namesmith.models.base import CharModel
from namesmith.models.nll import EVAL_BATCH, calibrated, chunked_log_probs, eval_mode, target_log_probs

# Characters no model has seen: the chance that the next character is a new one, by Good-Turing on
# the catalogue (228 of its 1,004 characters occur once among 907,439 character tokens), spread
# evenly over about as many characters as the Basic Multilingual Plane has letters and marks.
NEW_CHAR_PROB = 2.5e-4
NEW_CHAR_CHOICES = 50_000
UNKNOWN_CHAR_LOG_PROB = math.log(NEW_CHAR_PROB / NEW_CHAR_CHOICES)  # ≈ -19.1 nats per such character
STAND_INS = 24  # characters of its script an unseen character is read as, at most (evenly spaced)
MAX_STAND_IN_ROWS = 1024  # readings of one word with several unseen characters, at most


def stand_ins(vocab: Vocab) -> dict[str, list[int]]:
    """Per script (`script_of`, "COMMON" left out), the token ids of the vocabulary's characters of
    it: what an unseen character of that script may stand for (see the module docstring)."""
    by_script: dict[str, list[int]] = {}
    for c in vocab.chars:
        by_script.setdefault(script_of(c), []).append(vocab.stoi[c])
    by_script.pop("COMMON", None)
    return by_script


def _stand_in_rows(word: str, vocab: Vocab, scripts: dict[str, list[int]]) -> list[list[tuple[int, int]]]:
    """The readings of `word` to average over: each a list of (position in x, token) writes, one per
    unseen character of a known script (the boundary stays at the others). At most STAND_INS
    characters per unseen one, and at most MAX_STAND_IN_ROWS readings per word (fewer, evenly spaced
    in code-point order, where a word has several unseen characters)."""
    slots = [(col + 1, scripts[script_of(c)]) for col, c in enumerate(word)
             if c not in vocab.stoi and script_of(c) in scripts]
    n = STAND_INS
    while n > 1 and n ** len(slots) > MAX_STAND_IN_ROWS:
        n -= 1
    choices = [[(at, ids[i * len(ids) // min(n, len(ids))]) for i in range(min(n, len(ids)))] for at, ids in slots]
    return [list(reading) for reading in itertools.product(*choices)]


@torch.no_grad()
def open_word_log_probs(model: CharModel, words: Sequence[str], vocab: Vocab,
                        unknown_log_prob: float = UNKNOWN_CHAR_LOG_PROB) -> torch.Tensor:
    """Total log-probability of each word (end token included), characters outside the vocabulary
    included: each costs `unknown_log_prob`, and what follows it is averaged over the vocabulary's
    characters of its script, or read after the boundary; an unseen format character is skipped (see the
    module docstring)."""
    skipped = [sum(c not in vocab.stoi and script_of(c) == "FORMAT" for c in w) for w in words]
    words = ["".join(c for c in w if c in vocab.stoi or script_of(c) != "FORMAT") if n else w
             for w, n in zip(words, skipped)]
    known_char = vocab.chars[0]
    scripts = stand_ins(vocab)
    readings = [_stand_in_rows(w, vocab, scripts) for w in words]
    totals = []
    with eval_mode(model):
        first = 0
        while first < len(words):  # chunks of words with at most EVAL_BATCH readings (or one word)
            last, rows = first + 1, len(readings[first])
            while last < len(words) and rows + len(readings[last]) <= EVAL_BATCH:
                rows += len(readings[last])
                last += 1
            chunk = list(words[first:last])
            x, y = encode_words(["".join(c if c in vocab.stoi else known_char for c in w) for w in chunk], vocab)
            unknown = torch.zeros_like(y, dtype=torch.bool)
            for row, word in enumerate(chunk):
                for col, c in enumerate(word):
                    if c not in vocab.stoi:
                        unknown[row, col] = True
                        x[row, col + 1] = BOUNDARY
            owner = torch.tensor([row for row in range(len(chunk)) for _ in readings[first + row]])
            x, y, unknown = x[owner], y[owner], unknown[owner]
            at = 0
            for row in range(len(chunk)):
                for reading in readings[first + row]:
                    for col, token in reading:
                        x[at, col] = token
                    at += 1
            log_probs = torch.cat([target_log_probs(lp, t).cpu() for lp, t in chunked_log_probs(model, x, y)])
            log_probs = torch.where(unknown[:, : log_probs.size(1)], unknown_log_prob, log_probs)
            counts = [len(readings[first + row]) for row in range(len(chunk))]
            for mine in log_probs.double().sum(1).split(counts):  # the mean probability over a word's readings
                totals.append(torch.logsumexp(mine, 0) - math.log(len(mine)))
            first = last
    if not totals:
        return torch.zeros(0, dtype=torch.float64)
    return calibrated(model, torch.stack(totals) + unknown_log_prob * torch.tensor(skipped, dtype=torch.float64),
                      words, vocab)
