"""Issue #17, the GPU path: every model type trained, sampled, scored and resumed on a CUDA device,
the fused AdamW kernel, and DistributedDataParallel over NCCL with one process.

The "cuda" cases are marked `gpu`: the default run deselects them (pyproject.toml's `-m 'not gpu'`),
`pytest -m gpu tests/models/test_gpu.py` runs them where a CUDA device is. The same checks run on the CPU
(gloo for the process group) in every run, so the GPU cases cannot rot unseen.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from namesmith import NameModel
from namesmith.core.config import TrainConfig
from namesmith.data.words import load_words
from namesmith.training.checkpoint import read_meta
from namesmith.training.trainer import make_optimizer

DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.gpu)]
TYPES = {  # model type: its options, small
    "bigram-counts": {},
    "bigram": {"max_steps": 20},
    "ngram": {"order": 4},
    "mlp": {"n_embd": 8, "n_hidden": 32, "block_size": 4},
    "wavenet": {"n_embd": 8, "n_hidden": 32},
    "rnn": {"n_embd": 8, "n_hidden": 16},
    "gru": {"n_embd": 8, "n_hidden": 16},
    "lstm": {"n_embd": 8, "n_hidden": 16},
    "transformer": {"n_layer": 1, "n_head": 2, "n_embd": 16},
}
NEURAL = ("mlp", "wavenet", "rnn", "gru", "lstm", "transformer")
STEPS = 20
STOP_AT = 10  # the interrupted run stops here; --resume continues it


def needs(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")


@pytest.fixture(scope="module")
def words(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gpu") / "names.txt"
    path.write_text("\n".join(load_words("builtin")[:600]) + "\n")
    return path


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_type", list(TYPES))
def test_every_type_trains_samples_scores_and_resumes_on_the_device(words, tmp_path, model_type, device):
    needs(device)
    out = tmp_path / model_type
    options = {"device": device, "seed": 1, "prior": "none", **TYPES[model_type]}
    if model_type in NEURAL:
        options.update(max_steps=STEPS, eval_every=5, batch_size=16, ngram_mix=0)
        stopped = NameModel.train(words, model_type, out=out, callback=lambda step, total, m: step >= STOP_AT,
                                  **options)
        assert read_meta(out)["complete"] is False  # interrupted: resumable
        assert next(stopped.model.parameters()).device.type == device
        model = NameModel.train(words, model_type, out=out, resume=True, **options)
    else:
        model = NameModel.train(words, model_type, out=out, **options)
    assert read_meta(out)["complete"] is True
    found = model.generate(5, ends_with="a", min_len=3, seed=2)
    assert found.complete and all(n.endswith("a") and len(n) >= 3 for n in found.names)
    scores = model.score(["anna", "zzzq"])
    assert scores[0].log_prob > scores[1].log_prob and all(s.error is None for s in scores)
    again = NameModel.load(out, device=device)  # the saved model on the device, as the CLI loads it
    assert [s.log_prob for s in again.score(["anna"])] == pytest.approx([scores[0].log_prob], abs=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_adamw_takes_the_fused_kernel(device):
    needs(device)
    model = torch.nn.Linear(4, 4).to(device)
    assert make_optimizer(model, TrainConfig(learning_rate=1e-3, weight_decay=0.1)).defaults["fused"] is True


@pytest.mark.parametrize("device", DEVICES)
def test_one_process_ddp_over_nccl_on_cuda_and_gloo_on_cpu(words, tmp_path, device):
    """The CLI as torchrun starts it, world size 1: the process group is NCCL on a GPU, gloo on a CPU."""
    needs(device)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    argv = [sys.executable, "-m", "namesmith", "train", "--data", str(words), "--model", "lstm", "--n-embd", "8",
            "--n-hidden", "16", "--max-steps", str(STEPS), "--eval-every", "5", "--ngram-mix", "0", "--prior", "none",
            "--device", device, "--out", str(out), "--samples", "3"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert read_meta(out)["complete"] is True
    backend = "nccl" if device == "cuda" else "gloo"
    assert f"DistributedDataParallel on 1 ranks ({backend})" in done.stderr
