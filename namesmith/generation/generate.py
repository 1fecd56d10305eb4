"""Steerable generation: constraints, novelty, dedupe and budgets, for every model type, streamed.

One config (`GenerateConfig`, namesmith.generation.config) says what to generate; `iter_generate` yields
the names batch by batch as they are found, and `generate` collects them. Three ways make every name
satisfy the constraints:

- Exact conditioning (namesmith.generation.exact), for models that are finite Markov chains: the chain
  conditioned on the constraints' automaton (namesmith.generation.constraints), no rejected draws.
- Guided sampling (namesmith.generation.guided), for networks when the caller passes a `guide` (as
  `NameModel` does) or `method="guided"`: the network's draws steered by an n-gram's exact
  backward messages, every draw valid, importance weights corrected by rejection. "auto" guides
  while that keeps more names per draw than rejection would (`_GuidedWhileFaster`).
- Rejection sampling for every other model (or `method="rejection"`, or when the exact tables
  would pass their limits): draw batches with `namesmith.generation.sample` (the prefix is still
  conditioned exactly), keep the names that pass, size the next batch from the acceptance rate.

`regex`, `novel`, `unique` and the filters of choosing a name (`choosing_filters`) are always filters.

Budgets: `max_tries` (draws examined) and `time_budget` (seconds, checked between the steps of
every sampler, while building the exact tables and inside each regex match) end any search; the
result (`Generation`) then says how many names were found, the acceptance rate, and how many draws
reached the length guard. Memory is bounded whatever the request: names are at most `MAX_NAME_LENGTH`
characters, a batch's token buffer is at most `namesmith.generation.draws.MAX_BATCH_TOKENS`, the
exact tables by their own limits and a process's `TableBudget`; `unique` keeps the names found and
`novel` the training words, nothing else grows with `num`. Constraints that are impossible before any
sampling raise `ConfigError`, whose `field` names the parameter at fault.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from namesmith.choosing.phonetic import sounds_alike
from namesmith.choosing.popularity import parse_popularity, popularity_index
from namesmith.choosing.surname import alliterates
from namesmith.core.clock import now
from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.offensive import default_filter
from namesmith.generation.calibration import tilted_draws
from namesmith.generation.config import (
    GUARD_AT_LEAST,
    GenerateConfig,
    NotAvailable,
    OutOfTime,
    check_lengths,
    fresh_seed,
    length_limit,
)
from namesmith.generation.constraints import check_vocab, name_test, regex_test
from namesmith.generation.draw_pool import DrawPool
from namesmith.generation.draws import Batch, batch_limit
from namesmith.generation.exact_cache import POOL_BUILDERS, ExactCache
from namesmith.generation.result import Generation, GenerationStream
from namesmith.generation.saved_tables import PlainTables

if TYPE_CHECKING:
    from namesmith.models.base import CharModel

EXACT_BUILD_SHARE = 0.5  # of the time budget, that method "auto" may spend building exact tables
GUIDE_BELOW = 0.05  # method "auto" guides a network when the n-gram gives valid names less probability than this
GUIDED_COST = 1.3  # a guided particle costs about this many plain draws (benchmarks/bench_generate.py: 1.0-1.3)
MIN_BATCH = 256  # the first batch (names come out at once), and the least a filtering search draws
BATCH_GROWTH = 16  # each batch may be this many times the previous one, up to the sampler's limit (few
# large batches: the model sampler shares the states of common prefixes, cheaper per name the more names share)
DEFAULT_TRIES_PER_NAME = 100  # default max_tries: this many per requested name, plus MIN_TRIES
MIN_TRIES = 100_000


def plain_sampler(model: CharModel | PlainTables, vocab: Vocab, *, prefix: str, max_length: int, seed: int,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> Any:
    """The sampler of the model's own names (namesmith.generation.sample.plain_sampler), or of its saved tables
    (namesmith.generation.saved_tables: the same tables, so the same names, without torch)."""
    if isinstance(model, PlainTables):
        assert temperature == 1.0 and top_k is None and top_p is None, "saved tables hold the plain decoding only"
        return model.sampler(vocab, prefix=prefix, max_length=max_length, seed=seed)
    from namesmith.generation.sample import plain_sampler as model_sampler

    return model_sampler(model, vocab, prefix=prefix, max_length=max_length, seed=seed, temperature=temperature,
                         top_k=top_k, top_p=top_p)


def eval_mode(model: CharModel | PlainTables) -> contextlib.AbstractContextManager:
    """The model in eval mode for the block (namesmith.models.nll.eval_mode); saved tables have no mode."""
    if isinstance(model, PlainTables):
        return contextlib.nullcontext()
    from namesmith.models.nll import eval_mode as model_eval_mode

    return model_eval_mode(model)


# What `iter_generate` calls to steer a model that is not a finite chain (namesmith.generation.guided.Guide):
# guide(vocab, config, max_len, seed, deadline) -> a sampler with `run` and `twist` (its ExactSampler).
Guide = Callable[..., Any]
Run = Callable[[int, float | None], Batch | None]  # a sampler: run(size, deadline) -> a batch of draws, or None


def draw_pool(model: CharModel, vocab: Vocab, config: GenerateConfig, max_word_length: int,
              cache: ExactCache, build: bool = True) -> DrawPool | None:
    """The model's draws made once (namesmith.generation.draw_pool) under `config`'s decoding, if `cache` holds
    them; a background cache (a server's) starts making them (with `build`), once, for the requests that come
    after."""
    key = ("draw pool", config.temperature, config.top_k, config.top_p)
    if not (cache.background and build):
        entry = cache.get(key)
    else:
        guard = length_limit(model, None, max_word_length)

        def make(until: float) -> DrawPool:
            with eval_mode(model):
                run = plain_sampler(model, vocab, prefix="", max_length=guard, seed=0, **config.decoding).run
                if model.calibration is not None:
                    run = tilted_draws(run, model.calibration, vocab, 0)
                return DrawPool.build(run, guard, deadline=until, clock=cache.budget.clock)

        entry = cache.build_and_wait(key, make, deadline=now(), builders=POOL_BUILDERS,
                                     thread_name="namesmith-draw-pool")
    return entry if isinstance(entry, DrawPool) else None


def choosing_filters(config: GenerateConfig) -> list[tuple[str, Callable[[str], bool]]]:
    """The filters of choosing a name, each with the parameter that asks for it: a name's popularity, whether it
    is in any built-in list, whether it alliterates with the surname, whether it sounds like a name. The catalogue
    is read here, once per process (choosing.popularity), so a search pays for it before its first name, not during
    it."""
    filters: list[tuple[str, Callable[[str], bool]]] = []
    if config.popularity is not None or config.not_in_catalogue:
        index = popularity_index()
        if config.popularity is not None:
            admits = parse_popularity(config.popularity).admits
            filters.append(("popularity", lambda n: admits(index.best(n))))
        if config.not_in_catalogue:
            filters.append(("not_in_catalogue", lambda n: not index.is_known(n)))
    if config.alliteration != "any":
        wanted, surname = config.alliteration == "want", config.surname
        filters.append(("alliteration", lambda n: alliterates(n, surname) == wanted))
    if config.sounds_like:
        filters.append(("sounds_like", lambda n: sounds_alike(n, config.sounds_like)))
    return filters


def _passes(filters: list[tuple[str, Callable[[str], bool]]], name: str, rejected: dict[str, int]) -> bool:
    """Whether the name passes every filter; the first that turns it away is counted."""
    for field_, admits in filters:
        if not admits(name):
            rejected[field_] = rejected.get(field_, 0) + 1
            return False
    return True


def iter_generate(model: CharModel, vocab: Vocab, config: GenerateConfig = GenerateConfig(), *,
                  max_word_length: int, known_words: Collection[str] | None = None,
                  cache: ExactCache | None = None, guide: Guide | None = None) -> GenerationStream:
    """Generate `config.num` names satisfying every constraint, yielded as they are found.

    `max_word_length` is the longest training name (the default length guard is twice that);
    `known_words` are the training data's words (all splits), needed for `novel`; `cache` keeps
    exact samplers' tables for later calls on the same (trained, unchanging) model. `guide` steers
    a model that is not a finite chain (`namesmith.generation.guided.Guide`): with it, method "auto" uses
    guided sampling where exact conditioning is not available, and "guided" asks for it.

    The contract, for the CLI and other streaming callers:
    - Everything that can be refused before sampling is refused here, before the first name:
      a `ConfigError` (its `field` the parameter) for characters outside the vocabulary, `novel`
      without `known_words`, lengths the guard makes impossible, constraints of probability 0
      under an exactly conditioned model, or `method="exact"` (or "guided") where it is not
      available. Exact tables (and a guide's twist tables) are built here too (within the time budget).
    - Iterating yields non-empty lists of names, in order, as each batch is examined: the first
      batch is small (`MIN_BATCH` draws), later ones grow up to the sampler's limit, so the first
      names come at once and memory is bounded by a batch (`namesmith.generation.draws.CHUNK` names,
      `MAX_BATCH_TOKENS` tokens), not by `num`. At most `num` names in all; the same seed gives
      the same names however they are consumed.
    - The iteration ends when `num` names were yielded or a budget ran out; `stream.generation`
      then holds the final statistics (`complete`, `stop_reason`, `tries`, `unfinished`, ...;
      its `names` stay empty). During iteration it holds the statistics so far.
    - A regex that backtracks for more than `REGEX_TIMEOUT` s on one name raises `ConfigError`
      (field "regex") from the iteration, after the names already yielded.
    - To stop early (e.g. on `BrokenPipeError` when stdout's reader has gone), call
      `stream.close()` or use `with iter_generate(...) as stream:`; nothing else is needed. The
      model is in eval mode while the stream runs and its mode is restored when it ends or closes.
    """
    start_time = now()
    deadline = None if config.time_budget is None else start_time + config.time_budget
    check_vocab(vocab, config)
    if config.novel and known_words is None:
        raise ConfigError("novel needs the training word list (known_words)", field="novel")
    known = known_words if known_words is None or isinstance(known_words, (set, frozenset)) else set(known_words)
    max_len = length_limit(model, config.max_len, max_word_length)
    if config.max_len is None:
        check_lengths(config, max_len, f"the length guard (twice the longest training name, at least "
                                       f"{GUARD_AT_LEAST}; set max_len)")
    elif max_len < config.max_len:
        check_lengths(config, max_len, f"the longest name a {model.model_type} model can read")
    seed = config.seed if config.seed is not None else fresh_seed()
    gen = Generation([], config.num, method="plain", max_len=max_len)
    run: Run | None = None

    def draws() -> Run:
        """The model's own draws (the prefix conditioned exactly): rejection sampling, or plain."""
        return plain_sampler(model, vocab, prefix=config.starts_with, max_length=max_len, seed=seed,
                             **config.decoding).run

    # "auto" spends at most half the budget building exact (or a guide's) tables, then samples by rejection in
    # the rest (with a background cache, the tables go on being built for the next request)
    build_deadline = deadline if deadline is None or config.method != "auto" else \
        start_time + EXACT_BUILD_SHARE * config.time_budget
    if config.method == "exact" or (config.method == "auto" and config.structural):
        run, exact_too_slow = _exact_run(model, vocab, config, max_len, seed, build_deadline, cache, gen)
    else:
        exact_too_slow = False
    if run is None and gen.stop_reason is None and (config.method == "guided" or (
            config.method == "auto" and config.structural and guide is not None and not exact_too_slow)):
        run = _guided_run(model, guide, vocab, config, max_len, seed, build_deadline, gen, draws)
    if run is None and gen.stop_reason is None:
        run = draws()
        gen.method = "rejection" if config.structural or config.regex is not None else "plain"
    if run is not None and model.calibration is not None and gen.method != "exact":  # the exact tables weigh it in
        run = tilted_draws(run, model.calibration, vocab, seed)
    filters = choosing_filters(config)
    # method "auto": a search that filters draws (rejection, or a filter of choosing a name) walks the model's draws
    # made once, if a server made them (namesmith.generation.draw_pool; "pooled"); a prefix is conditioned exactly
    # by fresh draws instead. "rejection" always draws afresh, so a share link that asks for it gets its names again.
    if run is not None and cache is not None and config.method == "auto" and not config.starts_with and (
            gen.method == "rejection" or (gen.method == "plain" and filters)):
        run = _pooled_run(run, model, vocab, config, max_word_length, max_len, seed, cache, gen)
    batches = _search(model, run, config, gen, known, max_len, start_time, deadline, filters)
    return GenerationStream(batches, gen)


def _exact_run(model: CharModel, vocab: Vocab, config: GenerateConfig, max_len: int, seed: int,
               build_deadline: float | None, cache: ExactCache | None, gen: Generation) -> tuple[Run | None, bool]:
    """`iter_generate`'s exact sampler (method "exact", or "auto" with constraints), if the model is a finite chain
    whose tables are built by `build_deadline`; and whether it was one but they were not (too slow)."""
    try:
        from namesmith.generation.exact import exact_sampler  # torch, and only when constraints ask for it

        with eval_mode(model):
            exact = exact_sampler(model, vocab, config, max_len, seed, build_deadline, cache)
        if exact.log_p_valid == -math.inf:
            raise ConfigError("no name satisfies these constraints with non-zero probability under this model "
                              "(at this temperature, top-k and top-p)")
        gen.method = "exact"
        return exact.run, False
    except NotAvailable as why:
        if config.method == "exact":
            raise ConfigError(f"method 'exact' is not available here: {why}; use 'auto' or 'rejection'",
                              field="method") from None
    except OutOfTime:
        if config.method == "exact":
            gen.method, gen.stop_reason = "exact", "time-budget"
        return None, True  # a finite chain after all: rejection, not guidance, for the rest of the budget
    return None, False


def _guided_run(model: CharModel, guide: Guide | None, vocab: Vocab, config: GenerateConfig, max_len: int, seed: int,
                build_deadline: float | None, gen: Generation, draws: Callable[[], Run]) -> Run | None:
    """`iter_generate`'s guided sampler (method "guided", or "auto" with constraints the guide's n-gram finds rare),
    if `guide` can steer the model and builds its tables by `build_deadline`; `draws` makes the model's own."""
    if guide is None:
        raise ConfigError("method 'guided' needs an n-gram to steer by (the model's training words or an n-gram "
                          "inside it); use 'auto' or 'rejection'", field="method")
    try:
        with eval_mode(model):
            guided = guide(vocab, config, max_len, seed, build_deadline)
        if guided.twist.log_p_valid == -math.inf:
            raise ConfigError("no name satisfies these constraints (within the length limits)")
        # rejection keeps about P(valid) of its draws; guided sampling about as many whatever P(valid) is
        # (namesmith.generation.guided): "auto" guides only constraints the n-gram finds rare
        if config.method == "guided" or guided.twist.log_p_valid < math.log(GUIDE_BELOW):
            gen.method, gen.effective_sample_size = "guided", 0.0
            return _GuidedWhileFaster(guided, draws, gen) if config.method == "auto" else guided.run
    except NotAvailable as why:
        if config.method == "guided":
            raise ConfigError(f"method 'guided' is not available here: {why}; use 'auto' or 'rejection'",
                              field="method") from None
    except OutOfTime:
        if config.method == "guided":
            gen.method, gen.stop_reason = "guided", "time-budget"
    return None


def _pooled_run(run: Run, model: CharModel, vocab: Vocab, config: GenerateConfig, max_word_length: int, max_len: int,
                seed: int, cache: ExactCache, gen: Generation) -> Run:
    """`run`, or a walk over the model's draws made once where the cache holds them (then `run` for the rest)."""
    pool = draw_pool(model, vocab, config, max_word_length, cache)
    if pool is None or max_len > pool.max_len:
        return run
    fresh_method, gen.method = gen.method, "pooled"

    def then() -> Run:
        gen.method = fresh_method  # walked round the whole pool: fresh draws for the rest
        return run

    return pool.walk(config.sounds_like, max_len, seed, then=then)


class _GuidedWhileFaster:
    """Method "auto" with a guide: guided sampling while it keeps more names per draw than rejection would, then
    rejection. Guided sampling keeps P(valid) / B of its particles (B: the largest importance weight seen, which
    only grows; generation.guided), rejection P(valid) of its draws, so guidance pays while B < 1 / GUIDED_COST.
    Both draw names from the model conditioned on the constraints, so a search may use one and then the other."""

    def __init__(self, guided: Any, rejection: Callable[[], Run],
                 gen: Generation):
        self.guided, self.rejection, self.gen = guided, rejection, gen
        self.run: Run = guided.run

    def __call__(self, size: int, deadline: float | None) -> Batch | None:
        drawn = self.run(size, deadline)
        if self.gen.method == "guided" and self.guided.log_bound > -math.log(GUIDED_COST):
            self.run, self.gen.method = self.rejection(), "rejection"
        return drawn


def _search(model: CharModel, run: Run | None, config: GenerateConfig,
            gen: Generation, known: Collection[str] | None, max_len: int, start_time: float,
            deadline: float | None, filters: list[tuple[str, Callable[[str], bool]]]) -> Iterator[list[str]]:
    """The search loop behind `iter_generate`: draw, examine, yield, until done or out of budget."""
    test = name_test(config, gen.method == "exact", known)
    matches = None if config.regex is None else regex_test(config.regex)
    # a calibrated model's draws are filtered too (namesmith.generation.calibration.tilted_draws), except exact ones
    filtering = test is not None or matches is not None or config.unique or bool(filters) or (
        model.calibration is not None and gen.method != "exact")
    # offensive names are rare: hiding one draws another in the next batch, and the batches stay those of the
    # search without it (so the names before it are the same for the same seed)
    offensive = default_filter().is_offensive if config.filter_offensive else None
    hide = [] if offensive is None else [("filter_offensive", lambda name: not offensive(name))]
    max_tries = config.max_tries or DEFAULT_TRIES_PER_NAME * config.num + MIN_TRIES
    largest = batch_limit(max_len)
    cap = min(MIN_BATCH, largest)
    seen: set[str] = set()
    with eval_mode(model):
        while run is not None and gen.found < config.num:
            if gen.tries >= max_tries:
                gen.stop_reason = "max-tries"
                break
            if deadline is not None and now() > deadline:
                gen.stop_reason = "time-budget"
                break
            need = config.num - gen.found
            if filtering:  # enough draws for what is missing at the acceptance rate so far
                rate = (gen.found + 1) / (gen.tries + 1) if gen.tries else 1.0
                size = max(MIN_BATCH, math.ceil(1.1 * need / rate))
            else:
                size = need
            size = min(size, cap, max_tries - gen.tries)
            cap = min(cap * BATCH_GROWTH, largest)
            drawn = run(size, deadline)
            if drawn is None:
                gen.stop_reason = "time-budget"
                break
            names, examined = drawn.names, len(drawn.names)  # unfiltered: at most `need`, all taken
            if filtering:
                names, examined = [], 0
                try:
                    for name in drawn.names:
                        examined += 1
                        if (test is None or test(name)) and not (config.unique and name in seen) \
                                and _passes(filters, name, gen.rejected) \
                                and (matches is None or matches(name, deadline)) \
                                and _passes(hide, name, gen.rejected):  # last: counts names it alone hides
                            names.append(name)
                            if config.unique:
                                seen.add(name)
                            if len(names) == need:
                                break
                except OutOfTime:
                    gen.stop_reason = "time-budget"
            elif hide:
                names = [name for name in names if _passes(hide, name, gen.rejected)]
            # the draws examined: up to the last name looked at (all of them if every name was)
            draws = len(drawn.finished)
            if examined < len(drawn.names):
                draws = int(np.flatnonzero(drawn.finished)[examined - 1]) + 1 if examined else 0
            gen.tries += draws
            gen.unfinished += draws - examined - (0 if drawn.rejected is None else int(drawn.rejected[:draws].sum()))
            for field_, turned_away in drawn.turned_away.items():
                gen.rejected[field_] = gen.rejected.get(field_, 0) + int(turned_away[:draws].sum())
            if drawn.effective_sample_size is not None:  # a weighted sampler: its draws and their worth
                gen.particles += len(drawn.finished)
                gen.effective_sample_size += drawn.effective_sample_size
            gen.found += len(names)
            gen.seconds = now() - start_time
            if names:
                try:
                    yield names
                except GeneratorExit:  # the caller closed the stream
                    if gen.found < config.num:
                        gen.stop_reason = "closed"
                    raise
            if gen.stop_reason:
                break
    gen.seconds = now() - start_time


def generate(model: CharModel, vocab: Vocab, config: GenerateConfig = GenerateConfig(), *,
             max_word_length: int, known_words: Collection[str] | None = None,
             cache: ExactCache | None = None, guide: Guide | None = None) -> Generation:
    """Draw `config.num` names that satisfy every constraint, within the budget (all at once;
    see `iter_generate` for the streamed form and the arguments)."""
    stream = iter_generate(model, vocab, config, max_word_length=max_word_length, known_words=known_words,
                           cache=cache, guide=guide)
    names = [name for batch in stream for name in batch]
    stream.generation.names = names
    return stream.generation
