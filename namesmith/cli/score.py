"""`namesmith score` and `namesmith classify`: how name-like given names are, and which labels fit them."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from namesmith.cli.common import load_model, names_given, print_json
from namesmith.cli.options import WHERE_HELP, data_options, given, model_dir_option, names_arguments
from namesmith.core.errors import ConfigError


def add_score(sub: argparse._SubParsersAction, building: bool) -> None:
    sc = sub.add_parser("score", help="how name-like are these names?",
                        description="Per name: total log-probability (end token included), mean negative "
                                    "log-likelihood per character, and the percentage of training names that are at "
                                    "most as name-like (by NLL per character).")
    model_dir_option(sc)
    names_arguments(sc, "score")
    sc.add_argument("--sort", action="store_true", help="rank from most to least name-like")
    sc.add_argument("--where", action="append", metavar="LABEL=VALUE",
                    help="score P(name | labels) and place it among the training names of those labels; " + WHERE_HELP)
    sc.add_argument("--json", action="store_true", help="print JSON")
    sc.set_defaults(data_fields=data_options(sc, "the training word list, if it moved since training "
                                                  "(for percentiles)") if building else [])
    sc.set_defaults(run=cmd_score)


def add_classify(sub: argparse._SubParsersAction, building: bool) -> None:
    c = sub.add_parser("classify", help="which label values fit these names (conditional models)",
                       description="For each name, the posterior over each label the model is conditioned on: "
                                   "P(value | name) ∝ P(name | value) · P(value), P(value) being the value's share of "
                                   "the training data. Prints e.g. 'leslie: sex F 61% M 39%; decade 1950s 18% ...'.")
    model_dir_option(c)
    names_arguments(c, "classify")
    c.add_argument("--top", type=int, default=3, metavar="N", help="values shown per label (default: 3)")
    c.add_argument("--json", action="store_true", help="print JSON: every value's probability")
    c.set_defaults(run=cmd_classify)


def cmd_score(args: argparse.Namespace) -> int:
    from namesmith.scoring.score import format_scores, rank

    names = names_given(args, "score", given(args, args.data_fields, "data_"))
    from namesmith.core.conditional import parse_where_args

    model = load_model(args)
    scores = model.score(names, where=parse_where_args(args.where))
    if args.sort:
        scores = rank(scores)
    _, why = model.training_split()
    if args.json:
        print_json({"scores": [s.to_dict() for s in scores], "percentiles_unavailable": why})
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
    names = names_given(args, "classify")
    model = load_model(args)
    results = model.classify(names)
    if args.json:
        print_json({"labels": model.labels, "names": [{"name": r.name, "posterior": r.labels, "error": r.error}
                                                       for r in results]})
    else:
        print(format_classification([dataclasses.replace(r, name=shown) for r, shown in
                                     zip(results, model.shown(names))], args.top))
    return 0
