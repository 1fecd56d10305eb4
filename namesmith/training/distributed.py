"""Training on several processes with `torch.distributed`: the process group and what ranks ask of it.

namesmith neither starts nor coordinates processes itself. PyTorch's elastic launcher, `torchrun`,
starts one process per rank and tells each through environment variables who it is (RANK,
LOCAL_RANK, WORLD_SIZE) and where to meet the others (MASTER_ADDR, MASTER_PORT); `setup` joins
them into the default process group, gloo for CPU tensors and NCCL for CUDA ones, and returns a
`World`: this rank's number, the number of ranks, its device, and the few collectives the
trainer needs (sums over ranks, a gather, a barrier). `launch` runs torchrun's agent inside this
process, for `namesmith train --nproc N`.

Nothing waits forever. Every collective gives up after `NAMESMITH_DIST_TIMEOUT` seconds (default
600). A rank that dies closes its connections, so the others fail at their next collective at
once; a rank that hangs makes them fail after the timeout. Either way every survivor raises a
one-line `DistributedError` and exits (under torchrun the agent also stops the remaining ranks
as soon as one fails).
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from namesmith.core.errors import ConfigError, DistributedError

log = logging.getLogger("namesmith")

TIMEOUT_ENV = "NAMESMITH_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600.0  # seconds a collective waits for the other ranks
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # what torchrun tells each process


def launched() -> bool:
    """Whether this process is one rank of several started by torchrun (or a launcher like it)."""
    return all(name in os.environ for name in LAUNCH_ENV)


def active() -> bool:
    """Whether this process belongs to a process group (torchrun's, or one its caller set up)."""
    return launched() or (dist.is_available() and dist.is_initialized())


def timeout() -> float:
    """Seconds a collective waits for the other ranks (NAMESMITH_DIST_TIMEOUT, default 600)."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return seconds


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own random draws (dropout): distinct per rank, reproducible."""
    return (seed + 1_000_003 * (rank + 1)) % 2**64


def collective_failure(error: BaseException) -> bool:
    """Whether `error` is a collective that failed: a rank died, hung past the timeout, or the group broke."""
    if isinstance(error, getattr(dist, "DistError", ())):  # torch's own class for them (recent versions)
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(word in text for word in ("gloo", "Gloo", "NCCL", "c10d"))


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run, and the collectives the trainer uses."""

    rank: int
    size: int
    device: torch.device  # where this rank computes (cuda:LOCAL_RANK under torchrun on GPUs)
    timeout: float

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints results."""
        return self.rank == 0

    @property
    def _wire(self) -> torch.device:
        """Where collective tensors live: NCCL moves CUDA tensors only, gloo CPU ones."""
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n rows; the first n % size ranks hold one more (as tensor_split)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the ranks (in float64), known to every rank."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self._wire)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's `tensor` (same shape and dtype on each), in rank order, on the CPU."""
        local = tensor.to(self._wire)
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local)
        return [part.cpu() for part in parts]

    def barrier(self, what: str) -> None:
        """Wait until every rank gets here; `what` this rank waits for, for the error if one never comes."""
        try:
            if dist.get_backend() == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()
        except RuntimeError as e:
            if not collective_failure(e):
                raise
            raise self.lost_contact(e, what) from None

    def lost_contact(self, error: BaseException, what: str, hint: str = "") -> DistributedError:
        """The one-line error of a collective that failed while this rank was doing `what`."""
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return DistributedError(f"rank {self.rank} of {self.size}: lost contact with the other ranks while {what}: "
                                f"another rank died, failed or hung past the {self.timeout:g} s timeout "
                                f"({TIMEOUT_ENV}); see its own error{hint} [{first}]")


def setup(device: torch.device) -> World | None:
    """Join the process group torchrun describes (once per process); None when training alone.

    A process group the caller initialised itself is used as it is. On CUDA each rank takes the GPU
    of its LOCAL_RANK unless `device` names one.
    """
    if not active():
        return None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device.type}: distributed training runs on cpu (gloo) or cuda (NCCL)",
                          field="device")
    seconds = timeout()
    if device.type == "cuda" and device.index is None:
        local_rank, gpus = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
        if local_rank >= gpus:
            raise ConfigError(f"device cuda: local rank {local_rank} has no GPU of its own ({gpus} here); start at "
                              f"most {gpus} ranks per machine, or train on cpu", field="device")
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=seconds))
        except (RuntimeError, ValueError) as e:
            raise DistributedError(f"rank {os.environ.get('RANK')}: could not join the other ranks ({backend}): "
                                   f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}") from None
        atexit.register(_leave)
    if dist.get_backend() == "nccl" and device.type != "cuda":
        raise ConfigError("device cpu: this process group is NCCL's, which moves CUDA tensors only", field="device")
    return World(dist.get_rank(), dist.get_world_size(), device, seconds)


def _leave() -> None:
    """Leave the process group at exit (a clean exit, not a warning from NCCL)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run `python -m namesmith ARGS` as `nproc` ranks on this machine under torchrun's elastic agent.

    As `torchrun --standalone --nproc-per-node NPROC -m namesmith ARGS`. Returns the exit status:
    0 when every rank succeeded, 130 when all stopped on an interrupt (resumably), else that of a
    failed rank (each rank prints its own error).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"nproc must be at least 1, got {nproc}", field="nproc")
    if launched():
        raise ConfigError("nproc: this process is already one rank of a torchrun launch", field="nproc")
    if nproc > 1 and "OMP_NUM_THREADS" not in os.environ:  # as torchrun: ranks should not fight over cores
        os.environ["OMP_NUM_THREADS"] = "1"
        log.info("each rank uses 1 thread (set OMP_NUM_THREADS to change it)")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.WARNING)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    try:
        elastic_launch(config, sys.executable)("-m", "namesmith", *args)
    except ChildFailedError as e:
        codes = [failure.exitcode for failure in e.failures.values()]
        if all(code > 0 for code in codes):  # each said why on its stderr
            return 130 if all(code == 130 for code in codes) else max(c for c in codes if c != 130)
        killed = ", ".join(f"rank {rank} by {failure.signal_name()}" for rank, failure in sorted(e.failures.items())
                           if failure.exitcode <= 0)
        raise DistributedError(f"killed: {killed}; the last checkpoint saved in the output directory, if any, "
                               "can be resumed") from None
    except SignalException:
        return 130
    return 0
