"""The `namesmith` command: parse → one `NameModel` call → print.

Each command group has its module (train, sample, score, evaluate, catalogue, serve); this one builds
the parser from them, parses, runs the command and turns a library error into one line.

Exit status: 0 on success, 1 for a namesmith error (bad input, options or checkpoint; one line
on stderr), 2 for a command-line usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from namesmith.cli.catalogue import add_data, add_trend, add_variants
from namesmith.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, process_rank
from namesmith.cli.evaluate import add_calibrate, add_eval, add_plot, add_report
from namesmith.cli.options import option_name
from namesmith.cli.sample import add_sample
from namesmith.cli.score import add_classify, add_score
from namesmith.cli.serve import add_serve
from namesmith.cli.train import add_ensemble, add_train, model_type_in, owner_of
from namesmith.core.errors import DistributedError, NamesmithError

log = logging.getLogger("namesmith")

# the commands, in the order `namesmith --help` lists them
PARSERS = (add_train, add_sample, add_score, add_eval, add_calibrate, add_plot, add_trend, add_variants, add_serve,
           add_classify, add_ensemble, add_data, add_report)


def build_parser(model_type: str = "ngram", command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command. `command`, when given, is the one to be parsed: the options that need
    heavy imports are built only for their command (train's the model classes and sample's GenerateConfig
    import torch, the data options NumPy), so `namesmith --help` and the other commands start without them."""
    parser = argparse.ArgumentParser(prog="namesmith", description="Learn what words of a kind look like, one "
                                                                   "character at a time, and make more of them.")
    parser.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in PARSERS:
        name = add.__name__.removeprefix("add_")
        if add is add_train:
            add_train(sub, model_type, options=command is None or command == "train")
        else:
            add(sub, command is None or command == name)
    return parser


def error_line(e: NamesmithError) -> str:
    """The message, with the Python parameter it starts with replaced by the flag that sets it."""
    message, field = str(e), getattr(e, "field", None)
    if field and (message.startswith(field + " ") or message.startswith(field + ":")):
        message = option_name(field) + message[len(field):]
    return message


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse, reporting a bad option with the usage of the command it was given to."""
    command = next((a for a in argv if not a.startswith("-")), None)  # the only option before it, -q, takes no value
    parser = build_parser(model_type_in(argv) if command == "train" else "ngram", command or "")
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
        command = sub.choices[args.command]
        owner = owner_of(extra[0]) if args.command == "train" and extra[0].startswith("--") else None
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
        log.setLevel(level if process_rank() == 0 else logging.ERROR)  # under torchrun rank 0 speaks for every rank
        return args.run(args)
    except NamesmithError as e:
        where = f"rank {process_rank()}: " if process_rank() and not str(e).startswith("rank ") else ""
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
