"""The gradient trainer as one rank of several (torchrun): `DistributedTrainer`, DistributedDataParallel.

It is namesmith.training.trainer's `Trainer` with the hooks that ranks must agree on overridden (the step's
loss, the validation loss, the clock, a request to stop, the random generators of a checkpoint); the ranks
themselves (process group, sharding, seeds, failures) are namesmith.training.distributed's.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from namesmith.core.config import TrainConfig
from namesmith.core.errors import ConfigError
from namesmith.core.history import TrainCallback, TrainHistory
from namesmith.models.base import CharModel
from namesmith.models.nll import nll_sum
from namesmith.training.distributed import World, collective_failure, rank_seed
from namesmith.training.trainer import Trainer

log = logging.getLogger("namesmith")


class DistributedTrainer(Trainer):
    """A `Trainer` that is one rank of several: DistributedDataParallel (Li et al. 2020) under torchrun.

    Every rank holds the whole word list and draws the same global batch of `batch_size` words
    from the same seeded generator, then trains on its own contiguous share of those rows
    (`World.shard`); DDP averages the ranks' gradients while back-propagating. A share's summed
    loss is divided by the token count of the whole global batch (by-length: `tokens_per_batch`)
    and multiplied by the number of ranks, so the averaged gradient is the gradient of the global
    batch's 1-process loss. A run thus follows the same batches and schedule whatever the number of
    ranks, and equals a 1-process run up to the order of floating-point sums
    (tests/training/test_distributed.py); for a given number of ranks it is reproducible.

    What the ranks must agree on, they agree on by construction or by one all-reduce per step:
    - weights, optimiser moments and the weight average: every rank applies the same gradient;
    - the validation loss (so the best weights and early stopping): each rank evaluates its share
      of the validation split and the sums are all-reduced;
    - the step's loss, any rank's request to stop (its callback saw Ctrl-C or SIGTERM) and rank
      0's clock travel in one all-reduce after each step: every rank stops after the same step
      (the one after the request), and the time budget and schedule follow rank 0's clock.
    Dropout draws from a generator per rank (`rank_seed`). For a checkpoint every rank builds the
    state (each rank's random generators are gathered into it) and rank 0 alone hands it to
    `on_checkpoint`. Resuming on as many ranks is bit-exact; on another number of ranks the run
    continues with the same batches and schedule, but fresh dropout draws and other rounding.
    A collective that fails (another rank died or hung past the timeout) raises DistributedError.
    """

    def __init__(self, model: torch.nn.Module, corpus: Any, config: TrainConfig, callback: TrainCallback | None = None,
                 on_checkpoint: Any = None, teacher: CharModel | None = None, *, world: World):
        if config.batch_size < world.size:
            raise ConfigError(f"batch_size {config.batch_size} is smaller than the number of ranks ({world.size}); "
                              "every rank needs a share of each batch", field="batch_size")
        super().__init__(model, corpus, config, callback, on_checkpoint, teacher)
        self.world = world
        if on_checkpoint is not None and not world.is_main:
            self.on_checkpoint = lambda state: None  # it still builds the state: gathering it takes every rank
        share = world.shard(self.x_val.shape[0])
        self.x_val, self.y_val = self.x_val[share], self.y_val[share]
        torch.manual_seed(rank_seed(config.seed, world.rank))
        try:  # DDP starts by checking that every rank holds the same parameters: a collective
            self.ddp = DistributedDataParallel(model, device_ids=[model.device.index] if model.device.type == "cuda"
                                               else None)
        except RuntimeError as e:
            if not collective_failure(e):
                raise
            raise world.lost_contact(e, "starting to train") from None
        self._share: torch.Tensor | None = None  # this rank's part of the step's loss
        self._stop_requested = self._stop_agreed = False
        self._clock: float | None = None  # rank 0's seconds, as of the last step
        if world.is_main:
            log.info(f"DistributedDataParallel on {world.size} ranks ({dist.get_backend()}): each trains on its share "
                     f"of every batch of {config.batch_size} words")

    def fit(self, resume: dict[str, Any] | None = None) -> TrainHistory:
        try:
            return super().fit(resume)
        except RuntimeError as e:
            if not collective_failure(e):
                raise
            raise self.world.lost_contact(e, f"training step {self.state.step + 1}",
                                          "; the last checkpoint saved, if any, can be resumed") from None

    def step_loss(self, rows: torch.Tensor, tokens_per_batch: float | None) -> torch.Tensor:
        share = rows[self.world.shard(len(rows))]
        T = int(self.lengths[share].max())
        tokens = tokens_per_batch if tokens_per_batch is not None else float(self.lengths[rows].sum())
        share = share.to(self.model.device)
        loss = self.loss(self.ddp(self.x_train[share, :T]), share, T, tokens)
        self._share = loss.detach()
        return loss * self.world.size  # DDP averages the ranks' gradients; the shares' gradients add up

    def reported_loss(self, loss: torch.Tensor) -> float:
        # the step's one all-reduce: the global batch's loss, stop requests, rank 0's clock
        clock = self.elapsed() if self.world.is_main else 0.0
        total, stops, self._clock = self.world.sum([self._share.item(), float(self._stop_requested), clock])
        self._stop_agreed = stops > 0
        return total

    def clock(self) -> float:
        return self.state.seconds if self._clock is None else self._clock

    def agree_stop(self, requested: bool) -> bool:
        self._stop_requested = self._stop_requested or requested  # the next step's all-reduce carries it
        return self._stop_agreed

    def val_loss(self) -> float:
        total, count = nll_sum(self.model, self.x_val, self.y_val)
        total, count = self.world.sum([total, count])
        return total / max(count, 1)

    def state_dict(self) -> dict[str, Any]:
        saved = super().state_dict()
        saved["meta"]["world_size"] = self.world.size
        return saved

    def rng_states(self) -> dict[str, torch.Tensor]:
        # rank 0's states under the plain names too: a 1-process resume reads those
        states = super().rng_states()
        for name in [n for n in states if n != "rng.batch"]:  # the batch generator is the same on every rank
            for rank, state in enumerate(self.world.gather(states[name])):
                states[f"{name}.{rank}"] = state
            states[name] = states[f"{name}.0"].clone()  # safetensors saves no shared tensors
        return states

    def load_rng_states(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_rng_states(tensors, meta)
        rank, saved_size = self.world.rank, meta.get("world_size", 1)
        if saved_size == self.world.size and f"rng.torch.{rank}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch.{rank}"].cpu())
            if f"rng.cuda.{rank}" in tensors and self.model.device.type == "cuda":
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{rank}"].cpu(), self.model.device)
            return
        torch.manual_seed(rank_seed(self.config.seed + self.state.step, rank))
        if self.world.is_main:
            log.info(f"resuming a run of {saved_size} rank(s) on {self.world.size}: same batches and schedule, "
                     "new dropout draws")
