"""The models a server serves: loaded once, shared by every request, named by short ids.

Two kinds of entry:
- a model directory given at start (`namesmith serve -m DIR`): loaded when the server starts, so a
  bad directory stops it at once with the loader's one-line error;
- with no directory, one count model (the n-gram) per built-in data set: trained the first time
  it is asked for (seconds), saved under the user's cache directory and loaded from there on
  later starts. A cached model of another namesmith version or other data is trained again.

Requests name a model only by its id (`us-ngram`, or a directory's name); no request names a path.
A model is used read-only by the requests, so one object serves all of them at once; the parts a
model reads lazily (its training words, the percentile table) are read before it is first served.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from namesmith.catalogue import DATASETS
from namesmith.errors import CheckpointError, ConfigError, NamesmithError
from namesmith.namemodel import NameModel
from namesmith.sources import source_fingerprint
from namesmith.version import __version__

log = logging.getLogger("namesmith")

CACHE_ENV = "NAMESMITH_CACHE"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # what a model id looks like; anything else is refused
DEFAULT_MODEL_TYPE = "ngram"


def cache_dir() -> Path:
    """Where trained built-in models are kept: $NAMESMITH_CACHE, else the platform's user cache folder
    (`~/.cache/namesmith`, or $XDG_CACHE_HOME/namesmith; `~/Library/Caches/namesmith` on macOS;
    `%LOCALAPPDATA%\\namesmith\\Cache` on Windows)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "namesmith" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "namesmith"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "namesmith"


def model_labels(model: NameModel) -> dict[str, list[str]]:
    """The labels a conditional model can be steered by, {label: [values]}; {} for a plain model."""
    labels = model.info().get("labels") or getattr(model, "labels", None) or {}
    return {str(k): [str(v) for v in values] for k, values in dict(labels).items()}


def warm_up(model: NameModel) -> NameModel:
    """Read and build what the model makes lazily (training words, percentile table, the sampler's tables)
    before requests share it, so that no request pays for it (or runs out of its time budget doing it).
    Exact tables that a request cannot build within its budget are built in the background for the next."""
    model.background_tables = True
    model.training_split()
    if model.vocab.chars:
        model.score([model.vocab.chars[0]])
    model.generate(1, seed=0)
    return model


@dataclass
class ModelEntry:
    """One served model: its id, where it comes from, and the model once loaded."""

    id: str
    source: str  # what a person is told: "data set us" or "model directory tf"
    dataset: str | None  # the built-in data set, for the default models
    loader: Callable[[], NameModel]
    model: NameModel | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def get(self) -> NameModel:
        """The model, loading (or training) it on first use; concurrent first uses load it once."""
        if self.model is None:
            with self.lock:
                if self.model is None:
                    self.model = warm_up(self.loader())
        return self.model


class ModelRegistry:
    """The served models by id, in the order given."""

    def __init__(self, entries: Sequence[ModelEntry]):
        self.entries = {e.id: e for e in entries}
        if not self.entries:
            raise ConfigError("no models to serve", field="models")

    def __contains__(self, model_id: str) -> bool:
        return model_id in self.entries

    def __iter__(self):
        return iter(self.entries.values())

    def get(self, model_id: str) -> ModelEntry:
        """The entry named `model_id`; ConfigError (field model_id) listing the known ids otherwise."""
        entry = self.entries.get(model_id) if re.fullmatch(ID_PATTERN, model_id or "") else None
        if entry is None:
            shown = model_id if re.fullmatch(ID_PATTERN, model_id or "") else "(not a model id)"
            raise ConfigError(f"unknown model {shown!r} (models: {', '.join(self.entries)})", field="model_id")
        return entry

    def paths(self) -> list[str]:
        """Folders whose names must not reach a response (model directories, the cache)."""
        return [p for e in self for p in getattr(e.loader, "paths", ())]

    @classmethod
    def from_directories(cls, directories: Sequence[str | Path], *, device: str = "cpu") -> ModelRegistry:
        """Load each model directory now (a bad one raises its CheckpointError); ids are the folder names."""
        entries: list[ModelEntry] = []
        for directory in directories:
            path = Path(directory).expanduser()
            model = warm_up(NameModel.load(path, device=device))
            base = re.sub(r"[^A-Za-z0-9._-]", "-", path.resolve().name).lstrip("._-")[:60] or "model"
            model_id, k = base, 2
            while model_id in {e.id for e in entries}:
                model_id, k = f"{base}-{k}", k + 1
            entries.append(ModelEntry(model_id, f"model directory {path.name}", None,
                                      _Loaded(model, (str(path), str(path.resolve()))), model))
        return cls(entries)

    @classmethod
    def builtin(cls, datasets: Sequence[str] | None = None, *, cache: str | Path | None = None,
                model_type: str = DEFAULT_MODEL_TYPE) -> ModelRegistry:
        """A `model_type` model per built-in data set (all by default), trained on first use and cached."""
        names = list(DATASETS) if datasets is None else list(datasets)
        for name in names:
            if name not in DATASETS:
                raise ConfigError(f"unknown data set {name!r} (known: {', '.join(DATASETS)})", field="datasets")
        root = Path(cache).expanduser() if cache is not None else cache_dir()
        return cls([ModelEntry(f"{name}-{model_type}", f"data set {name}", name,
                               _Cached(name, model_type, root / "models" / f"{name}-{model_type}")) for name in names])


@dataclass
class _Loaded:
    """Loader of a model loaded at start."""

    model: NameModel
    paths: tuple[str, ...] = ()

    def __call__(self) -> NameModel:
        return self.model


@dataclass
class _Cached:
    """Loader of a built-in data set's model: from the cache when it is current, else trained into it."""

    dataset: str
    model_type: str
    directory: Path

    @property
    def paths(self) -> tuple[str, ...]:
        return (str(self.directory), str(self.directory.resolve()))

    def current(self, model: NameModel) -> bool:
        asked = model.meta.get("request", {}).get("model_type")  # "ngram" stays asked for when it is conditioned
        return (model.meta.get("namesmith_version") == __version__ and asked == self.model_type
                and model.meta.get("data", {}).get("sha256") == source_fingerprint(self.dataset))

    def __call__(self) -> NameModel:
        if (self.directory / "namesmith.json").exists():
            try:
                model = NameModel.load(self.directory)
                if self.current(model):
                    return model
                log.info(f"{self.dataset}: the cached {self.model_type} model is out of date; training it again")
            except (CheckpointError, NamesmithError) as e:
                log.warning(f"{self.dataset}: the cached model is unusable ({e}); training it again")
        log.info(f"training a {self.model_type} model on the {self.dataset} data set (first use)")
        return NameModel.train(data=self.dataset, model=self.model_type, out=self.directory, overwrite=True)


def scrub(text: str, paths: Sequence[str] = ()) -> str:
    """`text` with file paths cut to their last part, so no response shows where files live."""
    for path in sorted(set(paths), key=len, reverse=True):
        if path and path not in ("/", "."):
            text = text.replace(path, Path(path).name)
    # anything else that looks like an absolute path: keep its last part
    return re.sub(r"(?<![\w.])(?:[A-Za-z]:\\|/)(?:[^\s'\":,;]+[/\\])+([^\s'\":,;/\\]*)", r"\1", text)


def public_info(model: NameModel) -> dict[str, Any]:
    """`model.info()` without anything that names a file or folder on the server."""
    info = dict(model.info())
    data = dict(info.get("data") or {})
    if "path" in data and data["path"] not in DATASETS:
        data["path"] = Path(str(data["path"])).name
    info["data"] = data
    return info
