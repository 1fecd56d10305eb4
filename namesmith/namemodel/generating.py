"""`NameModel`'s generation: a user's options made the one `GenerateConfig`, in the model's case; the model
conditioned on `where` (with guidance, an adapted model's own letters, or the saved tables of its plain names),
steered by an n-gram where constraints are rare; the search run (namesmith.generation.generate) and its names
printed in the list's casing, with their novelty. `NameModel` inherits these methods; its state (the exact
tables' caches, the n-gram that guides) is kept on the object (namesmith.namemodel)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from namesmith.choosing.facts import NameFacts, name_facts
from namesmith.choosing.phonetic import catalogue_index
from namesmith.choosing.popularity import popularity_index
from namesmith.choosing.syllables import syllable_machine
from namesmith.core.casing import folds, restore
from namesmith.core.errors import ConfigError
from namesmith.generation.config import IGNORE_CASE, GenerateConfig, NotAvailable
from namesmith.generation.exact_cache import ExactCache
from namesmith.generation.generate import draw_pool, generate, iter_generate
from namesmith.generation.names import Names, NameStream
from namesmith.generation.novelty import KnownWords, novelty_summary
from namesmith.generation.saved_tables import PlainTables, read_tables

# The modules that use torch are imported in the methods that need them: a count model loads and draws its plain
# names from its saved tables without torch (namesmith.generation.saved_tables, docs/startup.md).
if TYPE_CHECKING:
    from namesmith.core.conditional import Where
    from namesmith.generation.guided import Guide
    from namesmith.models.base import CharModel
    from namesmith.models.ngram import NGram


class Generating:
    """Drawing names from a `NameModel` (a mixin of it: the methods read the model's state)."""

    def _generation(self, n: int, starts_with: str = "", ends_with: str = "", contains: Sequence[str] = (),
                    excludes: Sequence[str] = (), regex: str | None = None, novel: bool = False,
                    **options: Any) -> tuple[GenerateConfig, str | None, KnownWords | None]:
        """The generation config in the model's own case, and the training words (or why they are unavailable)."""
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(GenerateConfig)} | ({"num"} & set(options)))
        if unknown:
            raise ConfigError(f"{unknown[0]}: not an option of generate (its options are GenerateConfig's fields; "
                              "the number of names is n)", field=unknown[0])
        if folds(self.casing):  # the model knows lowercased names: constraints hold whatever their case
            starts_with, ends_with = starts_with.lower(), ends_with.lower()
            contains, excludes = [c.lower() for c in contains], [e.lower() for e in excludes]
            regex = None if regex is None else IGNORE_CASE + regex
        config = GenerateConfig(num=n, starts_with=starts_with, ends_with=ends_with, contains=tuple(contains),
                                excludes=tuple(excludes), regex=regex, novel=novel, **options)
        known, why = self._novelty_words()
        if novel and known is None:
            raise ConfigError(f"novel needs the training word list: {why}", field="novel")
        return config, why, known

    def _guide(self, model: CharModel | PlainTables) -> Guide | None:
        """Guided sampling of `model` (this model, or its plain model of a condition) steered by an n-gram
        (namesmith.generation.guided): the model's own, else one counted on its training words the first time it is
        needed (and kept)."""
        if isinstance(model, PlainTables):  # plain draws only: nothing to guide
            return None
        from namesmith.generation.guided import Guide, find_twist, fit_twist

        def twist() -> NGram:
            if self._twist is None:
                self._twist = find_twist(self.model)
            if self._twist is None:
                split, why = self.training_split()
                if split is None:
                    raise NotAvailable(f"no n-gram to steer by: the model holds none and {why}")
                self._twist = fit_twist(self.corpus)
            return self._twist

        if self._twists is None:
            self._twists = ExactCache(background=self.background_tables)
        return Guide(model, twist, self._twists)

    def shown(self, names: Sequence[str]) -> list[str]:
        """Names as this model prints them, as `generate` does (Title Case for a model of title-cased names):
        the names as it reads them, in its casing."""
        return self._printed(self._prepare(names))

    def _printed(self, names: list[str]) -> list[str]:
        """Model-space names in the casing the list uses."""
        casing = self.casing
        return [restore(name, casing) for name in names] if casing in ("title", "upper") else names

    def generate(self, n: int = 20, *, where: Where | None = None, guidance: float = 0.0, **options: Any) -> Names:
        """Draw `n` names meeting every constraint, within the budget (see namesmith.generation.generate).

        `options` are the fields of `GenerateConfig` (namesmith.generation.generate), each with its help
        and bounds: starts_with, ends_with, contains, excludes, regex, min_len, max_len, syllables,
        sounds_like, novel, unique, temperature, top_k, top_p, seed, max_tries, time_budget, method,
        prior_letters, popularity, not_in_catalogue, surname, alliteration; an unknown one is a
        `ConfigError`. Every returned name meets every constraint. If the budget ends the search first,
        the result holds the names found and `complete` is False (`stats.message()` says why). `where`
        asks a conditional model for names of some labels: {"sex": "F"}, {"sex": ["F", "M"]} for names
        of both at once (see namesmith.core.conditional); labels left out are marginalised. `guidance`
        > 0 draws names more typical of those labels (classifier-free guidance; 0: P(name | where)
        itself). A model adapted to a list draws only the list's own letters unless `prior_letters`.
        Constraints hold whatever their case for a model of lowercased names.
        """
        config, why, known = self._generation(n, **options)
        model, cache = self._conditioned(where, guidance, config)
        stats = generate(model, self.vocab, config, max_word_length=self.max_word_length,
                         known_words=None if known is None else known.all, cache=cache, guide=self._guide(model))
        return Names(self._printed(stats.names), novelty_summary(stats.names, known, why), stats)

    def _conditioned(self, where: Where | None, guidance: float,
                     config: GenerateConfig) -> tuple[CharModel | PlainTables, ExactCache]:
        """The plain model of `where` (the model itself without conditions), guided, drawing only an
        adapted model's own letters unless `config.prior_letters`, and its exact tables' cache. A request
        for the plain names of a model loaded with its saved tables gets those tables (the same draws, no torch)."""
        alphabet = self.meta.get("adaptation", {}).get("alphabet")
        own_letters = alphabet is not None and not config.prior_letters  # what an adapted model's tables draw
        plain = not where and guidance == 0 and config.plain_draws and own_letters == (alphabet is not None)
        if self._tables_entry is not None and plain:
            self._plain = self._plain or read_tables(self.directory, self._tables_entry, self.vocab)
            cache = ExactCache(background=self.background_tables)
            return self._plain, self._exact.setdefault(((), 0.0, own_letters), cache)
        from namesmith.core.conditional import where_key
        from namesmith.models.own_letters import OwnLetters

        model = self.model.given(self._own_where(where), guidance)
        key = where_key(self.model.condition.check_where(where)) if self.model.condition is not None else ()
        if own_letters:
            model = OwnLetters.of(model, self.vocab, alphabet)
        return model, self._exact.setdefault((key, float(guidance), own_letters),
                                             ExactCache(background=self.background_tables))

    def _own_where(self, where: Where | None) -> Where | None:
        """`where` as this model reads it: a model adapted under some labels (`adapt(where=...)`) is a
        plain model of those labels, so a `where` asking for them again is honoured (and dropped), and
        any other is refused."""
        adapted_under = self.meta.get("adaptation", {}).get("where")
        if not where or adapted_under is None or self.model.condition is not None:
            return where
        asked = {label: sorted([values] if isinstance(values, str) else values) for label, values in where.items()}
        if asked != {label: sorted(values) for label, values in adapted_under.items()}:
            shown = ", ".join(f"{label}={','.join(values)}" for label, values in adapted_under.items())
            raise ConfigError(f"where: this model was adapted to its list under {shown}; it draws and scores names "
                              "of those labels only", field="where")
        return None

    def iter_generate(self, n: int = 20, *, where: Where | None = None, guidance: float = 0.0,
                      **options: Any) -> NameStream:
        """`generate`, streamed: iterate the result for lists of names as they are found (memory bounded by
        a batch, not by `n`); its `novelty` and `stats` are final once the iteration ends. Takes the same
        options as `generate`; `close()` (or a `with` block) stops early."""
        config, why, known = self._generation(n, **options)
        model, cache = self._conditioned(where, guidance, config)
        stream = iter_generate(model, self.vocab, config, max_word_length=self.max_word_length,
                               known_words=None if known is None else known.all, cache=cache,
                               guide=self._guide(model))
        return NameStream(stream, self._printed, known, why)

    def draw_pool_ready(self, where: Where | None = None, guidance: float = 0.0) -> bool:
        """Whether requests of `where` (default decoding) that filter draws walk the model's draws made once
        (namesmith.generation.draw_pool) rather than make fresh ones: a server makes them in the background on the
        first such request."""
        _, cache = self._conditioned(where, guidance, GenerateConfig())
        return draw_pool(self.model, self.vocab, GenerateConfig(), self.max_word_length, cache, build=False) \
            is not None

    @staticmethod
    def read_catalogue() -> None:
        """Read the built-in catalogue now (about a second) rather than on the first `facts` or popularity filter
        (a server does it at start, in the background), its index by sound if the phonetic extra is installed, and
        the syllable counter's automaton (choosing.syllables)."""
        popularity_index()
        syllable_machine()
        with contextlib.suppress(ConfigError):  # no phonetic extra: no sounds_like, nothing to index
            catalogue_index()

    @staticmethod
    def facts(names: Sequence[str], *, surname: str | None = None, alliteration: str = "any") -> list[NameFacts]:
        """What a person choosing among `names` wants to know of each, from the built-in catalogue (not from this
        model): known or new, popularity, nicknames, and with a `surname` the fit with it (namesmith.choosing.facts)."""
        if isinstance(names, str):
            raise ConfigError("names must be a list of names, not one string", field="names")
        return name_facts(names, surname=surname, alliteration=alliteration)
