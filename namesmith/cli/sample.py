"""`namesmith sample`: names drawn from a trained model, streamed as they are found, with their summary."""

from __future__ import annotations

import argparse
import sys

from namesmith.cli.common import load_model, print_json, warn_unfinished
from namesmith.cli.options import (
    WHERE_HELP,
    add_field_options,
    given,
    model_dir_option,
    moved_data_option,
    option_name,
)
from namesmith.core.errors import NamesmithError


def add_sample(sub: argparse._SubParsersAction, building: bool) -> None:
    s = sub.add_parser("sample", help="print generated names",
                       description="Print names drawn from a trained model; the same --seed gives the same names. "
                                   "Constraints hold on every name printed: bigram and n-gram models are conditioned "
                                   "on them exactly, other models are sampled and filtered within the budget. Names "
                                   "stream out as they are found. A summary (how many names are training, held-out "
                                   "or new words) goes to stderr.")
    model_dir_option(s)
    if building:
        from namesmith.generation.config import GenerateConfig

        g = s.add_argument_group("generation (constraints hold on every name printed; the budget ends the search)")
        s.set_defaults(generate_fields=add_field_options(g, GenerateConfig, prefix="gen_"))
    moved_data_option(s, " (for --novel and the summary)")
    s.add_argument("--where", action="append", metavar="LABEL=VALUE", help=WHERE_HELP)
    s.add_argument("--guidance", type=float, default=0.0, metavar="G",
                   help="with --where: names more typical of those labels, drawn from P(c | where)^(1+G) / "
                        "P(c)^G at every step (classifier-free guidance; 0, the model's own P(name | where), unless "
                        "given)")
    s.add_argument("--details", action="store_true",
                   help="beside each name: known or new, its popularity in the catalogue, its nicknames")
    s.add_argument("--json", action="store_true", help="print a JSON object (names and summary; with --details, "
                                                       "each name's facts too)")
    s.set_defaults(run=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    from namesmith.core.conditional import parse_where_args
    from namesmith.generation.config import asked

    model = load_model(args)
    options = given(args, args.generate_fields, "gen_")
    n = options.pop("num", 20)
    where = parse_where_args(args.where)
    surname, alliteration = asked(options.get("surname")), options.get("alliteration", "any")  # "": none
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
            print_json(out)
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
    warn_unfinished(stats, args.quiet)
    if not stats.complete:
        raise NamesmithError(stats.message(option_name))
    return 0
