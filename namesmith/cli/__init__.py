"""The `namesmith` command line: one module per command group, each a thin caller of `NameModel`
(namesmith.cli.command builds the parser and runs a command)."""

from namesmith.cli.command import build_parser, main, parse
from namesmith.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main", "parse"]
