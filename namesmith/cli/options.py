"""The options of the `namesmith` command: those generated from config dataclasses, and those many commands share.

Options are generated from the config dataclasses (`DataConfig`, `TrainConfig`, `GenerateConfig`
and each model type's config): their fields give the names, types and defaults, the tables below
only the help text. Library errors name the Python parameter (`field`); `option_name` spells it
as the flag that sets it.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

DEFAULT_MODEL_DIR = "out"

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
METAVARS = {"time_budget": "SECONDS", "condition": "LABEL"}  # GenerateConfig's fields say their own (`Option`)
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
    namesmith.data.tables needs NumPy). A field with an `Option` (GenerateConfig's) says its own."""
    from namesmith.core.casing import CASES
    from namesmith.core.config import BATCHINGS, BIGRAM_MODES

    if name == "weighting":
        from namesmith.data.tables import WEIGHTINGS

        return WEIGHTINGS
    return {"mode": BIGRAM_MODES, "batching": BATCHINGS, "case": CASES}.get(name)


def _show(value: Any) -> str | None:
    """A default worth printing in help, or None (unset, empty, off)."""
    if value is None or value is False or value == "" or value == () or value == []:
        return None
    return str(value)


def add_field_options(group: argparse._ArgumentGroup, cls: type, help_text: dict[str, str] | None = None, *,
                      prefix: str = "",
                      defaults: dict[str, Any] | None = None, required_default: bool = False,
                      skip: tuple[str, ...] = ()) -> list[str]:
    """One option per dataclass field of `cls`; returns the field names.

    A field's help, choices and metavar come from its `Option` (namesmith.generation.config's `option`)
    when it has one, else from `help_text`, `_choices` and METAVARS. Options default to None ("not given")
    unless `required_default`, so the dataclass keeps its own
    defaults; `defaults` are shown in the help (e.g. a model type's real training defaults).
    """
    names = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = _show((defaults or {}).get(f.name, default))
        how = f.metadata.get("option")
        text = how.help if how else (help_text or {}).get(f.name, "")
        choices = how.choices if how and how.choices else _choices(f.name)
        metavar = how.metavar if how and how.metavar else METAVARS.get(f.name)
        if shown is not None:
            text = f"{text} (default: {shown})".strip()
        flags = [flag(f.name)] + ([SHORT_FLAGS[f.name]] if f.name in SHORT_FLAGS else [])
        dest = prefix + f.name
        kind = str(f.type)
        if "bool" in kind:
            group.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction if default else "store_true",
                               default=default if required_default else None, help=text)
        elif "tuple" in kind:
            group.add_argument(*flags, dest=dest, action="append", default=None, metavar=metavar or "TEXT", help=text)
        else:
            convert = int if kind.startswith("int") else float if kind.startswith("float") else (
                parse_scalar if "str" in kind and "float" in kind else str)
            if kind.startswith("str") and "float" not in kind:
                convert = str
            group.add_argument(*flags, dest=dest, type=convert, choices=choices,
                               default=default if required_default else None,
                               metavar=None if choices else metavar or ("N" if convert is int else "VALUE"), help=text)
        names.append(f.name)
    return names


def given(args: argparse.Namespace, names: list[str], prefix: str = "") -> dict[str, Any]:
    """The options among `names` that were given on the command line."""
    return {name: getattr(args, prefix + name) for name in names if getattr(args, prefix + name) is not None}


def common_options(parser: argparse.ArgumentParser) -> None:
    """Options every command takes, before or after its name."""
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print warnings and errors only")


def data_options(parser: argparse.ArgumentParser, what: str, split: bool = False) -> list[str]:
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


def model_dir_option(p: argparse.ArgumentParser) -> None:
    common_options(p)
    p.add_argument("--model-dir", "-m", default=DEFAULT_MODEL_DIR, metavar="DIR",
                   help=f"trained model directory (default: {DEFAULT_MODEL_DIR})")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")


def names_arguments(p: argparse.ArgumentParser, command: str) -> None:
    """The names a command works on: as arguments, and from a word list (read by `names_given`)."""
    p.add_argument("names", nargs="*", metavar="NAME", help=f"names to {command}")
    p.add_argument("--file", metavar="LIST", help=f"also {command} every name of this word list (one per line)")


def moved_data_option(p: argparse.ArgumentParser, why: str = "") -> None:
    """--data for a command that reads the model's training list: only needed where the list moved."""
    p.add_argument("--data", metavar="PATH", help="the training word list, if it moved since training" + why)
