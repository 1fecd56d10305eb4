"""`namesmith data`, `namesmith trend` and `namesmith variants`: the built-in data sets, how often names were given
by decade, and the known names that sound like a name."""

from __future__ import annotations

import argparse
import logging

from namesmith.cli.common import print_json
from namesmith.cli.options import common_options
from namesmith.core.errors import ConfigError

log = logging.getLogger("namesmith")

TREND_MEASURES = ("count", "rank", "per-million")
MAX_TREND_NAMES = 20  # names one trend figure draws, at most
MAX_TREND_NAME_LENGTH = 64


def add_trend(sub: argparse._SubParsersAction, building: bool) -> None:
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
    tr.set_defaults(run=cmd_trend)


MAX_VARIANTS = 100  # variants of one name, at most


def add_variants(sub: argparse._SubParsersAction, building: bool) -> None:
    va = sub.add_parser("variants", help="known names that sound like a name: its other spellings, ranked",
                        description="The catalogue's known names (US 1880-2017) that sound like each NAME, closest "
                                    "first: the same Double Metaphone key, then the closest spelling, then the "
                                    "better-known name (Aiden: Aidan, Ayden, Aden ...). Works for new names too. "
                                    "Needs the phonetic extra: pip install 'namesmith[phonetic]'.")
    va.add_argument("names", nargs="+", metavar="NAME", help=f"names to sound out (at most {MAX_TREND_NAMES})")
    va.add_argument("-n", "--num", type=int, default=10, help=f"variants per name (1-{MAX_VARIANTS}, default: 10)")
    va.add_argument("--json", action="store_true", help="print JSON")
    va.set_defaults(run=cmd_variants)


def cmd_variants(args: argparse.Namespace) -> int:
    from namesmith.choosing.phonetic import phonetic_keys, spelling_variants

    if len(args.names) > MAX_TREND_NAMES:
        raise ConfigError(f"variants: at most {MAX_TREND_NAMES} names at once, got {len(args.names)}")
    if not 1 <= args.num <= MAX_VARIANTS:
        raise ConfigError(f"--num must be from 1 to {MAX_VARIANTS}, got {args.num}")
    found = {}
    for name in args.names:
        if len(name) > MAX_TREND_NAME_LENGTH:
            raise ConfigError(f"variants: a name is at most {MAX_TREND_NAME_LENGTH} characters, got {len(name):,} "
                              f"({name[:20]!r}...)")
        if not phonetic_keys(name):
            raise ConfigError(f"variants: {name!r} has no letters to sound out")
        found[name] = spelling_variants(name, args.num)
    if args.json:
        print_json([{"name": name, "keys": list(phonetic_keys(name)), "variants": [v.to_dict() for v in variants]}
                    for name, variants in found.items()])
        return 0
    for name, variants in found.items():
        print(f"{name} ({' or '.join(phonetic_keys(name))}): "
              + (", ".join(f"{v.name} ({v.births:,})" for v in variants) or "no known name sounds like it"))
    return 0


def add_data(sub: argparse._SubParsersAction, building: bool) -> None:
    d = sub.add_parser("data", help="list the built-in data sets",
                       description="The built-in data sets (--data NAME): rows, distinct names, labels, licence and "
                                   "source. See namesmith/catalogue/DATA_CARD.md for how each was built.")
    common_options(d)
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(run=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    from namesmith.data.catalogue import list_datasets

    sets = list_datasets()
    if args.json:
        print_json(sets)
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
        print_json([{"name": name, "series": [use.to_dict() for use in uses]} for name, uses in series.items()])
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
