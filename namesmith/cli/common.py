"""What the commands of `namesmith` share: exit statuses, loading a model, reading names, printing results."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from namesmith.cli.options import option_name
from namesmith.core.errors import ConfigError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def format_metrics(metrics: dict[str, dict[str, Any]]) -> str:
    lines = []
    for part, m in metrics.items():
        if m["nll"] is None:
            lines.append(f"{part:>5}: (no words)")
        else:
            per_count = f"  per count {m['nll_per_count']:.4f}" if m.get("nll_per_count") is not None else ""
            lines.append(f"{part:>5}: nll {m['nll']:.4f}  perplexity {m['perplexity']:.3f}{per_count}  "
                         f"({plural(m['n_words'], 'word')}, {plural(m['n_chars'], 'character')})")
    return "\n".join(lines)


def process_rank() -> int:
    """This process's rank when torchrun started it, else 0: only rank 0 prints progress and results."""
    return int(os.environ.get("RANK", "0"))


def warn_unfinished(stats: Any, quiet: bool) -> None:
    """Say on stderr how many drawn names hit the length limit and were dropped (never silently)."""
    line = stats.unfinished_message(option_name)
    if line and not quiet:
        print(f"namesmith: {line}", file=sys.stderr)


def one_thread() -> None:
    """Inference runs on one torch thread unless OMP_NUM_THREADS says otherwise: with more, OpenMP's threads
    spin-wait for each other, and beside a busy core classifying one name took 66-80 s instead of 6."""
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"  # read by torch when it is imported after this
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)


def load_model(args: argparse.Namespace):  # noqa: ANN202
    one_thread()
    from namesmith.namemodel import NameModel

    return NameModel.load(args.model_dir, device=args.device, data=getattr(args, "data", None))


def names_given(args: argparse.Namespace, command: str, data_options: dict[str, Any] | None = None) -> list[str]:
    """The names given as arguments, then those of --file LIST (read as they are: any length, case kept)."""
    from namesmith.data.words import DataConfig, load_words

    names = list(args.names)
    if args.file:
        names += load_words(DataConfig(path=args.file, **{"max_line_length": 10**6, "case": "exact",
                                                          **(data_options or {})}))
    if not names:
        raise ConfigError(f"{command} needs names: give them as arguments or with --file LIST")
    return names
