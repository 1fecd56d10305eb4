"""The `namesmith` command: parse → one `NameModel` call → print.

Options are generated from the config dataclasses (`DataConfig`, `TrainConfig`, `GenerateConfig`
and each model type's config): their fields give the names, types and defaults, the tables below
only the help text. Library errors name the Python parameter (`field`); they are printed with the
flag that sets it.

Exit status: 0 on success, 1 for a namesmith error (bad input, options or checkpoint; one line
on stderr), 2 for a command-line usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from namesmith.core.errors import ConfigError, DistributedError, NamesmithError

log = logging.getLogger("namesmith")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_MODEL_DIR = "out"
PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal

# Help text of the config fields that become options; names, types and defaults come from the fields.
DATA_HELP = {
    "case": "auto: learn lowercased names and print them in the list's own casing (title case, capitals) when "
            "one dominates, else as written; exact: as written; lower: lowercase",
    "lowercase": "the same as --case lower",
    "encoding": "text encoding of the word list",
    "max_line_length": "skip (with a warning) lines longer than this many characters",
    "dedupe": "drop repeated names (the first is kept)",
    "split_seed": "seed of the 80/10/10 train/val/test shuffle",
    "condition": "tables: the label columns to condition on, e.g. sex,decade (repeatable; unless given, every "
                 "label column of the table; none: no label)",
    "weighting": "tables: how rows weigh in training: share (each distinct name weighs 1 in all, shared among the "
                 "label values it was given under in proportion to its counts), none (each distinct name and its "
                 "labels once), count (by its count: births), log (1 + ln count)",
}
TRAIN_HELP = {
    "max_steps": "epochs (bigram) or optimiser steps (neural models)",
    "learning_rate": "(initial) learning rate",
    "learning_rate_end": "final learning rate of the decay",
    "batch_size": "words per optimiser step (neural models)",
    "weight_decay": "L2 penalty (bigram) or AdamW weight decay",
    "warmup_steps": "linear learning-rate warm-up (neural models)",
    "grad_clip": "clip the gradient norm to this (neural models)",
    "eval_every": "steps between validation evaluations",
    "patience": "stop after this many evaluations without improvement",
    "time_budget": "stop training after this many seconds (the best weights are kept)",
    "ema": "evaluate and keep an exponential moving average of the weights with this decay (0: off)",
    "batching": "neural models: words drawn at random, or words of about the same length together "
                "(less padding, faster steps, same objective)",
    "ngram_mix": "neural models: combine the trained network with a Kneser-Ney n-gram of this order, "
                 "weights fitted on the validation split (0: the network alone; by default 6, or 5 for a "
                 "vocabulary of 1,448 characters or more)",
    "mode": "bigram training: full-batch (fast, from pair counts), one-hot (the seed's literal loop, same "
            "result, slower); per-example-nll and per-example-l1 are the seed's one-example-at-a-time "
            "teaching loops, for study only (slow: use --subset)",
    "subset": "per-example bigram modes: use only the first N pairs",
    "label_dropout": "conditional neural models: probability that a row's label is hidden in training, so "
                     "that any label can be left out when generating",
    "distill_weight": "with --teacher: the weight of the teacher's distributions in the loss, the words' own "
                      "characters taking the rest",
    "seed": "random seed of training",
    "calibrate": "whole-name calibration: tilt the model's names towards the training names' lengths and "
                 "endings (auto: where it lowers the validation NLL; docs/generation.md: Whole-name calibration)",
    "device": "auto, cpu, cuda, cuda:N or mps (auto: cuda, then mps, then cpu)",
}
GENERATE_HELP = {
    "num": "how many names",
    "seed": "random seed (default: a new one each run); the same seed gives the same names",
    "temperature": "<1 likelier names (towards greedy as it nears 0), >1 wilder ones",
    "top_k": "draw only from the k likeliest next characters",
    "top_p": "draw only from the likeliest next characters holding this much probability",
    "starts_with": "every name begins with this",
    "ends_with": "every name ends with this",
    "contains": "every name contains this text (repeatable: all of them)",
    "excludes": "no name contains this text (repeatable: none of them)",
    "regex": "regular expression found in every name (anchor with ^ and $ to match the whole name); "
             "its matching is bounded by the budget",
    "min_len": "shortest name, in characters",
    "max_len": "longest name (default: twice the longest training name, at least 32)",
    "syllables": "names of this many syllables, e.g. 2 or 2-3 (spelling rules for the Latin script; exact for "
                 "count models)",
    "sounds_like": "names that sound like this one (sharing a Double Metaphone key; needs the phonetic extra)",
    "novel": "never print a word of the training data (any split)",
    "unique": "never print the same name twice",
    "max_tries": "names drawn at most (default: 100 per requested name + 100,000)",
    "time_budget": "stop searching after this many seconds",
    "method": "exact conditioning (models with a bounded context), guided (networks steered by an n-gram, "
              "importance weights corrected), rejection sampling, or auto",
    "prior_letters": "a model adapted to a list draws only the list's own letters; this allows the prior's too",
    "popularity": "names this popular in the catalogue (their best-known sex and decade): rare (under 10 births per "
                  "million), uncommon (10-100), common (100 or more), top:N, or a rank range A-B (e.g. 100-500); "
                  "invented names pass none",
    "not_in_catalogue": "never print a name of any built-in list (the catalogue's first names and surnames, the "
                        "built-in list, nicknames), whatever the model learned",
    "surname": "score each name's fit with this surname (rhythm, a clash of sounds, alliteration, initials, "
               "length), explain it, and print the best first",
    "alliteration": "with --surname: want (only names starting with its sound), avoid (none), or any",
}
MODEL_HELP = {
    "smoothing": "k of add-k smoothing (0: maximum likelihood)",
    "init_seed": "seed of the initial weights W ~ N(0, 1)",
    "order": "the next character depends on the previous order-1 characters (unless given: 6, or 5 for a "
             "vocabulary of 1,448 characters or more, whose order-6 keys would overflow int64)",
    "discount": "Kneser-Ney discounts: tuned (on held-out training words), modified-kn, kn, or a fixed number in "
                "[0, 1]",
    "block_size": "characters of context (the Transformer: longest name + 1, from the data when unset)",
    "n_embd": "embedding channels",
    "n_hidden": "hidden units",
    "n_layer": "layers",
    "n_head": "attention heads",
    "dropout": "dropout probability while training",
    "bias": "biases in linear layers and layer norms",
    "tie_weights": "share the input embedding with the output layer",
}
SHORT_FLAGS = {"num": "-n", "models": "-m"}
TREND_MEASURES = ("count", "rank", "per-million")
MAX_TREND_NAMES = 20  # names one trend figure draws, at most
MAX_TREND_NAME_LENGTH = 64
METAVARS = {"starts_with": "PREFIX", "ends_with": "SUFFIX", "contains": "TEXT", "excludes": "TEXT",
            "regex": "PATTERN", "time_budget": "SECONDS", "condition": "LABEL", "popularity": "BAND",
            "syllables": "LO-HI", "surname": "NAME", "sounds_like": "NAME"}
WHERE_HELP = ("conditional models: names of these labels, LABEL=VALUE (repeatable: --where sex=F --where "
              "decade=1950s); LABEL=V1,V2 for names that fit both values (unisex: sex=F,M); labels left out are "
              "marginalised")


def flag(field: str) -> str:
    """The command-line flag that sets a Python parameter."""
    return "--" + field.replace("_", "-")


def option_name(field: str) -> str:
    """How a Python parameter is spelled for a user of the command line: `-n/--num`, `--max-len`."""
    return f"{SHORT_FLAGS[field]}/{flag(field)}" if field in SHORT_FLAGS else flag(field)


def parse_scalar(text: str) -> Any:
    """A model option given on the command line: int, float, or string (benchmarks' options too)."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _choices(name: str) -> tuple[str, ...] | None:
    """The values an option accepts, from the module that defines them (imported for the option that has them:
    namesmith.data.tables needs NumPy, namesmith.generation.generate torch)."""
    from namesmith.core.casing import CASES
    from namesmith.core.config import BATCHINGS, BIGRAM_MODES

    if name == "weighting":
        from namesmith.data.tables import WEIGHTINGS

        return WEIGHTINGS
    if name == "method":
        from namesmith.generation.generate import METHODS

        return METHODS
    if name == "alliteration":
        from namesmith.choosing.surname import ALLITERATION

        return ALLITERATION
    return {"mode": BIGRAM_MODES, "batching": BATCHINGS, "case": CASES}.get(name)


def _show(value: Any) -> str | None:
    """A default worth printing in help, or None (unset, empty, off)."""
    if value is None or value is False or value == "" or value == () or value == []:
        return None
    return str(value)


def add_field_options(group: argparse._ArgumentGroup, cls: type, help_text: dict[str, str], *, prefix: str = "",
                      defaults: dict[str, Any] | None = None, required_default: bool = False,
                      skip: tuple[str, ...] = ()) -> list[str]:
    """One option per dataclass field of `cls`; returns the field names.

    Options default to None ("not given") unless `required_default`, so the dataclass keeps its own
    defaults; `defaults` are shown in the help (e.g. a model type's real training defaults).
    """
    names = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = _show((defaults or {}).get(f.name, default))
        text = help_text.get(f.name, "")
        if shown is not None:
            text = f"{text} (default: {shown})".strip()
        flags = [flag(f.name)] + ([SHORT_FLAGS[f.name]] if f.name in SHORT_FLAGS else [])
        dest = prefix + f.name
        kind = str(f.type)
        if "bool" in kind:
            group.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction if default else "store_true",
                               default=default if required_default else None, help=text)
        elif "tuple" in kind:
            group.add_argument(*flags, dest=dest, action="append", default=None, metavar=METAVARS.get(f.name, "TEXT"),
                               help=text)
        else:
            convert = int if kind.startswith("int") else float if kind.startswith("float") else (
                parse_scalar if "str" in kind and "float" in kind else str)
            if kind.startswith("str") and "float" not in kind:
                convert = str
            group.add_argument(*flags, dest=dest, type=convert, choices=_choices(f.name),
                               default=default if required_default else None,
                               metavar=None if _choices(f.name) else METAVARS.get(f.name, "N" if convert is int
                                                                                  else "VALUE"), help=text)
        names.append(f.name)
    return names


def given(args: argparse.Namespace, names: list[str], prefix: str = "") -> dict[str, Any]:
    """The options among `names` that were given on the command line."""
    return {name: getattr(args, prefix + name) for name in names if getattr(args, prefix + name) is not None}


def _common(parser: argparse.ArgumentParser) -> None:
    """Options every command takes, before or after its name."""
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print warnings and errors only")


def _data_options(parser: argparse.ArgumentParser, what: str, split: bool = False) -> list[str]:
    """--data and the options of how its lines become words (the same for every command that reads one);
    training also chooses the table's condition and weighting."""
    from namesmith.data.words import DataConfig

    group = parser.add_argument_group("data")
    group.add_argument("--data", metavar="PATH", default=None, help=what)
    skip = ("path", "split") if split else ("path", "split", "condition", "weighting")
    fields = add_field_options(group, DataConfig, DATA_HELP, prefix="data_", skip=skip)
    if split:
        group.add_argument("--no-split", dest="data_split", action="store_false", default=None,
                           help="train and evaluate on every word: no held-out validation/test sets")
        fields.append("split")
    return fields


def _train_parser(sub: argparse._SubParsersAction, model_type: str, options: bool = True) -> argparse.ArgumentParser:
    """The train command; its options only with `options` (they need the model type's class, so torch)."""
    p = sub.add_parser("train", formatter_class=argparse.RawDescriptionHelpFormatter, help="train a model and save it",
                       description="Train a model on a word list, save it to --out, print its held-out loss and a "
                                   "few generated names.")
    if not options:
        return p
    from namesmith.core.config import TrainConfig
    from namesmith.models import model_class, trainable_types

    _common(p)
    p.add_argument("--model", default="ngram", choices=trainable_types(), help="model type (default: ngram)")
    p.add_argument("--out", default=DEFAULT_MODEL_DIR, metavar="DIR", help=f"model directory (default: "
                                                                            f"{DEFAULT_MODEL_DIR})")
    p.add_argument("--overwrite", action="store_true", help="replace a different model already saved in --out")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run saved in --out")
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train on N processes of this machine with DistributedDataParallel, launched by torchrun's "
                        "elastic agent (neural models; docs/distributed.md)")
    p.add_argument("--samples", type=int, default=10, metavar="N", help="names to print after training (default: 10)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    data_fields = _data_options(p, "word list (one name per line, UTF-8), table (a header row naming a 'name' "
                                   "column), or built-in data set (namesmith data lists them) (default: builtin, the "
                                   "US baby names of 2017, with their sex)", split=True)
    p.add_argument("--prior", default="auto", metavar="none|auto|catalogue|DIR",
                   help="auto: an ngram of fewer than 1,000 training names is adapted onto the catalogue's prior of "
                        "names (built once, in seconds, and cached); catalogue: adapt an ngram or gru onto the "
                        "catalogue's prior whatever the list's size (the GRU prior is built once, in minutes); DIR: "
                        "adapt onto the trained model in DIR; none: the list alone (default: auto)")
    p.add_argument("--teacher", metavar="DIR",
                   help="neural models: learn from the next-character distributions of the trained model in DIR (of "
                        "the same word list; an ensemble, say) as well as from the words: knowledge distillation "
                        "(docs/models.md: Distillation)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="bigram models and the n-gram: count the word list in blocks instead of loading it (default: "
                        "only for files of 20 MB or more); the split is then by a hash of each word's index, about "
                        "80/10/10")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes that count a streamed word list in shards (default: 1; under torchrun every "
                        "rank counts its share)")
    cls = model_class(model_type)
    t = p.add_argument_group(f"training ({model_type} is fitted by counting: only --seed and --device apply)"
                             if cls.counts_only else f"training (defaults shown are {model_type}'s)")
    train_fields = add_field_options(t, TrainConfig, TRAIN_HELP, prefix="train_",
                                     defaults=cls.train_defaults(TrainConfig()))
    m = p.add_argument_group(f"{model_type} model options (--model NAME --help shows another model's)")
    model_fields = add_field_options(m, cls.config_class, MODEL_HELP, prefix="model_")
    p.set_defaults(data_fields=data_fields, train_fields=train_fields, model_fields=model_fields)
    return p


def _model_dir_option(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--model-dir", "-m", default=DEFAULT_MODEL_DIR, metavar="DIR",
                   help=f"trained model directory (default: {DEFAULT_MODEL_DIR})")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")


def _names_arguments(p: argparse.ArgumentParser, command: str) -> None:
    """The names a command works on: as arguments, and from a word list (read by `_names_given`)."""
    p.add_argument("names", nargs="*", metavar="NAME", help=f"names to {command}")
    p.add_argument("--file", metavar="LIST", help=f"also {command} every name of this word list (one per line)")


def _moved_data_option(p: argparse.ArgumentParser, why: str = "") -> None:
    """--data for a command that reads the model's training list: only needed where the list moved."""
    p.add_argument("--data", metavar="PATH", help="the training word list, if it moved since training" + why)


def build_parser(model_type: str = "ngram", command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command. `command`, when given, is the one to be parsed: the options that need
    heavy imports are built only for their command (train's the model classes and sample's GenerateConfig
    import torch, the data options NumPy), so `namesmith --help` and the other commands start without them."""
    from namesmith.core.config import COMBINES

    building = lambda name: command is None or command == name  # noqa: E731

    parser = argparse.ArgumentParser(prog="namesmith", description="Learn what words of a kind look like, one "
                                                                   "character at a time, and make more of them.")
    parser.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub, model_type, options=building("train"))

    s = sub.add_parser("sample", help="print generated names",
                       description="Print names drawn from a trained model; the same --seed gives the same names. "
                                   "Constraints hold on every name printed: bigram and n-gram models are conditioned "
                                   "on them exactly, other models are sampled and filtered within the budget. Names "
                                   "stream out as they are found. A summary (how many names are training, held-out "
                                   "or new words) goes to stderr.")
    _model_dir_option(s)
    if building("sample"):
        from namesmith.generation.generate import GenerateConfig

        g = s.add_argument_group("generation (constraints hold on every name printed; the budget ends the search)")
        s.set_defaults(generate_fields=add_field_options(g, GenerateConfig, GENERATE_HELP, prefix="gen_"))
    _moved_data_option(s, " (for --novel and the summary)")
    s.add_argument("--where", action="append", metavar="LABEL=VALUE", help=WHERE_HELP)
    s.add_argument("--guidance", type=float, default=0.0, metavar="G",
                   help="with --where: names more typical of those labels, drawn from P(c | where)^(1+G) / "
                        "P(c)^G at every step (classifier-free guidance; 0, the model's own P(name | where), unless "
                        "given)")
    s.add_argument("--details", action="store_true",
                   help="beside each name: known or new, its popularity in the catalogue, its nicknames")
    s.add_argument("--json", action="store_true", help="print a JSON object (names and summary; with --details, "
                                                       "each name's facts too)")

    sc = sub.add_parser("score", help="how name-like are these names?",
                        description="Per name: total log-probability (end token included), mean negative "
                                    "log-likelihood per character, and the percentage of training names that are at "
                                    "most as name-like (by NLL per character).")
    _model_dir_option(sc)
    _names_arguments(sc, "score")
    sc.add_argument("--sort", action="store_true", help="rank from most to least name-like")
    sc.add_argument("--where", action="append", metavar="LABEL=VALUE",
                    help="score P(name | labels) and place it among the training names of those labels; " + WHERE_HELP)
    sc.add_argument("--json", action="store_true", help="print JSON")
    sc.set_defaults(data_fields=_data_options(sc, "the training word list, if it moved since training "
                                                  "(for percentiles)") if building("score") else [])

    e = sub.add_parser("eval", help="held-out loss of a trained model",
                       description="Mean negative log-likelihood per character (end token included) and perplexity "
                                   "on the train/val/test split the model was trained with, or on every word of "
                                   "--data FILE when FILE is not the training list.")
    _model_dir_option(e)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(data_fields=_data_options(e, "word list to evaluate (default: the model's own split)")
                   if building("eval") else [])

    ca = sub.add_parser("calibrate", help="fit a trained model's whole-name calibration",
                        description="Tilt a trained model's names towards its training names' lengths and endings "
                                    "(whole-name calibration, docs/generation.md), chosen on its "
                                    "validation split, and save it in the model directory.")
    _model_dir_option(ca)
    ca.add_argument("--calibrate", default="auto", choices=("none", "length", "auto"),
                    help="auto: the features that lower the validation NLL, or none; length: the length alone; "
                         "none: remove the calibration (default: auto)")
    ca.add_argument("--json", action="store_true", help="print JSON")

    pl = sub.add_parser("plot", help="draw the heat map or the loss curve",
                        description="Write a PNG: the bigram probability table as a heat map, or the loss curve.")
    _model_dir_option(pl)
    pl.add_argument("what", nargs="?", default="heatmap", choices=["heatmap", "loss"],
                    help="which figure (default: heatmap)")
    pl.add_argument("-o", "--output", metavar="FILE",
                    help="PNG to write (default: MODEL_DIR/heatmap.png, heatmap-counts.png or loss.png)")
    pl.add_argument("--annotate", action="store_true",
                    help="heat map of training pair counts, each cell labelled with its pair and count")
    _moved_data_option(pl)

    tr = sub.add_parser("trend", help="how often names were given, decade by decade (PNG)",
                        description="Draw the births (or rank, or births per million) of names by decade from the "
                                    "catalogue (US 1880-2017, Israel 1949-2024) as a PNG; --json prints the series. "
                                    "Names are matched in any case; a name with no births there is said so.")
    tr.add_argument("names", nargs="+", metavar="NAME", help=f"names to draw (at most {MAX_TREND_NAMES})")
    tr.add_argument("--sex", choices=("F", "M"), help="only the births of this sex (default: each sex a line)")
    tr.add_argument("--measure", choices=TREND_MEASURES, default="count",
                    help="births per decade, rank among names of that sex and decade, or births per million of "
                         "that sex and decade, which compares decades of different sizes (default: count)")
    tr.add_argument("-o", "--output", metavar="FILE", default="trend.png", help="PNG to write (default: trend.png)")
    tr.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    tr.add_argument("--json", action="store_true", help="print the series as JSON instead of drawing them")

    sv = sub.add_parser("serve", help="the web page and JSON API",
                        description="Serve a web page and a JSON API (/api/v1, OpenAPI at /docs) to generate, steer, "
                                    "score and compare names. With no -m, a count model of each built-in data set, "
                                    "built at the first start in a bounded worker process and cached. Needs the "
                                    "serve extra: pip install 'namesmith[serve]'.")
    _common(sv)
    sv.add_argument("-m", "--model-dir", dest="model_dirs", action="append", default=[], metavar="DIR",
                    help="a trained model directory to serve (repeatable; default: the built-in data sets' models)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                        "only; another address needs --api-key to be safe)")
    sv.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    sv.add_argument("--api-key", metavar="KEY", help="require this key in the X-API-Key header of every API request; "
                                                     "a key on the command line shows in ps to every user of this "
                                                     "machine: prefer the NAMESMITH_API_KEY environment variable or "
                                                     "--api-key-file (an empty key is refused)")
    sv.add_argument("--api-key-file", metavar="FILE", help="read the API key from the first line of FILE")
    sv.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                    help="change a per-request limit (repeatable), e.g. max_names=500 or time_budget=1; "
                         "--limit help lists every limit with its default")
    sv.add_argument("--workers", type=int, default=1, metavar="N", help="server processes (default: 1)")

    c = sub.add_parser("classify", help="which label values fit these names (conditional models)",
                       description="For each name, the posterior over each label the model is conditioned on: "
                                   "P(value | name) ∝ P(name | value) · P(value), P(value) being the value's share of "
                                   "the training data. Prints e.g. 'leslie: sex F 61% M 39%; decade 1950s 18% ...'.")
    _model_dir_option(c)
    _names_arguments(c, "classify")
    c.add_argument("--top", type=int, default=3, metavar="N", help="values shown per label (default: 3)")
    c.add_argument("--json", action="store_true", help="print JSON: every value's probability")

    en = sub.add_parser("ensemble", help="combine trained models into one",
                        description="Combine models trained on one word list (same vocabulary, data and split) into "
                                    "one model directory: their predictions are combined with weights fitted on the "
                                    "validation split. The result samples, scores and evaluates like any model.")
    _common(en)
    en.add_argument("-m", "--models", "--model-dir", dest="models", action="append", required=True, metavar="DIR",
                    help="a trained model directory (repeat: two or more)")
    en.add_argument("--out", required=True, metavar="DIR", help="directory for the combined model")
    en.add_argument("--combine", choices=COMBINES, default=COMBINES[0],
                    help="product: a weighted product of the probabilities, renormalised (default); mixture: a "
                         "weighted average")
    en.add_argument("--overwrite", action="store_true", help="replace a different model already saved in --out")
    en.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")
    _moved_data_option(en)
    en.add_argument("--json", action="store_true", help="print JSON")

    d = sub.add_parser("data", help="list the built-in data sets",
                       description="The built-in data sets (--data NAME): rows, distinct names, labels, licence and "
                                   "source. See namesmith/catalogue/DATA_CARD.md for how each was built.")
    _common(d)
    d.add_argument("--json", action="store_true", help="print JSON")

    r = sub.add_parser("report", help="strongest transitions vs the training data",
                       description="The seed's sanity check: the model's largest next-character probabilities beside "
                                   "their frequency in the training words.")
    _model_dir_option(r)
    r.add_argument("--top", type=int, default=10, help="how many transitions (default: 10)")
    _moved_data_option(r)
    r.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _model_type_in(argv: list[str]) -> str:
    """The --model value of a train command, read ahead so its options can be added."""
    from namesmith.models import trainable_types

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="ngram")
    known, _ = pre.parse_known_args(argv)
    return known.model if known.model in trainable_types() else "ngram"


def _owner_of(option: str) -> str | None:
    """The model type whose option `option` is (for "--order does not apply to --model bigram")."""
    from namesmith.models import model_class, trainable_types

    name = option.split("=", 1)[0].lstrip("-").replace("-", "_")
    owners = [t for t in trainable_types() if name in {f.name for f in dataclasses.fields(model_class(t).config_class)}]
    return ", ".join(owners) or None


@contextmanager
def _stop_on_signals(resumable: bool = True) -> Iterator[dict[str, bool]]:
    """Turn the first SIGINT/SIGTERM into a clean stop request; a second one aborts. A run that is not
    `resumable` (a count model, fitted in one pass of seconds) stops at once, saving nothing."""
    flag_ = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        if not resumable:
            log.warning("stopping now; nothing was saved (a count model is fitted in one pass: nothing to resume)")
            raise KeyboardInterrupt
        flag_["stop"] = True
        log.warning("stopping after the current step and saving a resumable checkpoint "
                    "(press Ctrl-C again to abort)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag_
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _format_metrics(metrics: dict[str, dict[str, Any]]) -> str:
    lines = []
    for part, m in metrics.items():
        if m["nll"] is None:
            lines.append(f"{part:>5}: (no words)")
        else:
            per_count = f"  per count {m['nll_per_count']:.4f}" if m.get("nll_per_count") is not None else ""
            lines.append(f"{part:>5}: nll {m['nll']:.4f}  perplexity {m['perplexity']:.3f}{per_count}  "
                         f"({plural(m['n_words'], 'word')}, {plural(m['n_chars'], 'character')})")
    return "\n".join(lines)


class Progress:
    """Training progress: a bar on a terminal, a log line every few seconds otherwise.

    The bar's total follows the time budget when it will end the run before max_steps, so the ETA
    is honest; log lines go through the bar (tqdm.write) so the two never share a line.
    """

    def __init__(self, model_type: str, time_budget: float | None, stop: dict[str, bool],
                 clock: Any = time.perf_counter):
        from tqdm import tqdm

        self.stop, self.time_budget, self.clock = stop, time_budget, clock
        self.bar = tqdm(total=None, desc=f"training {model_type}", unit="step", disable=None if _rank() == 0 else True,
                        leave=False)
        self.start = self.last_line = clock()

    def __call__(self, step: int, total: int, metrics: dict[str, float]) -> bool:
        elapsed = self.clock() - self.start
        total = self.planned_steps(step, total, elapsed)
        losses = {k: f"{v:.4f}" for k, v in metrics.items() if k in ("loss", "val_loss")}
        if not self.bar.disable:
            if self.bar.total != total:
                self.bar.total = total
            self.bar.n = step
            self.bar.set_postfix(losses, refresh=False)
            self.bar.refresh()
        elif self.clock() - self.last_line >= PROGRESS_EVERY or step == total:
            self.last_line = self.clock()
            log.info(f"step {step:,}/{total:,} ({elapsed:.0f} s) " + " ".join(f"{k} {v}" for k, v in losses.items()))
        return self.stop["stop"]

    def planned_steps(self, step: int, total: int, elapsed: float) -> int:
        """The steps the run will take: max_steps, or what the time budget allows at this pace if fewer."""
        if self.time_budget and elapsed > 1 and step:
            return min(total, math.ceil(step * self.time_budget / elapsed))
        return total

    def close(self) -> None:
        self.bar.close()


@contextmanager
def _logs_through(progress: Progress) -> Iterator[None]:
    from tqdm.contrib.logging import logging_redirect_tqdm

    if progress.bar.disable:
        yield
    else:
        with logging_redirect_tqdm(loggers=[log]):
            yield


def _rank() -> int:
    """This process's rank when torchrun started it, else 0: only rank 0 prints progress and results."""
    return int(os.environ.get("RANK", "0"))


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line without its --nproc option (argparse also takes an abbreviation such as --np)."""
    kept, skip = [], False
    for token in argv:
        name = token.split("=", 1)[0]
        if skip or (len(name) > 3 and "--nproc".startswith(name)):
            skip = not skip and "=" not in token  # its value is the next token
            continue
        kept.append(token)
    return kept


def cmd_train(args: argparse.Namespace) -> int:
    from namesmith.namemodel import NameModel

    if args.samples < 0:
        raise ConfigError(f"--samples must not be negative, got {args.samples}")
    if args.nproc is not None:  # this process launches the ranks, which run this command without --nproc
        from namesmith.training.distributed import launch

        return launch(args.nproc, _without_nproc(args.argv))
    options = {**given(args, args.data_fields, "data_"), **given(args, args.train_fields, "train_"),
               **given(args, args.model_fields, "model_")}
    from namesmith.models import model_class

    with _stop_on_signals(resumable=not model_class(args.model).counts_only) as stop:
        progress = Progress(args.model, options.get("time_budget"), stop)
        try:
            with _logs_through(progress):
                model = NameModel.train(args.data or "builtin", args.model, out=args.out, resume=args.resume,
                                        overwrite=args.overwrite, callback=progress, stream=args.stream,
                                        workers=args.workers, prior=args.prior, teacher=args.teacher,
                                        **options)
        finally:
            progress.close()
    history = model.history
    if _rank() != 0:  # rank 0 reports for every rank
        return EXIT_INTERRUPTED if history.stop_reason == "interrupted" else 0
    seed = options.get("seed", 1337)
    samples = args.samples if args.json or not args.quiet else 0  # -q prints no samples: none are drawn
    names = model.generate(samples, seed=seed) if samples else None
    by_value = _samples_by_value(model, samples, seed) if samples else {}
    if args.json:
        _print_json({"model_dir": args.out, "model_type": model.model_type, "description": model.describe(),
                     "metrics": model.metrics, "steps": history.steps, "seconds": history.seconds,
                     "stop_reason": history.stop_reason, "samples": names.names if names else [],
                     "samples_by_value": {k: v.names for k, v in by_value.items()}, "labels": model.labels,
                     "unfinished_samples": names.stats.unfinished if names else 0,
                     "metrics_without_ngram": model.meta.get("metrics_without_ngram"),
                     "adaptation": model.meta.get("adaptation"), "teacher": model.meta.get("teacher")})
    elif args.quiet:  # warnings and errors only: an interrupted run's way back is one
        if history.stop_reason == "interrupted":
            log.warning(f"interrupted; {_resume_line(args)}")
    else:
        status = history.stop_reason
        print(f"trained {model.describe()} for {plural(history.steps, 'step')} in {history.seconds:.2f} s "
              f"({status}); saved to {args.out}")
        if status == "interrupted":
            print(_resume_line(args))
        adaptation = model.meta.get("adaptation")
        if adaptation:  # see namesmith.adaptation.adapt
            print(_format_adaptation(adaptation))
        teacher = model.meta.get("teacher")
        if teacher:  # see namesmith.training.distill
            test = teacher["metrics"].get("test")
            print(f"taught by the {teacher['model_type']} model in {teacher['directory'] or '(given in Python)'}"
                  + ("" if test is None else f" (test nll {test:.4f})"))
        print(_format_metrics(model.metrics))
        alone = model.meta.get("metrics_without_ngram")
        if alone:  # see namesmith.models.ngram_mix
            config = model.meta["model_config"]
            a, b = config["weights"]
            order = config["ngram"].get("model", config["ngram"]).get("order", "?")
            print(f"the network alone, before it was combined with the order-{order} n-gram "
                  f"(weights {a:.2f} and {b:.2f}; --ngram-mix 0 keeps it alone):\n{_format_metrics(alone)}")
        if by_value:
            print("samples:")
            for where, found in by_value.items():
                print(f"{where}: {', '.join(found.names)}")
        elif names and names.names:
            print("samples:")
            print("\n".join(names.names))
    if names is not None:
        _warn_unfinished(names.stats, args.quiet)
    # interrupted (SIGINT/SIGTERM) but saved resumably: exit 130 so scripts do not mistake it for done
    return EXIT_INTERRUPTED if history.stop_reason == "interrupted" else 0


def _resume_line(args: argparse.Namespace) -> str:
    """How to resume an interrupted `train` run."""
    data_flag = "" if not args.data else f" --data {shlex.quote(args.data)}"
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    return (f"resume with: namesmith train --model {args.model}{data_flag} --out {shlex.quote(args.out)} --resume"
            + (f" --nproc {ranks}" if ranks > 1 else ""))


def _samples_by_value(model: Any, n: int, seed: int) -> dict[str, Any]:
    """Sample names per value of a conditional model's one label, when it has one with few values
    (sex: F, M): {"sex=F": names, ...}; else {} (the plain samples are shown)."""
    labels = model.labels
    if len(labels) != 1:
        return {}
    (label, values), = labels.items()
    if len(values) > 4:
        return {}
    per_value = max(1, math.ceil(n / len(values)))
    return {f"{label}={v}": model.generate(per_value, seed=seed + i, where={label: v}) for i, v in enumerate(values)}


def _format_adaptation(record: dict[str, Any]) -> str:
    """One line on how a short list was adapted onto its prior (namesmith.adaptation.adapt)."""
    prior = record["prior"].get("source") or record["prior"].get("directory") or "a trained model"
    how = (f"{record['steps']} fine-tuning steps" if record["method"] == "fine-tune" else
           f"an order-{record['order']} n-gram over it")
    if "nested_cv_nll" in record:  # an n-gram: its table's share chosen by nested cross-validation, the honest figure
        how += f" (the list's table weighs {record['table_share']:.2f})"
    if record.get("classes", {}).get("kept"):
        classes = record["classes"]
        how += (f" and a class table of {', '.join(classes['names'])} (held-out gain {classes['cv_gain']:.4f} "
                "per character)")
    held_out = record.get("nested_cv_nll", record["cv_nll"])
    line = (f"adapted {prior} to the list: {how}, chosen by {record['folds']}-fold cross-validation (held-out NLL "
            f"{held_out:.4f} per character; the prior alone {record['cv_nll_background']:.4f})")
    mixture = record.get("mixture")
    if mixture and len(mixture) > 1:
        top = sorted(mixture.items(), key=lambda kv: -kv[1])[:4]
        line += "; most like " + ", ".join(f"{name} {weight:.0%}" for name, weight in top)
    return line


def _warn_unfinished(stats: Any, quiet: bool) -> None:
    """Say on stderr how many drawn names hit the length limit and were dropped (never silently)."""
    line = stats.unfinished_message(option_name)
    if line and not quiet:
        print(f"namesmith: {line}", file=sys.stderr)


def _one_thread() -> None:
    """Inference runs on one torch thread unless OMP_NUM_THREADS says otherwise: with more, OpenMP's threads
    spin-wait for each other, and beside a busy core classifying one name took 66-80 s instead of 6."""
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"  # read by torch when it is imported after this
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)


def _load(args: argparse.Namespace):  # noqa: ANN202
    _one_thread()
    from namesmith.namemodel import NameModel

    return NameModel.load(args.model_dir, device=args.device, data=getattr(args, "data", None))


def _names_given(args: argparse.Namespace, command: str, data_options: dict[str, Any] | None = None) -> list[str]:
    """The names given as arguments, then those of --file LIST (read as they are: any length, case kept)."""
    from namesmith.data.words import DataConfig, load_words

    names = list(args.names)
    if args.file:
        names += load_words(DataConfig(path=args.file, **{"max_line_length": 10**6, "case": "exact",
                                                          **(data_options or {})}))
    if not names:
        raise ConfigError(f"{command} needs names: give them as arguments or with --file LIST")
    return names


def cmd_sample(args: argparse.Namespace) -> int:
    from namesmith.core.conditional import parse_where_args

    model = _load(args)
    options = given(args, args.generate_fields, "gen_")
    n = options.pop("num", 20)
    where = parse_where_args(args.where)
    surname, alliteration = options.get("surname"), options.get("alliteration", "any")
    if args.json or surname is not None:  # every name is held: one JSON object, or names sorted by their fit
        from namesmith.choosing.facts import by_fit

        result = model.generate(n, where=where, guidance=args.guidance, **options)
        facts = model.facts(result.names, surname=surname, alliteration=alliteration) \
            if args.details or surname is not None else []
        if surname is not None:
            facts = by_fit(facts)
        if args.json:
            out = result.to_dict()
            if facts:
                out["names"] = [f.name for f in facts]
                out["details"] = [{"name": f.name, **f.to_dict()} for f in facts]
            _print_json(out)
        else:
            print("\n".join(f"{f.name} {surname}".ljust(24) + " " + (f.line() if args.details else f.fit_line())
                            for f in facts))
            if not args.quiet:
                print(result.novelty.line(), file=sys.stderr)
        stats, novelty = result.stats, result.novelty
    else:  # names stream out as they are found; memory stays bounded by a batch
        with model.iter_generate(n, where=where, guidance=args.guidance, **options) as stream:
            for names in stream:
                lines = names if not args.details else [f"{f.name:<16} {f.line()}" for f in model.facts(names)]
                sys.stdout.write("".join(line + "\n" for line in lines))
                sys.stdout.flush()
            stats, novelty = stream.stats, stream.novelty
        if not args.quiet:
            print(novelty.line(), file=sys.stderr)
    _warn_unfinished(stats, args.quiet)
    if not stats.complete:
        raise NamesmithError(stats.message(option_name))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from namesmith.scoring.score import format_scores, rank

    names = _names_given(args, "score", given(args, args.data_fields, "data_"))
    from namesmith.core.conditional import parse_where_args

    model = _load(args)
    scores = model.score(names, where=parse_where_args(args.where))
    if args.sort:
        scores = rank(scores)
    _, why = model.training_split()
    if args.json:
        _print_json({"scores": [s.to_dict() for s in scores], "percentiles_unavailable": why})
    else:  # names as the model prints them (as `sample` does: Title Case for a model of title-cased names)
        print(format_scores([dataclasses.replace(s, name=shown) for s, shown in
                             zip(scores, model.shown([s.name for s in scores]))]))
        if why and not args.quiet:
            print(f"percentiles not available: {why}", file=sys.stderr)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from namesmith.scoring.classify import format_classification

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    names = _names_given(args, "classify")
    model = _load(args)
    results = model.classify(names)
    if args.json:
        _print_json({"labels": model.labels, "names": [{"name": r.name, "posterior": r.labels, "error": r.error}
                                                       for r in results]})
    else:
        print(format_classification([dataclasses.replace(r, name=shown) for r, shown in
                                     zip(results, model.shown(names))], args.top))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    model = _load(args)
    report = model.calibrate(args.calibrate)
    model.save(args.model_dir)
    if args.json:
        _print_json({"calibration": report, "metrics": model.metrics})
    else:
        print(f"calibration: {report['choice']}" + (f" ({report['method']})" if report["method"] else "")
              + (f"; {report['note']}" if report["note"] else ""))
        print(_format_metrics(model.metrics))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    model = _load(args)
    metrics = model.evaluate(data=args.data, data_options=given(args, args.data_fields, "data_"))
    if args.json:
        _print_json(metrics)
    else:
        print(_format_metrics(metrics))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from namesmith.scoring.plot import plot_heatmap, plot_loss_curve

    model = _load(args)
    name = {"loss": "loss", "heatmap": "heatmap-counts" if args.annotate else "heatmap"}[args.what]
    output = args.output or str(Path(args.model_dir) / f"{name}.png")
    if args.what == "loss":
        history = model.history
        if len(history.train_loss) + len(history.val_loss) < 2:
            raise NamesmithError(f"{args.model_dir}: a {model.describe()} model has no loss curve to draw (it is "
                                 "fitted in one step by counting)" if model.model.counts_only else
                                 f"{args.model_dir}: too few loss values recorded to draw a curve")
        plot_loss_curve(history, output, title=f"{model.describe()} training loss")
    else:
        probs = model.transition_table()
        labels = [model.vocab.label(i) for i in range(model.vocab.size)]
        counts = model.pair_counts() if args.annotate else None
        what = "training pair counts" if args.annotate else "P(next | previous)"
        plot_heatmap(probs, labels, output, counts, title=f"{model.describe()}: {what}")
    print(output)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from namesmith.scoring.report import format_transitions

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    model = _load(args)
    rows = model.transitions(args.top)
    if args.json:
        _print_json([r.to_dict() for r in rows])
    else:
        print(f"strongest transitions of {args.model_dir} ({model.describe()}) beside the training data:")
        print(format_transitions(rows))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from namesmith.serve.limits import Limits
        from namesmith.serve.server import run_server
    except ImportError as e:
        raise ConfigError(f"serve needs the serve extra ({e.name} is missing): "
                          "pip install 'namesmith[serve]'") from None
    if "help" in args.limit:
        for field in dataclasses.fields(Limits):
            print(f"{field.name}={field.default}")
        return 0
    if args.api_key:
        log.warning("--api-key shows the key to every user of this machine (ps); NAMESMITH_API_KEY or --api-key-file "
                    "do not")
    run_server(args.model_dirs, host=args.host, port=args.port, api_key=args.api_key, api_key_file=args.api_key_file,
               limits=Limits.parse(args.limit), workers=args.workers, log_level="warning" if args.quiet else "info")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from namesmith.namemodel import NameModel

    model = NameModel.ensemble(args.models, out=args.out, combine=args.combine, overwrite=args.overwrite,
                               device=args.device, data=args.data)
    if args.json:
        _print_json({"model_dir": args.out, **model.info()})
        return 0
    weights = model.meta["model_config"]["weights"]
    print(f"combined {len(weights)} models ({args.combine}); saved to {args.out}")
    for member, weight in zip(model.meta["members"], weights):
        val = member["metrics"].get("val", {}).get("nll")
        print(f"  weight {weight:7.3f}  {member['description']:<24} val {'n/a' if val is None else f'{val:.4f}'}"
              f"  {member['directory'] or ''}")
    print(_format_metrics(model.metrics))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from namesmith.data.catalogue import list_datasets

    sets = list_datasets()
    if args.json:
        _print_json(sets)
        return 0
    for d in sets:
        labels = "; ".join(f"{k} ({len(v)} values)" if len(v) > 6 else f"{k}: {', '.join(v)}"
                           for k, v in d["labels"].items())
        print(f"{d['name']}: {d['description']}\n    {d['rows']:,} rows, {d['distinct_names']:,} distinct names; "
              f"labels {labels or 'none'}\n    licence {d['licence']}; source {d['source']}")
    return 0


def cmd_trend(args: argparse.Namespace) -> int:
    from pathlib import Path

    from namesmith.choosing.popularity import trend

    if len(args.names) > MAX_TREND_NAMES:
        raise ConfigError(f"trend draws at most {MAX_TREND_NAMES} names, got {len(args.names)}")
    too_long = next((name for name in args.names if len(name) > MAX_TREND_NAME_LENGTH), None)
    if too_long is not None:
        raise ConfigError(f"trend: a name is at most {MAX_TREND_NAME_LENGTH} characters, got {len(too_long):,} "
                          f"({too_long[:20]!r}...)")
    series = {name: trend(name, args.sex) for name in args.names}
    if args.json:
        _print_json([{"name": name, "series": [use.to_dict() for use in uses]} for name, uses in series.items()])
        return 0
    missing = [name for name, uses in series.items() if not uses]
    if len(missing) == len(series):
        raise ConfigError(f"trend: no births of {', '.join(map(repr, missing))}"
                          f"{' (' + args.sex + ')' if args.sex else ''} in the catalogue (us, israel): "
                          "nothing to draw")
    for name in missing:
        log.warning(f"trend: no births of {name!r}{' (' + args.sex + ')' if args.sex else ''} in the catalogue "
                    "(us, israel); not drawn")
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise ConfigError(f"{output}: exists; pass --overwrite to replace it, or -o another file", field="output")
    from namesmith.scoring.plot import plot_trend

    lines: dict[str, list[tuple[str, float]]] = {}
    for name, uses in series.items():
        for sex in sorted({use.sex for use in uses}):
            label = name if args.sex else f"{name} ({sex})"
            lines[label] = [(use.decade, float(getattr(use, args.measure.replace("-", "_"))))
                            for use in uses if use.sex == sex]
    ylabel = {"count": "births per decade", "rank": "rank (1 = the most given)",
              "per-million": "births per million of that sex"}[args.measure]
    plot_trend(lines, output, ylabel, title=f"{', '.join(series)} by decade", log_scale=args.measure != "rank",
               invert=args.measure == "rank")
    print(f"wrote {output}")
    return 0


COMMANDS = {"data": cmd_data, "serve": cmd_serve, "train": cmd_train, "ensemble": cmd_ensemble, "sample": cmd_sample,
            "score": cmd_score, "eval": cmd_eval, "calibrate": cmd_calibrate, "plot": cmd_plot, "report": cmd_report,
            "classify": cmd_classify, "trend": cmd_trend}


def error_line(e: NamesmithError) -> str:
    """The message, with the Python parameter it starts with replaced by the flag that sets it."""
    message, field = str(e), getattr(e, "field", None)
    if field and (message.startswith(field + " ") or message.startswith(field + ":")):
        message = option_name(field) + message[len(field):]
    return message


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse, reporting a bad option with the usage of the command it was given to."""
    command = next((a for a in argv if not a.startswith("-")), None)  # the only option before it, -q, takes no value
    parser = build_parser(_model_type_in(argv) if command == "train" else "ngram", command or "")
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
        command = sub.choices[args.command]
        owner = _owner_of(extra[0]) if args.command == "train" and extra[0].startswith("--") else None
        if owner:
            command.error(f"{extra[0].split('=')[0]} is an option of --model {owner}, not of --model {args.model}")
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None  # this process is the `namesmith` command (not a caller's main([...]))
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(format="namesmith: %(levelname)s: %(message)s", level=logging.INFO)
    try:
        args = parse(argv)
        args.quiet = getattr(args, "quiet", False)
        level = logging.WARNING if args.quiet else logging.INFO
        log.setLevel(level if _rank() == 0 else logging.ERROR)  # under torchrun rank 0 speaks for every rank
        return COMMANDS[args.command](args)
    except NamesmithError as e:
        where = f"rank {_rank()}: " if _rank() and not str(e).startswith("rank ") else ""
        print(f"namesmith: error: {where}{error_line(e)}", file=sys.stderr)
        if isinstance(e, DistributedError) and from_command_line:
            # leave at once: gloo's threads, still waiting on a rank that died or hangs, would abort the normal
            # shutdown after this line ("terminate called without an active exception", exit status -6)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_ERROR)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("namesmith: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `namesmith sample -n 1000 | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
