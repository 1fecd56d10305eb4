"""How fast the Transformer trains and samples on this machine, and (with --train) how well it learns.

    python3 benchmarks/bench_transformer.py                 # ms/step and names/s at makemore's size
    python3 benchmarks/bench_transformer.py --train         # + train with the defaults, print NLLs
    python3 benchmarks/bench_transformer.py --train --time-budget 180 --n-embd 128 --dropout 0.1

Speed is measured at makemore's default size (4 layers, 4 heads, 64 channels, batch 32,
block_size 16 for names.txt): the median over `--steps` training steps (forward, backward and
AdamW) after a warm-up; then, after a short training run on names (so that names end where
names end), names per second of `namesmith sample -n N` (namesmith.generation.generate, whose model sampler
shares one state among the names with the same prefix) against two baselines measured in the
same run: the sampler before prefix sharing (one key/value cache slot per name, the finished
ones compacted lazily) and the naive loop that re-reads the whole prefix for every character
(the base class's `step`). The same figures follow for the LSTM at its default size (64-wide
embeddings, 256 hidden units), which has no naive baseline. Each figure is names per second of
wall time and, in brackets, per second of this process's CPU time (`time.process_time`: the
fairer figure on a machine shared with other work; with several threads it adds theirs up).

`--train` uses namesmith's trainer (`namesmith.training.fitting.fit_model`) unless `--own-loop` asks for a
small loop of its own (AdamW, warm-up + cosine, gradient clipping, best-by-validation, early stopping,
time budget), then reports the train/val/test NLL per character of the best weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from namesmith.core.config import TrainConfig
from namesmith.data.words import Corpus, load_words
from namesmith.generation.config import GenerateConfig
from namesmith.generation.draws import CHUNK
from namesmith.generation.generate import generate
from namesmith.generation.sample import ModelSampler
from namesmith.models.base import CharModel
from namesmith.models.rnn import LSTM, RNNConfig
from namesmith.models.transformer import Transformer, TransformerConfig
from namesmith.training.fitting import fit_model, resolve_train_config

NAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "names.txt"
COMPACT_BELOW = 0.75  # the baseline compacts its state once fewer than this share of its slots are in use


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with decay on matrices only (nanoGPT), fused when this torch supports it."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


# --- training speed ---------------------------------------------------------------------------
def time_train_steps(model: Transformer, batch_size: int, steps: int, warmup: int = 30) -> list[float]:
    """Seconds per training step (forward + backward + AdamW) on random full-width batches."""
    T, V = model.config.block_size, model.vocab_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (batch_size, T), generator=g)
    y = torch.randint(0, V, (batch_size, T), generator=g)
    opt = make_optimizer(model, 5e-4, 0.01)
    model.train()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


# --- sampling speed ---------------------------------------------------------------------------
class NaiveTransformer(Transformer):
    """The same model sampled the way makemore does: every step re-reads the whole prefix."""

    init_state = CharModel.init_state
    step = CharModel.step
    select_state = CharModel.select_state


class PerNameSampler(ModelSampler):
    """The model sampler before prefix sharing: each name its own state slot from the start."""

    def advance(self, state, slot, token, n_slots):  # noqa: ANN001, ANN201
        if n_slots == 1 or len(slot) <= COMPACT_BELOW * n_slots:  # the batch's first step, or compaction
            state, slot, n_slots = self.model.select_state(state, slot), torch.arange(len(slot)), len(slot)
        feed = torch.zeros(n_slots, dtype=torch.long).index_copy_(0, slot, token)  # finished slots: the boundary
        logits, state = self.model.step(state, feed)
        return state, self._probs(logits), slot, None, feed


def names_per_second(model: CharModel, vocab, n: int, max_word_length: int, repeats: int = 3,  # noqa: ANN001
                     sampler: type[ModelSampler] | None = None) -> tuple[float, float]:
    """(names per wall second, per CPU second) of `namesmith sample -n n` (namesmith.generation.generate), or
    of `sampler`'s batches of CHUNK names run directly (a baseline); the median of `repeats`."""
    def draw(num: int, seed: int) -> int:
        if sampler is None:  # names drawn, those over the length guard too
            return generate(model, vocab, GenerateConfig(num=num, seed=seed), max_word_length=max_word_length).tries
        run = sampler(model, vocab, "", max(2 * max_word_length, 32), seed).run
        return sum(len(run(min(CHUNK, num - start)).finished) for start in range(0, num, CHUNK))

    draw(min(n, 500), 0)  # warm-up
    rates = []
    for seed in range(1, repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        drawn = draw(n, seed)
        rates.append((drawn / (time.perf_counter() - t0), drawn / (time.process_time() - c0)))
    return statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)


def sampling_figures(label: str, model: CharModel, vocab, n: int, max_word_length: int,  # noqa: ANN001
                     naive: CharModel | None = None) -> None:
    """Print names/s of the `namesmith sample` path against the baselines measured now."""
    figures = {"namesmith sample": names_per_second(model, vocab, n, max_word_length),
               "one state per name": names_per_second(model, vocab, n, max_word_length, sampler=PerNameSampler)}
    if naive is not None:
        figures["naive prefix re-run"] = names_per_second(naive, vocab, max(n // 10, 1), max_word_length)
    fast = figures["namesmith sample"]
    for name, (wall, cpu) in figures.items():
        ratio = "" if name == "namesmith sample" else f"  (namesmith sample {fast[0] / wall:.1f}x)"
        print(f"  {label} {name:<22} {wall:>9,.0f} names/s  [{cpu:>9,.0f} per CPU second]{ratio}", flush=True)


# --- training quality -------------------------------------------------------------------------
@torch.no_grad()
def nll(model: CharModel, corpus: Corpus, part: str, batch_size: int = 1024) -> float:
    """Mean negative log-likelihood per predicted character (end of name included), in nats."""
    model.eval()
    x, y = corpus.tensors(part)
    total, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size])
        yb = y[i : i + batch_size]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), ignore_index=-1,
                                 reduction="sum").item()
        count += int((yb != -1).sum())
    return total / count


def fit_simple(model: Transformer, corpus: Corpus, cfg: TrainConfig, log_every: int = 500) -> dict:
    """A small stand-in for namesmith.training.trainer: AdamW, warm-up + cosine, clip, best-by-val, patience."""
    torch.manual_seed(cfg.seed)
    x, y = corpus.tensors("train")
    opt = make_optimizer(model, cfg.learning_rate, cfg.weight_decay)
    best, best_state, since_best, t_start = math.inf, None, 0, time.perf_counter()
    step = 0
    for step in range(1, cfg.max_steps + 1):
        if step <= cfg.warmup_steps:
            lr = cfg.learning_rate * step / max(cfg.warmup_steps, 1)
        else:  # cosine over whichever runs out first, the steps or the time budget
            progress = max((step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1),
                           (time.perf_counter() - t_start) / cfg.time_budget)
            lr = cfg.learning_rate_end + 0.5 * (cfg.learning_rate - cfg.learning_rate_end) * (
                1 + math.cos(math.pi * min(progress, 1.0)))
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        rows = torch.randint(0, len(x), (cfg.batch_size,))
        xb, yb = x[rows], y[rows]
        width = int((yb != -1).sum(1).max())  # crop the padding columns no row of this batch uses
        xb, yb = xb[:, :width], yb[:, :width]
        logits = model(xb)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        elapsed = time.perf_counter() - t_start
        out_of_time = elapsed > cfg.time_budget
        if step % cfg.eval_every == 0 or out_of_time or step == cfg.max_steps:
            val = nll(model, corpus, "val")
            if val < best:
                best, since_best = val, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            print(f"step {step:6d}  {elapsed:7.1f}s  lr {lr:.2e}  train loss {loss.item():.4f}  val {val:.4f}"
                  f"  (best {best:.4f})", flush=True)
            if since_best >= cfg.patience or out_of_time:
                break
        elif step % log_every == 0:
            print(f"step {step:6d}  {elapsed:7.1f}s  lr {lr:.2e}  train loss {loss.item():.4f}", flush=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"steps": step, "seconds": time.perf_counter() - t_start, "best_val": best}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(NAMES))
    p.add_argument("--steps", type=int, default=200, help="timed training steps")
    p.add_argument("--sample", type=int, default=50_000, help="names sampled per timing")
    p.add_argument("--sample-train-steps", type=int, default=1000,
                   help="training steps before the sampling figure (so names end as real names do)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-speed", action="store_true", help="skip the speed figures")
    p.add_argument("--train", action="store_true", help="train with the defaults and print NLLs")
    p.add_argument("--own-loop", action="store_true", help="use the benchmark's loop even if the trainer exists")
    for f in dataclasses.fields(TransformerConfig):  # --n-embd 128 etc. override the model defaults
        kind = type(f.default)
        p.add_argument("--" + f.name.replace("_", "-"), default=None,
                       type=(lambda s: s.lower() in ("1", "true", "yes")) if kind is bool else kind)
    for f in dataclasses.fields(TrainConfig):
        if f.name in Transformer.default_train_config:
            kind = type(Transformer.default_train_config[f.name])
            p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    corpus = Corpus.from_words(load_words(args.data), seed=42)
    if not args.no_speed:
        torch.manual_seed(1337)
        size = TransformerConfig(block_size=corpus.max_word_length + 1, n_layer=4, n_head=4, n_embd=64, dropout=0.0)
        model = Transformer(corpus.vocab.size, size)
        times = time_train_steps(model, 32, args.steps)
        ms = sorted(t * 1e3 for t in times)
        print(f"train step (makemore size {size}, batch 32): median {statistics.median(ms):.2f} ms, "
              f"p10 {ms[len(ms) // 10]:.2f}, p90 {ms[9 * len(ms) // 10]:.2f}")
        # sample from a model that has learned what names look like (where they end, above all):
        # a short run of the trainer on the training split
        fit_model(model, corpus, TrainConfig(max_steps=args.sample_train_steps, batch_size=32))
        model.eval()
        naive = NaiveTransformer(corpus.vocab.size, size).eval()
        naive.load_state_dict(model.state_dict())
        print(f"sampling {args.sample:,} names (after {args.sample_train_steps} training steps):")
        sampling_figures("transformer", model, corpus.vocab, args.sample, corpus.max_word_length, naive)
        torch.manual_seed(1337)
        lstm = LSTM(corpus.vocab.size, RNNConfig())
        fit_model(lstm, corpus, TrainConfig(max_steps=args.sample_train_steps, batch_size=32, ngram_mix=0))
        sampling_figures("lstm       ", lstm.eval(), corpus.vocab, args.sample, corpus.max_word_length)

    if args.train:
        overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TransformerConfig)
                     if getattr(args, f.name) is not None}
        overrides.setdefault("block_size", Transformer.block_size_for(corpus))
        torch.manual_seed(1337)
        model = Transformer(corpus.vocab.size, TransformerConfig(**overrides))
        train_over = {k: getattr(args, k) for k in Transformer.default_train_config if getattr(args, k) is not None}
        cfg = resolve_train_config(model, TrainConfig(**train_over))
        n_params = sum(p.numel() for p in model.parameters())
        print(f"training {model.config} ({n_params:,} parameters) with {cfg}")
        t0 = time.perf_counter()
        if not args.own_loop:
            def report(step: int, total: int, metrics: dict) -> None:
                if "val_loss" in metrics:
                    print(f"step {step:6d}  {metrics['seconds']:7.1f}s  lr {metrics['lr']:.2e}  "
                          f"train loss {metrics['loss']:.4f}  val {metrics['val_loss']:.4f}", flush=True)

            history = fit_model(model, corpus, cfg, report)
            print(f"trainer: {history.steps} steps, stopped: {history.stop_reason}")
        else:
            fit_simple(model, corpus, cfg)
        minutes = (time.perf_counter() - t0) / 60
        scores = {part: nll(model, corpus, part) for part in ("train", "val", "test")}
        print(f"NLL per character after {minutes:.1f} min: train {scores['train']:.4f}  val {scores['val']:.4f}  "
              f"test {scores['test']:.4f}")


if __name__ == "__main__":
    main()
