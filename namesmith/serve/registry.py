"""The models a server serves: loaded once, shared by every request, named by short ids.

Two kinds of entry:
- a model directory given at start (`namesmith serve -m DIR`): loaded when the server starts, so a
  bad directory stops it at once with the loader's one-line error;
- with no directory, one count model (the n-gram) per built-in data set: loaded from the user's
  cache directory in the background when the server starts, or, the first time, built there by a
  worker process bounded in time and memory (namesmith.serve.build; a model over the limits is not
  listed and the log says why). Every missing model is built before any is loaded, one at a time,
  and a model is loaded only where what loading it took in its build worker fits beside what the
  server holds, within server_memory_mb (else it is not listed, and the log says why). A cached
  model of another namesmith version or other data is built again. Requests for a model not yet
  ready get 503 with Retry-After: no request trains or waits.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from namesmith.core.errors import CheckpointError, ConfigError, NamesmithError
from namesmith.core.memory import proc_bytes
from namesmith.core.progress import Stopped, stops_on
from namesmith.core.version import __version__
from namesmith.data.catalogue import DATASETS
from namesmith.data.sources import source_fingerprint
from namesmith.namemodel import NameModel
from namesmith.serve.build import BuildJob, BuildLimits, build, limits_key, load_memory_mb, warm_up
from namesmith.training.checkpoint import read_meta

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


class NotReady(Exception):
    """A served model that is still being built or loaded: the app answers 503 with Retry-After."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


# What each state tells a client, and when to ask again (seconds).
WAITING = {"queued": ("waits to be built", 10), "building": ("is being built", 5), "loading": ("is loading", 1)}


@dataclass
class ModelEntry:
    """One served model: its id, where it comes from, and the model once loaded.

    `state`: "ready" (loaded and warmed up), "queued", "building" or "loading" (see `ModelRegistry.start`),
    or "failed" (`reason` says why; a failed model is not listed).
    """

    id: str
    source: str  # what a person is told: "data set us" or "model directory tf"
    dataset: str | None  # the built-in data set, for the default models
    loader: _Loaded | _Cached
    model: NameModel | None = None
    state: str = "queued"
    reason: str | None = None

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def get(self) -> NameModel:
        """The model; NotReady while it is built or loaded (requests never wait for it)."""
        if self.model is None:
            what, retry_after = WAITING.get(self.state, ("is not available", 10))
            raise NotReady(f"model {self.id!r} {what}; try again in {retry_after} s", retry_after)
        return self.model


class ModelRegistry:
    """The served models by id, in the order given; models that could not be built are left out.

    Built-in models are prepared in a background thread (`start`, called by the app): each is loaded
    from the cache when it is current, else built by a watched worker process (namesmith.serve.build)
    and then loaded. Nothing is trained in the server's own process, and no request waits for a model.
    """

    def __init__(self, entries: Sequence[ModelEntry], *, limits: BuildLimits | None = None):
        self.entries = {e.id: e for e in entries}
        if not self.entries:
            raise ConfigError("no models to serve", field="models")
        self.limits = limits or BuildLimits()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def __contains__(self, model_id: str) -> bool:
        entry = self.entries.get(model_id)
        return entry is not None and entry.state != "failed"

    def __iter__(self):
        return iter([e for e in self.entries.values() if e.state != "failed"])

    def get(self, model_id: str) -> ModelEntry:
        """The entry named `model_id`; ConfigError (field model_id) listing the served ids otherwise."""
        entry = self.entries.get(model_id) if re.fullmatch(ID_PATTERN, model_id or "") else None
        if entry is None or entry.state == "failed":
            shown = model_id if re.fullmatch(ID_PATTERN, model_id or "") else "(not a model id)"
            why = f"; it could not be built: {entry.reason}" if entry is not None else ""
            raise ConfigError(f"unknown model {shown!r}{why} (models: {', '.join(e.id for e in self)})",
                              field="model_id")
        return entry

    def paths(self) -> list[str]:
        """Folders whose names must not reach a response (model directories, the cache)."""
        return [p for e in self.entries.values() for p in e.loader.paths]

    # --- preparing the built-in models, in the background -----------------------------------------
    def start(self) -> None:
        """Start preparing the models not yet ready (once; later calls do nothing)."""
        with self._start_lock:
            if self._thread is None and any(e.model is None for e in self.entries.values()):
                self._thread = threading.Thread(target=self._prepare_all, name="namesmith-models", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Prepare the models (if not started) and wait until each is ready or failed; False on timeout."""
        self.start()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def close(self) -> None:
        """Stop preparing models (the server is stopping): a build in progress is killed at once, and a model being
        loaded or warmed up stops at its next unit of work (namesmith.core.progress.stops_on)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _prepare_all(self) -> None:
        # the builds first, one at a time, while this process holds no model: each build worker has the most room
        # beside it within server_memory_mb; then the loads, each only where it fits
        for load in (False, True):
            for entry in self.entries.values():
                if self._stop.is_set():
                    return
                if entry.model is None and entry.state != "failed":
                    try:
                        with stops_on(self._stop):  # loading and warming up end between units of work
                            self._prepare(entry, load)
                    except Stopped:  # the server is stopping (`close`)
                        return
                    except Exception as e:  # noqa: BLE001 - one model's failure must not stop the others
                        log.exception(f"{entry.id}: not served")
                        entry.state, entry.reason = "failed", f"{type(e).__name__}: {e}"

    def _prepare(self, entry: ModelEntry, load: bool = True) -> None:
        """Build `entry`'s model into the cache unless it is current there; with `load`, then load it where it fits."""
        loader = entry.loader
        assert isinstance(loader, _Cached)
        current = loader.current_in_cache()
        if not current and not self._build(entry):
            return
        if not load:
            return
        if not self._fits(entry):
            return
        model = loader.cached()
        if model is None and current and self._build(entry):  # current, yet unusable: built again
            model = loader.cached()
        if model is None:
            entry.state, entry.reason = "failed", "the model just built could not be loaded"
            log.warning(f"{entry.id}: not served: {entry.reason}")
            return
        entry.state = "loading"
        entry.model = warm_up(model)
        entry.state = "ready"
        log.info(f"{entry.id}: ready")

    def _build(self, entry: ModelEntry) -> bool:
        """Build `entry`'s model into the cache in a watched worker: True when built, else False (`reason` says why)."""
        loader = entry.loader
        assert isinstance(loader, _Cached)
        key = {"namesmith_version": __version__, "data_sha256": source_fingerprint(loader.dataset),
               "model_type": loader.model_type, "limits": limits_key(self.limits)}
        known = loader.job.known_failure(key)
        if known is not None:
            entry.state, entry.reason = "failed", known
            log.warning(f"{entry.id}: not served: {known} (at an earlier start with the same limits; "
                        f"delete {loader.job.note()} or raise the limit to try again)")
            return False
        entry.state = "building"
        log.info(f"{entry.id}: building a {loader.model_type} model of the {loader.dataset} data set in a "
                 f"worker process (at most {self.limits.seconds:g} s and {self.limits.memory_mb} MB; "
                 f"cached for later starts)")
        start = time.monotonic()
        failure = build(loader.job, self.limits, self._stop)
        if failure is not None:
            entry.state, entry.reason = "failed", str(failure)
            if not self._stop.is_set():
                if failure.lasting:
                    loader.job.remember_failure(key, str(failure))
                log.warning(f"{entry.id}: not served: {failure}")
            return False
        loader.job.forget_failure()
        log.info(f"{entry.id}: built in {time.monotonic() - start:.1f} s")
        entry.state = "queued"
        return True

    def _fits(self, entry: ModelEntry) -> bool:
        """Whether loading `entry`'s model keeps this process within server_memory_mb, by what loading it took in
        the worker that built it (a cache of an older version has no figure: loaded unchecked)."""
        loader = entry.loader
        assert isinstance(loader, _Cached)
        measured, held = load_memory_mb(loader.job.directory), proc_bytes("/proc/self/status", "VmRSS")
        if measured is None or held is None:
            return True
        held_mb, peak_mb = held / (1 << 20), measured[1]
        if held_mb + peak_mb <= self.limits.server_mb:
            return True
        entry.state = "failed"
        entry.reason = (f"loading it takes up to {peak_mb:,.0f} MB, more than server_memory_mb="
                        f"{self.limits.server_mb} MB leaves beside the {held_mb:,.0f} MB the server holds")
        log.warning(f"{entry.id}: not served: {entry.reason}")
        return False

    # --- making one ---------------------------------------------------------------------------------
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
                                      _Loaded((str(path), str(path.resolve()))), model, "ready"))
        return cls(entries)

    @classmethod
    def builtin(cls, datasets: Sequence[str] | None = None, *, cache: str | Path | None = None,
                model_type: str = DEFAULT_MODEL_TYPE, limits: BuildLimits | None = None) -> ModelRegistry:
        """A `model_type` model per built-in data set (all by default), built in the background and cached.

        `limits`: the time and memory one model's build may take; a model over them is not served.
        """
        names = list(DATASETS) if datasets is None else list(datasets)
        for name in names:
            if name not in DATASETS:
                raise ConfigError(f"unknown data set {name!r} (known: {', '.join(DATASETS)})", field="datasets")
        root = Path(cache).expanduser() if cache is not None else cache_dir()
        return cls([ModelEntry(f"{name}-{model_type}", f"data set {name}", name,
                               _Cached(BuildJob(name, model_type, root / "models" / f"{name}-{model_type}")))
                    for name in names], limits=limits)


@dataclass
class _Loaded:
    """A model directory loaded at start: the folders its name must not show."""

    paths: tuple[str, ...] = ()


@dataclass
class _Cached:
    """A built-in data set's model in the cache: loaded when it is current (else built by `build`)."""

    job: BuildJob

    @property
    def dataset(self) -> str:
        return self.job.dataset

    @property
    def model_type(self) -> str:
        return self.job.model_type

    @property
    def paths(self) -> tuple[str, ...]:
        root = self.job.directory.parent
        return (str(root), str(root.resolve()))

    def current(self, meta: dict) -> bool:
        """Whether a cached model's metadata is that of this version, model type and data."""
        asked = meta.get("request", {}).get("model_type")  # "ngram" stays asked for when it is conditioned
        return (meta.get("namesmith_version") == __version__ and asked == self.model_type
                and meta.get("data", {}).get("sha256") == source_fingerprint(self.dataset))

    def current_in_cache(self) -> bool:
        """Whether the cache holds a current model (by its metadata alone: nothing is loaded)."""
        try:
            return self.current(read_meta(self.job.directory))
        except NamesmithError:
            return False

    def cached(self) -> NameModel | None:
        """The cached model when it is current; None (and the log says why) when it must be built."""
        directory = self.job.directory
        if not (directory / "namesmith.json").exists():
            return None
        try:
            model = NameModel.load(directory)
        except (CheckpointError, NamesmithError) as e:
            log.warning(f"{self.dataset}: the cached model is unusable ({e}); building it again")
            return None
        if self.current(model.meta):
            return model
        log.info(f"{self.dataset}: the cached {self.model_type} model is out of date; building it again")
        return None


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
