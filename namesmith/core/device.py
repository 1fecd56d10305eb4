"""Choosing the torch device: `auto` picks cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from namesmith.core.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for --device, or a `ConfigError` if it is not available here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name}: CUDA is not available on this machine; use cpu", field="device")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here", field="device")
        return torch.device(name)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps: Apple MPS is not available on this machine; use cpu", field="device")
    if name not in ("cpu", "mps"):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {name!r}", field="device")
    return torch.device(name)
