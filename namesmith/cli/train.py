"""`namesmith train` and `namesmith ensemble`: make a model directory, with progress, signals and a summary."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import shlex
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from namesmith.cli.common import (
    EXIT_INTERRUPTED,
    format_metrics,
    plural,
    print_json,
    process_rank,
    warn_unfinished,
)
from namesmith.cli.options import (
    DEFAULT_MODEL_DIR,
    MODEL_HELP,
    TRAIN_HELP,
    add_field_options,
    common_options,
    data_options,
    given,
    moved_data_option,
)
from namesmith.core.errors import ConfigError

log = logging.getLogger("namesmith")

PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


def add_train(sub: argparse._SubParsersAction, model_type: str, options: bool = True) -> argparse.ArgumentParser:
    """The train command; its options only with `options` (they need the model type's class, so torch)."""
    p = sub.add_parser("train", formatter_class=argparse.RawDescriptionHelpFormatter, help="train a model and save it",
                       description="Train a model on a word list, save it to --out, print its held-out loss and a "
                                   "few generated names.")
    p.set_defaults(run=cmd_train)
    if not options:
        return p
    from namesmith.core.config import TrainConfig
    from namesmith.models import model_class, trainable_types

    common_options(p)
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
    data_fields = data_options(p, "word list (one name per line, UTF-8), table (a header row naming a 'name' "
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
                        "for a list that held in memory would pass 1 GB or a minute, as estimated before reading "
                        "it); the split is then by a hash of each word's index, about 80/10/10")
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


def add_ensemble(sub: argparse._SubParsersAction, building: bool) -> None:
    from namesmith.core.config import COMBINES

    en = sub.add_parser("ensemble", help="combine trained models into one",
                        description="Combine models trained on one word list (same vocabulary, data and split) into "
                                    "one model directory: their predictions are combined with weights fitted on the "
                                    "validation split. The result samples, scores and evaluates like any model.")
    common_options(en)
    en.add_argument("-m", "--models", "--model-dir", dest="models", action="append", required=True, metavar="DIR",
                    help="a trained model directory (repeat: two or more)")
    en.add_argument("--out", required=True, metavar="DIR", help="directory for the combined model")
    en.add_argument("--combine", choices=COMBINES, default=COMBINES[0],
                    help="product: a weighted product of the probabilities, renormalised (default); mixture: a "
                         "weighted average")
    en.add_argument("--overwrite", action="store_true", help="replace a different model already saved in --out")
    en.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")
    moved_data_option(en)
    en.add_argument("--json", action="store_true", help="print JSON")
    en.set_defaults(run=cmd_ensemble)


def model_type_in(argv: list[str]) -> str:
    """The --model value of a train command, read ahead so its options can be added."""
    from namesmith.models import trainable_types

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="ngram")
    known, _ = pre.parse_known_args(argv)
    return known.model if known.model in trainable_types() else "ngram"


def owner_of(option: str) -> str | None:
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


class Progress:
    """Training progress: a bar on a terminal, a log line every few seconds otherwise.

    The bar's total follows the time budget when it will end the run before max_steps, so the ETA
    is honest; log lines go through the bar (tqdm.write) so the two never share a line.
    """

    def __init__(self, model_type: str, time_budget: float | None, stop: dict[str, bool],
                 clock: Any = time.perf_counter):
        from tqdm import tqdm

        self.stop, self.time_budget, self.clock = stop, time_budget, clock
        self.bar = tqdm(total=None, desc=f"training {model_type}", unit="step",
                        disable=None if process_rank() == 0 else True, leave=False)
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
    if process_rank() != 0:  # rank 0 reports for every rank
        return EXIT_INTERRUPTED if history.stop_reason == "interrupted" else 0
    seed = options.get("seed", 1337)
    samples = args.samples if args.json or not args.quiet else 0  # -q prints no samples: none are drawn
    names = model.generate(samples, seed=seed) if samples else None
    by_value = _samples_by_value(model, samples, seed) if samples else {}
    if args.json:
        print_json({"model_dir": args.out, "model_type": model.model_type, "description": model.describe(),
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
        print(format_metrics(model.metrics))
        alone = model.meta.get("metrics_without_ngram")
        if alone:  # see namesmith.models.ngram_mix
            config = model.meta["model_config"]
            a, b = config["weights"]
            order = config["ngram"].get("model", config["ngram"]).get("order", "?")
            print(f"the network alone, before it was combined with the order-{order} n-gram "
                  f"(weights {a:.2f} and {b:.2f}; --ngram-mix 0 keeps it alone):\n{format_metrics(alone)}")
        if by_value:
            print("samples:")
            for where, found in by_value.items():
                print(f"{where}: {', '.join(found.names)}")
        elif names and names.names:
            print("samples:")
            print("\n".join(names.names))
    if names is not None:
        warn_unfinished(names.stats, args.quiet)
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


def cmd_ensemble(args: argparse.Namespace) -> int:
    from namesmith.namemodel import NameModel

    model = NameModel.ensemble(args.models, out=args.out, combine=args.combine, overwrite=args.overwrite,
                               device=args.device, data=args.data)
    if args.json:
        print_json({"model_dir": args.out, **model.info()})
        return 0
    weights = model.meta["model_config"]["weights"]
    print(f"combined {len(weights)} models ({args.combine}); saved to {args.out}")
    for member, weight in zip(model.meta["members"], weights):
        val = member["metrics"].get("val", {}).get("nll")
        print(f"  weight {weight:7.3f}  {member['description']:<24} val {'n/a' if val is None else f'{val:.4f}'}"
              f"  {member['directory'] or ''}")
    print(format_metrics(model.metrics))
    return 0
