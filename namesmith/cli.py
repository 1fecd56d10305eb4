"""The `namesmith` command: a thin layer over the Python API.

Exit status: 0 on success, 1 for a namesmith error (bad input, options or checkpoint; one line
on stderr), 2 for a command-line usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from namesmith.errors import ConfigError, NamesmithError

log = logging.getLogger("namesmith")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
DEFAULT_MODEL_DIR = "out"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _parse_scalar(text: str) -> Any:
    """A model option given on the command line: int, float, or string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _add_model_options(parser: argparse.ArgumentParser, model_type: str) -> list[str]:
    """One --option per field of the model's config dataclass; returns the field names."""
    from namesmith.models import model_class

    cls = model_class(model_type)
    group = parser.add_argument_group(f"{model_type} model options (see --model NAME --help for others)")
    names = []
    for f in dataclasses.fields(cls.config_class):
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            group.add_argument(flag, dest=f"model_{f.name}", action=argparse.BooleanOptionalAction, default=None,
                               help=f"(default {default})")
        else:
            kind = type(default) if isinstance(default, (int, float)) else _parse_scalar
            group.add_argument(flag, dest=f"model_{f.name}", type=kind, default=None, metavar="VALUE",
                               help=f"(default {'from the data' if default is None else default})")
        names.append(f.name)
    return names


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", default="builtin", metavar="PATH",
                       help="word list, one name per line (UTF-8); 'builtin' is the US baby names of 2017")
    group.add_argument("--lowercase", action="store_true", help="lowercase every name")
    group.add_argument("--encoding", default="utf-8", help="text encoding of the word list")
    group.add_argument("--max-line-length", type=int, default=64,
                       help="skip (with a warning) lines longer than this many characters")
    group.add_argument("--dedupe", action="store_true", help="drop repeated names (the first is kept)")
    group.add_argument("--split-seed", type=int, default=42, help="seed of the 80/10/10 train/val/test shuffle")
    group.add_argument("--no-split", dest="split", action="store_false",
                       help="train and evaluate on every word (no held-out sets)")


def _data_config(args: argparse.Namespace):  # noqa: ANN202
    from namesmith.data import DataConfig

    return DataConfig(path=args.data, lowercase=args.lowercase, encoding=args.encoding,
                      max_line_length=args.max_line_length, dedupe=args.dedupe,
                      split_seed=args.split_seed, split=args.split)


def _train_parser(sub: argparse._SubParsersAction, model_type: str) -> argparse.ArgumentParser:
    from namesmith.config import BATCHINGS, BIGRAM_MODES
    from namesmith.models import MODEL_TYPES

    p = sub.add_parser("train", formatter_class=_Formatter, help="train a model and save it",
                       description="Train a model on a word list, save it to --out, print its held-out "
                                   "loss and a few generated names.")
    p.add_argument("--model", default="bigram", choices=list(MODEL_TYPES), help="model type")
    p.add_argument("--out", default=DEFAULT_MODEL_DIR, metavar="DIR", help="model directory to write")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run saved in --out")
    p.add_argument("--samples", type=int, default=10, metavar="N", help="names to print after training")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    _add_data_options(p)
    t = p.add_argument_group("training (unset values take the model type's defaults)")
    t.add_argument("--max-steps", "--epochs", type=int, help="epochs (bigram) or optimiser steps (neural models)")
    t.add_argument("--learning-rate", "--lr", type=float, help="(initial) learning rate")
    t.add_argument("--learning-rate-end", type=float, help="final learning rate of the decay")
    t.add_argument("--batch-size", type=int, help="words per optimiser step (neural models)")
    t.add_argument("--weight-decay", type=float, help="L2 penalty (bigram) or AdamW weight decay")
    t.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up (neural models)")
    t.add_argument("--grad-clip", type=float, help="clip the gradient norm to this (neural models)")
    t.add_argument("--eval-every", type=int, help="steps between validation evaluations")
    t.add_argument("--patience", type=int, help="stop after this many evaluations without improvement")
    t.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop training after this long")
    t.add_argument("--ema", type=float, metavar="DECAY",
                   help="evaluate and keep an exponential moving average of the weights (0: off)")
    t.add_argument("--ngram-mix", type=int, metavar="ORDER",
                   help="neural models: combine the trained network with a Kneser-Ney n-gram of this order, "
                        "weights fitted on the validation split (0: the network alone)")
    t.add_argument("--batching", choices=BATCHINGS,
                   help="neural models: words drawn at random, or words of about the same length together "
                        "(less padding, faster steps, same objective)")
    t.add_argument("--mode", default="full-batch", choices=BIGRAM_MODES,
                   help="bigram training: full-batch (fast, from pair counts), one-hot (the seed's literal "
                        "loop, same result, slower); per-example-nll and per-example-l1 are the seed's "
                        "one-example-at-a-time teaching loops, for study only (slow: use --subset)")
    t.add_argument("--subset", type=int, metavar="N", help="per-example modes: use only the first N pairs")
    t.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="bigram models: count the word list in blocks instead of loading it (default: only for "
                        "files of 256 MB or more); the split is then by a hash of each word's index, about 80/10/10")
    t.add_argument("--seed", type=int, default=1337, help="random seed of training")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto: cuda, then mps, then cpu)")
    p.set_defaults(model_fields=_add_model_options(p, model_type))
    return p


def _model_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", "-m", default=DEFAULT_MODEL_DIR, metavar="DIR", help="trained model directory")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps")


def build_parser(model_type: str = "bigram") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="namesmith", formatter_class=_Formatter,
                                     description="Learn what words of a kind look like, one character at a "
                                                 "time, and make more of them.")
    parser.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub, model_type)

    s = sub.add_parser("sample", formatter_class=_Formatter, help="print generated names",
                       description="Print names drawn from a trained model; the same --seed gives the same names. "
                                   "Constraints hold on every name printed: bigram and small n-gram models are "
                                   "conditioned on them exactly, other models are sampled and filtered within "
                                   "the budget. A summary (how many names are training, held-out or new words) "
                                   "goes to stderr.")
    _model_dir_option(s)
    s.add_argument("-n", "--num", type=int, default=20, help="how many names")
    s.add_argument("--seed", type=int, help="random seed (default: a new one each run)")
    s.add_argument("--temperature", type=float, default=1.0,
                   help="<1 likelier names (towards greedy as it nears 0), >1 wilder ones")
    s.add_argument("--top-k", type=int, help="draw only from the k likeliest next characters")
    s.add_argument("--top-p", type=float, help="draw only from the likeliest next characters holding this mass")
    c = s.add_argument_group("constraints (each holds on every name printed)")
    c.add_argument("--starts-with", default="", metavar="PREFIX", help="every name begins with PREFIX")
    c.add_argument("--ends-with", default="", metavar="SUFFIX", help="every name ends with SUFFIX")
    c.add_argument("--contains", action="append", default=[], metavar="TEXT",
                   help="every name contains TEXT (repeatable: all of them)")
    c.add_argument("--excludes", action="append", default=[], metavar="TEXT",
                   help="no name contains TEXT (repeatable: none of them)")
    c.add_argument("--regex", metavar="PATTERN", help="Python regular expression found in every name (re.search; "
                                                      "anchor with ^ and $ to match the whole name)")
    c.add_argument("--min-len", type=int, metavar="N", help="shortest name, in characters")
    c.add_argument("--max-len", "--max-length", dest="max_len", type=int, metavar="N",
                   help="longest name (default: twice the longest training name, at least 32)")
    c.add_argument("--novel", action="store_true", help="never print a word of the training data (any split)")
    c.add_argument("--unique", action="store_true", help="never print the same name twice")
    b = s.add_argument_group("budget (stop with a message when the constraints are too rare)")
    b.add_argument("--max-tries", type=int, metavar="N",
                   help="names drawn at most (default: 100 per requested name + 100,000)")
    b.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop searching after this long")
    s.add_argument("--data", metavar="PATH", help="the training word list, if it moved since training "
                                                  "(for --novel and the summary)")
    s.add_argument("--json", action="store_true", help="print a JSON object (names and summary) instead of "
                                                       "one name per line")

    sc = sub.add_parser("score", formatter_class=_Formatter, help="how name-like are these names?",
                        description="Per name: total log-probability (end token included), mean negative "
                                    "log-likelihood per character, and the percentage of training names that "
                                    "are at most as name-like (by NLL per character).")
    _model_dir_option(sc)
    sc.add_argument("names", nargs="*", metavar="NAME", help="names to score")
    sc.add_argument("--file", metavar="LIST", help="also score every name of this file (one per line)")
    sc.add_argument("--sort", action="store_true", help="rank from most to least name-like")
    sc.add_argument("--data", metavar="PATH", help="the training word list, if it moved since training "
                                                   "(for percentiles)")
    sc.add_argument("--json", action="store_true", help="print JSON")

    e = sub.add_parser("eval", formatter_class=_Formatter, help="held-out loss of a trained model",
                       description="Mean negative log-likelihood per character (end token included) and "
                                   "perplexity on the train/val/test split the model was trained with, or on "
                                   "every word of --data FILE when FILE is not the training list.")
    _model_dir_option(e)
    e.add_argument("--data", metavar="PATH", help="word list to evaluate (default: the model's own data split)")
    e.add_argument("--json", action="store_true", help="print JSON")

    pl = sub.add_parser("plot", formatter_class=_Formatter, help="draw the heat map or the loss curve",
                        description="Write a PNG: the bigram probability table as a heat map, or the loss curve.")
    _model_dir_option(pl)
    pl.add_argument("what", nargs="?", default="heatmap", choices=["heatmap", "loss"], help="which figure")
    pl.add_argument("-o", "--output", metavar="FILE", help="PNG to write (default: MODEL_DIR/WHAT.png)")
    pl.add_argument("--annotate", action="store_true",
                    help="heat map of training pair counts, each cell labelled with its pair and count")
    pl.add_argument("--data", metavar="PATH", help="the training word list, if it moved since training")

    r = sub.add_parser("report", formatter_class=_Formatter, help="strongest transitions vs the training data",
                       description="The seed's sanity check: the model's largest next-character probabilities "
                                   "beside their frequency in the training words.")
    _model_dir_option(r)
    r.add_argument("--top", type=int, default=10, help="how many transitions")
    r.add_argument("--data", metavar="PATH", help="the training word list, if it moved since training")
    r.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _model_type_in(argv: list[str]) -> str:
    """The --model value of a train command, read ahead so its options can be added."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="bigram")
    known, _ = pre.parse_known_args(argv)
    from namesmith.models import MODEL_TYPES

    return known.model if known.model in MODEL_TYPES else "bigram"


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, bool]]:
    """Turn the first SIGINT/SIGTERM into a clean stop request; a second one aborts."""
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        flag["stop"] = True
        log.warning("stopping after the current step and saving a resumable checkpoint "
                    "(press Ctrl-C again to abort)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _flag(field: str) -> str:
    """The option of a library parameter (library errors name the parameter, see NamesmithError.field)."""
    return "-n/--num" if field == "num" else "--" + field.replace("_", "-")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _format_metrics(metrics: dict[str, dict[str, Any]]) -> str:
    lines = []
    for part, m in metrics.items():
        if m["nll"] is None:
            lines.append(f"{part:>5}: (no words)")
        else:
            lines.append(f"{part:>5}: nll {m['nll']:.4f}  perplexity {m['perplexity']:.3f}  "
                         f"({m['n_words']} words, {m['n_chars']} characters)")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from namesmith.config import TrainConfig
    from namesmith.generate import GenerateConfig, generate
    from namesmith.train import train

    if args.samples < 0:
        raise ConfigError(f"--samples must not be negative, got {args.samples}")
    train_config = TrainConfig(
        max_steps=args.max_steps, learning_rate=args.learning_rate, learning_rate_end=args.learning_rate_end,
        batch_size=args.batch_size, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        grad_clip=args.grad_clip, eval_every=args.eval_every, patience=args.patience,
        time_budget=args.time_budget, ema=args.ema, batching=args.batching, ngram_mix=args.ngram_mix,
        mode=args.mode, subset=args.subset, seed=args.seed, device=args.device)
    model_config = {name: getattr(args, f"model_{name}") for name in args.model_fields
                    if getattr(args, f"model_{name}") is not None}
    data = _data_config(args)
    bar = tqdm(total=None, desc=f"training {args.model}", unit="step", disable=None, leave=False)
    with _stop_on_signals() as flag:

        def progress(step: int, total: int, metrics: dict[str, float]) -> bool:
            if bar.total != total:
                bar.total = total
            bar.n = step
            if "loss" in metrics:
                bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items() if k in ("loss", "val_loss")},
                                refresh=False)
            bar.refresh()
            return flag["stop"]

        result = train(args.model, data, train_config, model_config, out=args.out, resume=args.resume,
                       callback=progress, stream=args.stream)
    bar.close()
    samples = generate(result.model, result.vocab, GenerateConfig(num=args.samples, seed=args.seed),
                       max_word_length=result.meta["data"]["max_word_length"])
    names = samples.names
    if args.json:
        _print_json({"model_dir": args.out, "model_type": args.model, "metrics": result.metrics,
                     "steps": result.history.steps, "seconds": result.history.seconds,
                     "stop_reason": result.history.stop_reason, "samples": names,
                     "unfinished_samples": samples.unfinished,
                     "metrics_without_ngram": result.meta.get("metrics_without_ngram")})
    else:
        status = result.history.stop_reason
        print(f"trained {args.model} for {result.history.steps} steps in {result.history.seconds:.2f} s "
              f"({status}); saved to {args.out}")
        if status == "interrupted":
            data_flag = "" if args.data == "builtin" else f" --data {shlex.quote(args.data)}"
            print(f"resume with: namesmith train --model {args.model}{data_flag} --out {shlex.quote(args.out)} "
                  "--resume")
        print(_format_metrics(result.metrics))
        alone = result.meta.get("metrics_without_ngram")
        if alone:  # see namesmith.models.ngram_mix
            a, b = result.model.config_dict()["ngram_mix"]["weights"]
            print(f"the network alone, before it was combined with the order-{result.model.ngram.config.order} "
                  f"n-gram (weights {a:.2f} and {b:.2f}; --ngram-mix 0 keeps it alone):\n{_format_metrics(alone)}")
        if names:
            print("samples:")
            print("\n".join(names))
    # interrupted (SIGINT/SIGTERM) but saved resumably: exit 130 so scripts do not mistake it for done
    return EXIT_INTERRUPTED if result.history.stop_reason == "interrupted" else 0


def _load(args: argparse.Namespace):  # noqa: ANN202
    from namesmith.checkpoint import load_checkpoint
    from namesmith.device import resolve_device

    return load_checkpoint(args.model_dir, resolve_device(args.device))


def _training_corpus(ckpt: Any, data_path: str | None):  # noqa: ANN202
    """The word list a checkpoint was trained on, split as it was (its fingerprint is checked)."""
    from namesmith.data import Corpus
    from namesmith.train import words_for_checkpoint

    record = ckpt.meta["data"]
    words = words_for_checkpoint(ckpt.meta, data_path)
    return Corpus.from_words(words, seed=record["split_seed"], vocab=ckpt.vocab, split=record.get("split", True))


def _training_split(ckpt: Any, data_path: str | None):  # noqa: ANN202
    """The checkpoint's train/val/test words, or (None, why not) when the word list is unavailable."""
    try:
        return _training_corpus(ckpt, data_path).split, None
    except NamesmithError as e:
        return None, str(e)


def cmd_sample(args: argparse.Namespace) -> int:
    from namesmith.generate import GenerateConfig, generate, novelty_summary

    config = GenerateConfig(num=args.num, seed=args.seed, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, starts_with=args.starts_with, ends_with=args.ends_with,
                            contains=tuple(args.contains), excludes=tuple(args.excludes), regex=args.regex,
                            min_len=args.min_len, max_len=args.max_len, novel=args.novel, unique=args.unique,
                            max_tries=args.max_tries, time_budget=args.time_budget)
    ckpt = _load(args)
    split, why = _training_split(ckpt, args.data)
    if args.novel and split is None:
        raise ConfigError(f"--novel needs the training word list: {why}")
    known = None if split is None else {w for part in split.parts().values() for w in part}
    result = generate(ckpt.model, ckpt.vocab, config, max_word_length=ckpt.meta["data"]["max_word_length"],
                      known_words=known)
    summary = novelty_summary(result.names, split, why)
    if args.json:
        _print_json({"names": result.names, "summary": summary.to_dict(), "generation": result.to_dict()})
    else:
        sys.stdout.write("".join(name + "\n" for name in result.names))
        sys.stdout.flush()
        if not args.quiet:
            print(summary.line(), file=sys.stderr)
    if not result.complete:
        raise NamesmithError(result.message(_flag))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from namesmith.data import decode_text, parse_words, read_file_bytes
    from namesmith.score import format_scores, rank, reference_scores, score_names

    names = list(args.names)
    if args.file:
        names += parse_words(decode_text(read_file_bytes(args.file), args.file), args.file, max_line_length=10**9)
    if not names:
        raise ConfigError("score needs names: give them as arguments or with --file LIST")
    ckpt = _load(args)
    if ckpt.meta["data"].get("lowercase"):
        names = [n.lower() for n in names]  # the model was trained on lowercased names
    split, why = _training_split(ckpt, args.data)
    reference = None if split is None else reference_scores(ckpt.model, split.train, ckpt.vocab)
    scores = score_names(ckpt.model, ckpt.vocab, names, reference)
    if args.sort:
        scores = rank(scores)
    if args.json:
        _print_json({"scores": [s.to_dict() for s in scores], "percentiles_unavailable": why})
    else:
        print(format_scores(scores))
        if why and not args.quiet:
            print(f"percentiles not available: {why}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from namesmith.data import fingerprint, load_words
    from namesmith.evaluate import evaluate
    from namesmith.train import evaluate_splits

    ckpt = _load(args)
    if ckpt.meta["data"].get("streamed") and (args.data is None or
                                              fingerprint(args.data) == ckpt.meta["data"]["sha256"]):
        from namesmith.counting import evaluate_streamed  # the hash split of a streamed list

        metrics = evaluate_streamed(ckpt.model, ckpt.vocab, ckpt.meta, args.data)
    elif args.data is None or fingerprint(args.data) == ckpt.meta["data"]["sha256"]:
        metrics = evaluate_splits(ckpt.model, _training_corpus(ckpt, args.data))
    else:
        words = load_words(args.data, lowercase=ckpt.meta["data"]["lowercase"])
        unknown = sorted({c for w in words for c in ckpt.vocab.unknown_chars(w)})
        if unknown:
            raise NamesmithError(f"{args.data}: characters {''.join(unknown)!r} are not in the model's vocabulary")
        metrics = {"all": evaluate(ckpt.model, words, ckpt.vocab).to_dict()}
    if args.json:
        _print_json(metrics)
    else:
        print(_format_metrics(metrics))
    return 0


def _bigram_table(ckpt: Any, what: str):  # noqa: ANN202
    probs = getattr(ckpt.model, "transition_probs", None)
    if probs is None:
        raise ConfigError(f"{what} shows a bigram table; a {ckpt.meta['model_type']} model has none "
                          "(use a bigram or bigram-counts model)")
    return probs().detach().cpu()


def _train_pair_counts(ckpt: Any, data_path: str | None):  # noqa: ANN202
    from namesmith.models.bigram import count_pairs

    corpus = _training_corpus(ckpt, data_path)
    x, y = corpus.tensors("train")
    return count_pairs(x, y, ckpt.vocab.size)


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from namesmith.history import TrainHistory
    from namesmith.plot import plot_heatmap, plot_loss_curve

    ckpt = _load(args)
    output = args.output or str(Path(args.model_dir) / f"{args.what}.png")
    if args.what == "loss":
        history = TrainHistory.from_dict(ckpt.meta.get("history", {}))
        if not history.train_loss and not history.val_loss:
            raise NamesmithError(f"{args.model_dir}: no loss history recorded (a {ckpt.meta['model_type']} "
                                 "model is fitted by counting)")
        plot_loss_curve(history, output, title=f"{ckpt.meta['model_type']} training loss")
    else:
        probs = _bigram_table(ckpt, "the heat map")
        labels = [ckpt.vocab.label(i) for i in range(ckpt.vocab.size)]
        counts = _train_pair_counts(ckpt, args.data) if args.annotate else None
        what = "training pair counts" if args.annotate else "P(next | previous)"
        plot_heatmap(probs, labels, output, counts, title=f"{ckpt.meta['model_type']}: {what}")
    print(output)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from namesmith.report import format_transitions, strongest_transitions

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    ckpt = _load(args)
    rows = strongest_transitions(_bigram_table(ckpt, "the report"), _train_pair_counts(ckpt, args.data),
                                 ckpt.vocab, args.top)
    if args.json:
        _print_json([r.to_dict() for r in rows])
    else:
        print(f"strongest transitions of {args.model_dir} ({ckpt.meta['model_type']}) beside the training data:")
        print(format_transitions(rows))
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "score": cmd_score, "eval": cmd_eval, "plot": cmd_plot,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(format="namesmith: %(levelname)s: %(message)s", level=logging.INFO)
    try:
        args = build_parser(_model_type_in(argv)).parse_args(argv)
        log.setLevel(logging.WARNING if args.quiet else logging.INFO)
        return COMMANDS[args.command](args)
    except NamesmithError as e:
        message = str(e)
        if e.field and message.startswith(e.field):
            message = _flag(e.field) + message[len(e.field):]
        print(f"namesmith: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("namesmith: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `namesmith sample -n 1000 | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
