"""The one generation config (`GenerateConfig`): what to generate, parsed and bounded when it is built.

Every caller (NameModel, the CLI, the server, benchmarks) says what it wants in a `GenerateConfig`, and
every value is checked here once: a bad one is a `ConfigError` whose `field` names the parameter, before
any model is read. Bounds that need no model live here too: names are at most `MAX_NAME_LENGTH`
characters (longer `max_len`/`min_len` are refused), the length guard (`length_limit`), and lengths
that make the constraints impossible (`check_lengths`).

The regex runs on the `regex` engine (the syntax and Unicode classes of Python's `re`, which backtracks
too, but takes a timeout per match; namesmith.generation.constraints). Compiling expands counted
repetitions (`a{1000}` is 1,000 items), so `regex_size` bounds that first: a count above
`MAX_NAME_LENGTH`, or more than `MAX_REGEX_SIZE` items in all, is a `ConfigError` (compiling the largest
allowed takes about 0.07 s). A linear-time engine (RE2) was not used: its `\\w`, `\\d`, `\\b` are
ASCII-only, which would change what a pattern means for most of the world's names.

This module imports neither torch nor a model, so parsing a request or the CLI's options costs no start-up.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import regex as regex_engine

from namesmith.choosing.phonetic import phonetic_keys
from namesmith.choosing.popularity import parse_popularity
from namesmith.choosing.surname import ALLITERATION, MAX_SURNAME_LENGTH, check_surname
from namesmith.choosing.syllables import parse_syllables
from namesmith.core.errors import ConfigError

if TYPE_CHECKING:
    from namesmith.models.base import CharModel

MAX_NAME_LENGTH = 10_000  # max_len and min_len at most: longer requests are refused, not attempted
GUARD_AT_LEAST = 32  # the default length guard is max(2 × the longest training name, this)
METHODS = ("auto", "exact", "guided", "rejection")
REGEX_TIMEOUT = 0.25  # CPU seconds one regex match may take; longer is a ConfigError (namesmith.generation.constraints)
MAX_REGEX_SIZE = 100_000  # items of a regex, its {m,n} counts expanded (`regex_size`): about 0.07 s, 25 MB to compile
IGNORE_CASE = "(?i)"  # put before a user's regex for a model of lowercased names (NameModel)


class OutOfTime(Exception):
    """The time budget ended (inside a table build or a regex match)."""


class NotAvailable(Exception):
    """This sampling method is not available for this model and these constraints (the message says why)."""


# --- the one generation config ------------------------------------------------------------------
def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def check(condition: bool, field: str, message: str) -> None:
    """Raise a ConfigError naming `field` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{field} {message}", field=field)


MAX_SEED = 2**53 - 1  # seeds stay exact in JavaScript numbers (the page keeps them in share links)


def fresh_seed() -> int:
    """The seed of a generation asked with none: one of the seeds a user may give (0 to MAX_SEED), so it can be
    given back for the same names."""
    return secrets.randbelow(MAX_SEED + 1)


def asked(value: Any) -> Any:
    """None for a text option given as "" or blank (a field left empty, as the page sends it: not asked for)."""
    return None if isinstance(value, str) and not value.strip() else value


@dataclass(frozen=True)
class Option:
    """How a caller offers one `GenerateConfig` field: what it means, and the values it takes. The CLI's
    options and help (namesmith.cli.options) and the API's request schema (namesmith.serve.schemas) are
    made from these, so a new constraint is a new field here (and its automaton or predicate)."""

    help: str
    lo: float | None = None  # the least value, included
    hi: float | None = None  # the greatest value, included
    positive: bool = False  # greater than 0 (a float with no least value)
    choices: tuple[str, ...] | None = None
    max_length: int | None = None  # characters of a text, at most
    metavar: str | None = None  # how the CLI shows its value


def option(default: Any, help: str, **how: Any) -> Any:
    """A `GenerateConfig` field: its default and its `Option`."""
    return field(default=default, metadata={"option": Option(help, **how)})


def options_of(cls: type) -> dict[str, Option]:
    """Each field's `Option`, by field name, in the order of the fields."""
    return {f.name: f.metadata["option"] for f in fields(cls) if "option" in f.metadata}


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate, for every model and every caller; validated when built (`ConfigError`,
    its `field` the parameter at fault). Each field's `option` says what it means and bounds it: the
    CLI's flags and the API's request schema are made from them."""

    num: int = option(20, "how many names", lo=0)
    seed: int | None = option(None, "random seed (default: a new one each run); the same seed gives the same names",
                              lo=0, hi=MAX_SEED)
    # below 0.01 the softmax of logits / temperature overflows (uniform, not greedy, names)
    temperature: float = option(1.0, "<1 likelier names (towards greedy as it nears 0), >1 wilder ones", lo=0.01,
                                hi=10)
    top_k: int | None = option(None, "draw only from the k likeliest next characters", lo=1, hi=100_000)
    top_p: float | None = option(None, "draw only from the likeliest next characters holding this much probability",
                                 lo=0.001, hi=1)
    # exact for every model: the chain is conditioned on the prefix
    starts_with: str = option("", "every name begins with this", metavar="PREFIX")
    ends_with: str = option("", "every name ends with this", metavar="SUFFIX")
    # a single string is one substring
    contains: tuple[str, ...] = option((), "every name contains this text (repeatable: all of them)", metavar="TEXT")
    excludes: tuple[str, ...] = option((), "no name contains this text (repeatable: none of them)", metavar="TEXT")
    regex: str | None = option(None, "regular expression found in every name (anchor with ^ and $ to match the "
                                     "whole name); its matching is bounded by the budget", metavar="PATTERN")
    min_len: int | None = option(None, "shortest name, in characters", lo=0, hi=MAX_NAME_LENGTH)  # None: 1
    # None: the length guard (see `length_limit`)
    max_len: int | None = option(None, "longest name (default: twice the longest training name, at least 32)", lo=1,
                                 hi=MAX_NAME_LENGTH)
    # (lo, hi): namesmith.choosing.syllables.count_syllables of every name in this range ("2-3", "2" and 2 are read too)
    syllables: SyllableRange | None = option(None, "names of this many syllables, e.g. 2 or 2-3, empty for any "
                                                   "(spelling rules for the Latin script; exact for count models)",
                                             metavar="LO-HI")
    # names sharing a Double Metaphone key with this one (namesmith.choosing.phonetic; a filter)
    sounds_like: str = option("", "names that sound like this one (sharing a Double Metaphone key; needs the phonetic "
                                  "extra)", metavar="NAME")
    novel: bool = option(False, "never print a word of the training data (any split)")
    unique: bool = option(False, "never print the same name twice")
    max_tries: int | None = option(None, "names drawn at most (default: 100 per requested name + 100,000)", lo=1)
    time_budget: float | None = option(None, "stop searching after this many seconds", positive=True,
                                       metavar="SECONDS")
    method: str = option("auto", "exact conditioning (models with a bounded context), guided (networks steered by an "
                                 "n-gram, importance weights corrected), rejection sampling, or auto", choices=METHODS)
    # a model adapted to a list: draw its prior's letters too (NameModel.generate)
    prior_letters: bool = option(False, "a model adapted to a list draws only the list's own letters; this allows "
                                        "the prior's too")
    # choosing a name (namesmith.choosing.popularity, namesmith.choosing.surname): filters of the search loop
    popularity: str | None = option(None, "names this popular in the catalogue (their best-known sex and decade): "
                                          "rare (under 10 births per million), uncommon (10-100), common (100 or "
                                          "more), top:N, or a rank range A-B (e.g. 100-500); invented names pass none",
                                    max_length=32, metavar="BAND")
    not_in_catalogue: bool = option(False, "never print a name of any built-in list (the catalogue's first names and "
                                           "surnames, the built-in list, nicknames), whatever the model learned")
    surname: str | None = option(None, "score each name's fit with this surname (rhythm, a clash of sounds, "
                                       "alliteration, initials, length), explain it, and print the best first",
                                 max_length=MAX_SURNAME_LENGTH, metavar="NAME")
    alliteration: str = option("any", "with a surname: want (only names starting with its sound), avoid (none), or "
                                      "any", choices=ALLITERATION)
    # what a public page needs hidden (namesmith.data.offensive); the API asks for it by default
    filter_offensive: bool = option(False, "never print a name that holds an offensive word (the built-in list of "
                                           "namesmith/builtin/offensive_words.txt)")

    def __post_init__(self) -> None:
        for name in ("contains", "excludes"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        for f in fields(self):
            check_option(f.name, getattr(self, f.name), f.metadata["option"], str(f.type))
        for name in ("contains", "excludes"):
            patterns = getattr(self, name)
            check(all(isinstance(p, str) and p for p in patterns), name,
                   f"needs non-empty strings, got {list(patterns)!r}")
        for name in ("syllables", "popularity", "surname"):
            object.__setattr__(self, name, asked(getattr(self, name)))
        if self.syllables is not None:
            object.__setattr__(self, "syllables", parse_syllables(self.syllables))
        if self.sounds_like and not phonetic_keys(self.sounds_like):
            raise ConfigError(f"sounds_like {self.sounds_like!r}: no letters to sound out", field="sounds_like")
        if self.regex is not None:
            check(isinstance(self.regex, str), "regex", f"must be a string, got {self.regex!r}")
            compile_regex(self.regex)
        check_lengths(self, self.max_len, "max_len")
        if self.popularity is not None:
            parse_popularity(self.popularity)
        if self.surname is not None:
            object.__setattr__(self, "surname", check_surname(self.surname))
        check(self.alliteration == "any" or self.surname is not None, "alliteration",
               f"{self.alliteration!r} needs a surname to alliterate with")

    @property
    def structural(self) -> bool:
        """Whether there are constraints the plain sampler cannot satisfy by itself."""
        return bool(self.ends_with or self.contains or self.excludes or self.min_len or self.syllables)

    @property
    def plain_draws(self) -> bool:
        """Whether the names are the model's own draws, filtered at most: its own distribution (no temperature,
        top-k or top-p), no constraint that exact or guided sampling meets (so a count model's saved tables can
        draw them: namesmith.generation.saved_tables)."""
        return (not self.structural and self.method in ("auto", "rejection") and self.temperature == 1.0
                and self.top_k is None and self.top_p is None)

    @property
    def decoding(self) -> dict[str, Any]:
        """How logits become the sampling distribution: temperature, top_k, top_p."""
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


def check_option(name: str, value: Any, how: Option, annotation: str) -> None:
    """A value against its field's type (`annotation`: bool, int, float or str, or None) and its `Option`'s
    bounds and choices. None passes: an unset optional field."""
    if value is None:
        return
    kind = annotation.split("|")[0].strip()
    if kind == "bool":
        check(isinstance(value, bool), name, f"must be true or false, got {value!r}")
    elif kind == "str":
        check(isinstance(value, str), name, f"must be a string, got {value!r}")
    elif kind == "int":
        check(is_int(value), name, f"must be an integer, got {value!r}")
    elif kind == "float":
        check(is_number(value), name, f"must be a number, got {value!r}")
    check(not how.positive or value > 0, name, f"must be positive, got {value!r}")
    if how.lo is not None:
        check(value >= how.lo, name, f"must not be negative, got {value!r}" if how.lo == 0 else
               f"must be at least {how.lo:g}, got {value!r}")
    if how.hi is not None:
        check(value <= how.hi, name, f"must be at most {how.hi:,}, got {value:,}")
    if how.max_length is not None:
        check(len(value) <= how.max_length, name, f"is {len(value):,} characters long, more than {how.max_length}")
    if how.choices is not None:
        check(value in how.choices, name, f"must be one of {', '.join(how.choices)}, got {value!r}")


SyllableRange = tuple[int, int]  # a GenerateConfig's `syllables`: (lowest, highest), both included

def compile_regex(pattern: str) -> Any:
    """The compiled pattern, once `regex_size` has bounded what compiling it costs (`ConfigError` naming "regex")."""
    size = regex_size(pattern)
    if size > MAX_REGEX_SIZE:
        raise ConfigError(f"regex {shown_pattern(pattern)}: expands to about {size:,} items, more than "
                          f"{MAX_REGEX_SIZE:,} (MAX_REGEX_SIZE); use fewer or smaller {{m,n}} "
                          "counts, or * and +", field="regex")
    try:
        return regex_engine.compile(pattern)
    except regex_engine.error as e:
        error = e
        try:  # the user's own pattern, so the message quotes what they wrote, at its positions
            regex_engine.compile(pattern.removeprefix(IGNORE_CASE))
        except regex_engine.error as own:
            error = own
        raise ConfigError(f"regex {shown_pattern(pattern)}: {error}", field="regex") from None


def shown_pattern(pattern: str) -> str:
    """The pattern as a message quotes it: as the user wrote it (without the IGNORE_CASE that NameModel puts
    before it), in full if short, else its start (a message stays one short line)."""
    pattern = pattern.removeprefix(IGNORE_CASE)
    return repr(pattern) if len(pattern) <= 80 else f"{pattern[:60]!r}... ({len(pattern):,} characters)"


_COUNTED = regex_engine.compile(r"\{([\d\s]*)(?:(,)([\d\s]*))?\}")  # {m}, {m,}, {,n}, {m,n} (verbose: {3 00})
_NAMED_ESCAPE = regex_engine.compile(r"\\[pPNx]\{[^}]*\}|\\.", regex_engine.DOTALL)  # \p{L}, \N{...}, \x{41}, \d


def regex_size(pattern: str) -> int:
    """An upper bound on the items of `pattern` once its counted repetitions are expanded, as the `regex`
    engine's compiler expands them: `a{1000}` is 1,000 items, `(?:a{300}){300}` 90,000. Compiling costs
    time and memory in proportion (about 0.7 s and 250 MB per million items), so a short pattern can ask
    for hours and gigabytes: `(?:a{30000}){30000}` is 19 characters. A count above MAX_NAME_LENGTH can
    never match a name and is refused as such (`ConfigError`).

    Every character counts as an item (more than the engine's, for classes and group syntax); `*`, `+`
    and `?` loop without expanding. Whitespace and `#` comments count, but never take the place of
    the item a count repeats, as in verbose mode (an over-estimate otherwise, never an under-estimate).
    """
    totals = [0]  # the items of each open group so far, the outermost first
    last = 0  # the items of the last atom or group: what a count after it repeats
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            escape = _NAMED_ESCAPE.match(pattern, i)
            i = escape.end() if escape else n
            last = 1
        elif ch == "[":  # a class is one item: skip to its closing bracket (one right after [ or [^ is literal)
            j = i + 1 + (pattern[i + 1:i + 2] == "^")
            j += pattern[j:j + 1] == "]"
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i, last = j + 1, 1
        elif ch == "(":
            totals.append(0)
            i, last = i + 1, 0
            continue
        elif ch == ")" and len(totals) > 1:
            last = totals.pop() + 1
            totals[-1] += last
            i += 1
            continue
        elif ch == "{" and (counted := _COUNTED.match(pattern, i)) and counted.group().strip("{} \t\n\r\f\v"):
            low, comma, high = ("".join(part.split()) if part else part for part in counted.groups())
            count = max(int(low or 0), int(high or 0)) if comma and high else int(low or 0)
            if count > MAX_NAME_LENGTH:
                raise ConfigError(f"regex {shown_pattern(pattern)}: the count {counted.group()} is more than "
                                  f"{MAX_NAME_LENGTH:,} (the longest name, MAX_NAME_LENGTH), so it "
                                  "can never match a name", field="regex")
            totals[-1] += last * (max(count, 1) - 1)
            last *= max(count, 1)
            i = counted.end()
            continue
        elif ch.isspace() or ch == "#":
            totals[-1] += 1
            i += 1
            continue  # verbose mode ignores it: a count after it repeats the item before
        else:
            i, last = i + 1, 1
        totals[-1] += 1
    return sum(totals)


def check_lengths(config: GenerateConfig, hi: int | None, limit: str) -> None:
    """Impossible combinations that need no model, for a longest name `hi` (None: no limit yet);
    `limit` names where `hi` comes from in messages ("max_len")."""
    lo = config.min_len or 0
    if hi is not None and lo > hi:
        raise ConfigError(f"min_len {lo} is greater than {limit} ({hi})", field="min_len")
    for name, text in (("starts_with", config.starts_with), ("ends_with", config.ends_with),
                       *(("contains", c) for c in config.contains)):
        if hi is not None and len(text) > hi:
            raise ConfigError(f"{name} {text!r} is {len(text)} characters, more than {limit} ({hi})", field=name)
        for bad in config.excludes:
            if bad in text:
                raise ConfigError(f"{name} {text!r} contains {bad!r}, which excludes forbids", field=name)
    p, s = config.starts_with, config.ends_with
    if p and s and hi is not None:
        # a name of length n starts with p and ends with s iff they agree where they overlap
        lengths = range(max(len(p), len(s), lo), hi + 1)
        if not any(n >= len(p) + len(s) or p[n - len(s):] == s[: len(p) + len(s) - n] for n in lengths):
            raise ConfigError(f"no name of at most {hi} characters starts with {p!r} and ends with {s!r}",
                              field="ends_with")


def length_limit(model: CharModel, max_len: int | None, max_word_length: int) -> int:
    """The longest name a generation allows: the one length guard of every path.

    `max_len` if given, else max(2 × the longest training name, 32) (at most MAX_NAME_LENGTH),
    and never more than the model can read (its `max_length` - 1: the boundary takes a position).
    """
    if max_len is None:
        max_len = min(max(2 * max_word_length, GUARD_AT_LEAST), MAX_NAME_LENGTH)
    if model.max_length is not None:
        max_len = min(max_len, model.max_length - 1)
    return max_len

