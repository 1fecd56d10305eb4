"""`namesmith eval`, `calibrate`, `plot` and `report`: a trained model's loss, calibration, figures and transitions."""

from __future__ import annotations

import argparse

from namesmith.cli.common import format_metrics, load_model, print_json
from namesmith.cli.options import data_options, given, model_dir_option, moved_data_option
from namesmith.core.errors import ConfigError, NamesmithError


def add_eval(sub: argparse._SubParsersAction, building: bool) -> None:
    e = sub.add_parser("eval", help="held-out loss of a trained model",
                       description="Mean negative log-likelihood per character (end token included) and perplexity "
                                   "on the train/val/test split the model was trained with, or on every word of "
                                   "--data FILE when FILE is not the training list.")
    model_dir_option(e)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(data_fields=data_options(e, "word list to evaluate (default: the model's own split)")
                   if building else [])
    e.set_defaults(run=cmd_eval)


def add_calibrate(sub: argparse._SubParsersAction, building: bool) -> None:
    ca = sub.add_parser("calibrate", help="fit a trained model's whole-name calibration",
                        description="Tilt a trained model's names towards its training names' lengths and endings "
                                    "(whole-name calibration, docs/generation.md), chosen on its "
                                    "validation split, and save it in the model directory.")
    model_dir_option(ca)
    ca.add_argument("--calibrate", default="auto", choices=("none", "length", "auto"),
                    help="auto: the features that lower the validation NLL, or none; length: the length alone; "
                         "none: remove the calibration (default: auto)")
    ca.add_argument("--json", action="store_true", help="print JSON")
    ca.set_defaults(run=cmd_calibrate)


def add_plot(sub: argparse._SubParsersAction, building: bool) -> None:
    pl = sub.add_parser("plot", help="draw the heat map or the loss curve",
                        description="Write a PNG: the bigram probability table as a heat map, or the loss curve.")
    model_dir_option(pl)
    pl.add_argument("what", nargs="?", default="heatmap", choices=["heatmap", "loss"],
                    help="which figure (default: heatmap)")
    pl.add_argument("-o", "--output", metavar="FILE",
                    help="PNG to write (default: MODEL_DIR/heatmap.png, heatmap-counts.png or loss.png)")
    pl.add_argument("--annotate", action="store_true",
                    help="heat map of training pair counts, each cell labelled with its pair and count")
    moved_data_option(pl)
    pl.set_defaults(run=cmd_plot)


def add_report(sub: argparse._SubParsersAction, building: bool) -> None:
    r = sub.add_parser("report", help="strongest transitions vs the training data",
                       description="The seed's sanity check: the model's largest next-character probabilities beside "
                                   "their frequency in the training words.")
    model_dir_option(r)
    r.add_argument("--top", type=int, default=10, help="how many transitions (default: 10)")
    moved_data_option(r)
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(run=cmd_report)


def cmd_eval(args: argparse.Namespace) -> int:
    model = load_model(args)
    metrics = model.evaluate(data=args.data, data_options=given(args, args.data_fields, "data_"))
    if args.json:
        print_json(metrics)
    else:
        print(format_metrics(metrics))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    model = load_model(args)
    report = model.calibrate(args.calibrate)
    model.save(args.model_dir)
    if args.json:
        print_json({"calibration": report, "metrics": model.metrics})
    else:
        print(f"calibration: {report['choice']}" + (f" ({report['method']})" if report["method"] else "")
              + (f"; {report['note']}" if report["note"] else ""))
        print(format_metrics(model.metrics))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from namesmith.scoring.plot import plot_heatmap, plot_loss_curve

    model = load_model(args)
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
    model = load_model(args)
    rows = model.transitions(args.top)
    if args.json:
        print_json([r.to_dict() for r in rows])
    else:
        print(f"strongest transitions of {args.model_dir} ({model.describe()}) beside the training data:")
        print(format_transitions(rows))
    return 0
