"""One `GenerateConfig` says what generation takes: the CLI's options and the API's generate request are made
from its fields (names, defaults, bounds, choices, help), and these tests fail when either drifts from it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from namesmith.cli import build_parser
from namesmith.core.errors import ConfigError
from namesmith.generation.config import MAX_SEED, METHODS, GenerateConfig, options_of

CONFIG = {f.name: f for f in dataclasses.fields(GenerateConfig)}


def test_every_field_has_its_option_and_its_default_passes_its_own_rules():
    for name, f in CONFIG.items():
        how = f.metadata.get("option")
        assert how is not None and how.help, f"{name}: give it an option(default, help, ...)"
        GenerateConfig(**{name: f.default})
    assert options_of(GenerateConfig).keys() == CONFIG.keys()


@pytest.mark.parametrize("name", [n for n, f in CONFIG.items() if f.metadata["option"].lo is not None
                                  or f.metadata["option"].hi is not None])
def test_the_config_takes_its_bounds_and_refuses_beyond_them(name):
    how = CONFIG[name].metadata["option"]
    step = 1 if str(CONFIG[name].type).startswith("int") else how.lo or 0.001
    for edge in (how.lo, how.hi):
        if edge is not None:
            GenerateConfig(**{name: edge})
    for outside in ((how.lo - step) if how.lo is not None else None, (how.hi + step) if how.hi is not None else None):
        if outside is not None:
            with pytest.raises(ConfigError) as e:
                GenerateConfig(**{name: outside})
            assert e.value.field == name


# --- the API's generate request ----------------------------------------------------------------------
fastapi = pytest.importorskip("fastapi")

from namesmith.serve.limits import Limits  # noqa: E402
from namesmith.serve.schemas import API_NAMES, DEFAULTS, request_models  # noqa: E402

LIMITS = Limits()
REQUEST = request_models(LIMITS).Generate
API_ONLY = {"where"}  # NameModel.generate's conditions


def schema_of(api_name: str) -> dict:
    """The request field's JSON schema, its null alternative left out."""
    prop = REQUEST.model_json_schema()["properties"][api_name]
    kinds = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    return {k: v for p in kinds for k, v in p.items()}


def test_the_request_has_every_config_field_with_its_default():
    api = {API_NAMES.get(name, name): name for name in CONFIG}
    assert set(REQUEST.model_fields) == set(api) | API_ONLY
    for api_name, name in api.items():
        default = DEFAULTS.get(name, CONFIG[name].default)
        assert REQUEST.model_fields[api_name].get_default() == (list(default) if isinstance(default, tuple)
                                                                else default), name
    assert DEFAULTS == {"filter_offensive": True}  # the server's one default of its own: a public page hides them


def test_the_request_offers_every_method_and_the_configs_seed_range():
    assert tuple(schema_of("method")["enum"]) == METHODS  # "guided" was missing from the API
    assert (schema_of("seed")["minimum"], schema_of("seed")["maximum"]) == (0, MAX_SEED)
    assert REQUEST(method="guided").method == "guided"
    for name, f in CONFIG.items():
        choices = f.metadata["option"].choices
        if choices:
            assert tuple(schema_of(API_NAMES.get(name, name))["enum"]) == choices, name


NUMBERS = [n for n, f in CONFIG.items() if str(f.type).split("|")[0].strip() in ("int", "float")]


@pytest.mark.parametrize("name", NUMBERS)
def test_every_number_the_request_takes_the_config_takes(name):
    """The API's bounds lie within the config's (the server may narrow them by its limits, never widen them):
    its least and greatest values build a config."""
    schema = schema_of(API_NAMES.get(name, name))
    how = CONFIG[name].metadata["option"]
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum")
    assert lo is not None or how.lo is None, f"{name}: the config has a least value, the request none"
    assert hi is not None or how.hi is None, f"{name}: the config has a greatest value, the request none"
    for edge in (lo, hi):
        if edge is not None and math.isfinite(edge) and not (edge == lo and "exclusiveMinimum" in schema):
            GenerateConfig(**{name: edge})


# --- the CLI's options -------------------------------------------------------------------------------
def test_the_sample_command_has_an_option_per_field_with_its_help_and_choices():
    parser = build_parser(command="sample")
    sample = next(a for a in parser._subparsers._group_actions if a.choices).choices["sample"]
    options = {a.dest.removeprefix("gen_"): a for a in sample._actions if a.dest.startswith("gen_")}
    assert options.keys() == CONFIG.keys()
    for name, action in options.items():
        how = CONFIG[name].metadata["option"]
        assert action.help.startswith(how.help), name
        assert tuple(action.choices or ()) == tuple(how.choices or ()), name


def test_a_generation_given_no_seed_draws_one_a_user_may_give(monkeypatch):
    """One seed range (issue 28): the seed drawn for a generation asked with none is one of the seeds a user may
    give, so its names are those of a seed that can be given back (it was drawn from 62 bits, beyond MAX_SEED)."""
    import secrets

    from namesmith.core.vocab import Vocab
    from namesmith.generation.generate import generate
    from namesmith.models.bigram import BigramCounts, BigramCountsConfig

    vocab = Vocab(("a", "b", "c"))
    model = BigramCounts(vocab.size, BigramCountsConfig(smoothing=1)).eval()
    # the largest seed each way of drawing one can give
    monkeypatch.setattr(secrets, "randbits", lambda bits: 2**bits - 1)
    monkeypatch.setattr(secrets, "randbelow", lambda n: n - 1)
    unseeded = generate(model, vocab, GenerateConfig(num=20), max_word_length=8).names
    assert unseeded == generate(model, vocab, GenerateConfig(num=20, seed=MAX_SEED), max_word_length=8).names
