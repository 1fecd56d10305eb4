"""Self-describing model directories, written atomically, loaded without unpickling.

A model directory holds:

- `namesmith.json`: format version, model type and config, vocabulary, training config, data
  fingerprint and split seed, evaluation results, loss history, and the name and sha256 of the
  weights file (and of the resumable training state, if training was interrupted);
- `weights-<hash>.safetensors`: the model's tensors (safetensors never runs code on load);
- `train_state-<hash>.safetensors`: optimiser state etc. for `--resume`, while it applies.

Saving writes the tensor files under new names first and replaces `namesmith.json` last, by
rename: whatever moment a crash or a full disk strikes, the JSON names files that exist and
match their hashes, so the previous checkpoint stays loadable until the new one is complete.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from namesmith.core.bounded_json import loads_bounded
from namesmith.core.conditional import Condition
from namesmith.core.errors import CheckpointError, ConfigError, NamesmithError
from namesmith.core.io import atomic_write_bytes, checked_file, write_content_addressed
from namesmith.core.vocab import Vocab
from namesmith.data.words import has_bad_chars
from namesmith.generation.calibration import Calibration, LabelCalibrations
from namesmith.generation.saved_tables import TABLES_KEY, PlainTables, rows_entry, tables_of, write_tables
from namesmith.models import MODEL_TYPES, model_class
from namesmith.scoring.classify_tables import CLASSIFY_KEY, ClassifyTables, read_classify_tables, write_classify_tables

if TYPE_CHECKING:  # torch is imported where tensors are read or written: a directory's JSON is read without it
    import torch

    from namesmith.models.base import CharModel

FORMAT = "namesmith-model"
FORMAT_VERSION = 2  # 2: the n-gram mix is its own model type, "ngram-mix" (format 1 is read too)
META_FILE = "namesmith.json"
LOCK_FILE = ".namesmith.lock"  # held by the run writing the directory (see `one_writer`)
RECORD_KEY = "namesmith_model"  # in a weights file's header: the type, config and vocabulary it was saved with
HEADER_KEYS = ("model_type", "model_config", "vocab")
MAX_JSON_DEPTH = 64  # nesting of namesmith.json and of a weights file's header, at most
MAX_HEADER_BYTES = 100 << 20  # a safetensors header (JSON of names, shapes and offsets), at most
MAX_META_BYTES = 64 << 20


@dataclass
class Checkpoint:
    """A loaded model with its vocabulary and everything recorded about it."""

    model: CharModel
    vocab: Vocab
    meta: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None  # {"tensors", "meta"} when resumable


def _write_tensors(directory: Path, stem: str, tensors: dict[str, torch.Tensor],
                   record: dict[str, Any] | None = None) -> tuple[str, str]:
    """Save tensors under a content-addressed name, with the model `record` they belong to in the file's
    header (see `_check_header`); returns (file name, sha256)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = None if record is None else {RECORD_KEY: json.dumps(record, sort_keys=True)}
    return write_content_addressed(directory, stem, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def check_writable(directory: str | Path) -> Path:
    """Fail early (before hours of training) if a model directory cannot be written."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".namesmith-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot write the model directory ({e.strerror or e})") from None
    return directory


@contextlib.contextmanager
def one_writer(directory: str | Path) -> Iterator[Path]:
    """Hold a model directory for one writer while the block runs: a second run writing to it (another
    `train --out` the same directory) is refused at once, rather than both saving and one result being lost.

    An exclusive `flock` on LOCK_FILE in the directory, held by the open file: the kernel drops it
    when the process dies, however it dies, so a killed run never leaves the directory locked. The
    file is removed on release, and a directory this made is removed again if nothing was saved in it.
    (Where the platform has no `flock`, Windows, nothing is locked.)
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a directory", field="out")
    made = not directory.exists()
    path = directory / LOCK_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                with contextlib.suppress(FileNotFoundError):
                    if os.fstat(fd).st_ino == os.stat(path).st_ino:
                        break  # else the holder removed the file as this opened it: lock the one there now
            except BlockingIOError:
                os.close(fd)
                raise CheckpointError(f"{directory}: another namesmith run is writing this model directory; wait "
                                      "for it to end, or choose another out directory", field="out") from None
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot write the model directory ({e.strerror or e})",
                              field="out") from None
    try:
        yield directory
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still held: no other run can hold it by this name meanwhile
        os.close(fd)
        if made:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if empty: a run that saved nothing leaves nothing


def model_record(model: CharModel, vocab: Vocab) -> dict[str, Any]:
    """What a model directory says about the model itself: its type, config and vocabulary."""
    record = {"model_type": model.model_type, "model_config": model.config_dict(), "vocab": list(vocab.chars)}
    if model.calibration is not None:  # a directory without one (every one older than calibration) loads untilted
        record["calibration"] = model.calibration.to_dict()
    if model.label_calibrations is not None:  # a conditional model's, one per label node
        record["label_calibrations"] = model.label_calibrations.to_dict(model.condition)
    return record


def plain_tables(model: CharModel, vocab: Vocab, meta: dict[str, Any]) -> PlainTables | None:
    """The tables the model's plain names are drawn from, saved beside its weights so that sampling them needs no torch
    (generation.saved_tables): a conditional model's unconditioned model's, an adapted model's of its own letters."""
    from namesmith.models.own_letters import OwnLetters  # torch: a model is at hand

    alphabet = meta.get("adaptation", {}).get("alphabet")
    if alphabet is not None:
        return tables_of(OwnLetters.of(model, vocab, alphabet))
    return tables_of(model.given(None) if model.condition is not None else model)


def save_checkpoint(directory: str | Path, model: CharModel, vocab: Vocab, meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write a model directory atomically (see the module docstring); returns its path.

    `meta` holds what the caller knows (data, training config, metrics, history); the model's
    own type, config and vocabulary are added here. `train_state` makes the checkpoint resumable.
    A save that fails (a full disk) removes the files it wrote, so the directory holds the previous
    checkpoint or, on a first save, no orphan tensors that neither load nor resume.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a directory")
    weights = model.weights()
    needed = sum(t.nbytes for t in weights.values()) + (0 if train_state is None else
                                                         sum(t.nbytes for t in train_state["tensors"].values()))
    written: list[str] = []  # tensor files this save added (a file of the same content may be there already)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        existed = {p.name for p in directory.glob("*.safetensors")}
        record = model_record(model, vocab)  # what the tensors' shapes follow (not e.g. a calibration kept beside them)
        weights_file, weights_sha = _write_tensors(directory, "weights", weights,
                                                   {key: record[key] for key in HEADER_KEYS})
        written += [weights_file] if weights_file not in existed else []
        record = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **meta,
            **model_record(model, vocab),
            "weights": {"file": weights_file, "sha256": weights_sha},
        }
        record.pop(TABLES_KEY, None)  # a loaded model's meta names the tables of the model as it was
        record.pop(CLASSIFY_KEY, None)
        tables = plain_tables(model, vocab, meta)
        if tables is not None:
            record[TABLES_KEY] = write_tables(directory, tables) if tables.rows is None else \
                rows_entry(tables, record["weights"], record["model_config"], meta["adaptation"]["alphabet"])
            written += [record[TABLES_KEY]["file"]] if record[TABLES_KEY]["file"] not in {*existed, *written} else []
            classify_entry = write_classify_tables(directory, model)  # a conditional count model's (no torch)
            if classify_entry is not None:
                record[CLASSIFY_KEY] = classify_entry
                written += [classify_entry["file"]] if classify_entry["file"] not in existed else []
        if train_state is not None:
            state_file, state_sha = _write_tensors(directory, "train_state", train_state["tensors"])
            written += [state_file] if state_file not in existed else []
            record["train_state"] = {"file": state_file, "sha256": state_sha, "meta": train_state["meta"]}
        atomic_write_bytes(directory / META_FILE, json.dumps(record, indent=2).encode())
    except BaseException as e:
        for name in written:  # namesmith.json, old or none, does not name them
            with contextlib.suppress(OSError):
                (directory / name).unlink()
        if not isinstance(e, (OSError, SafetensorError)):
            raise
        free = ""
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            free = f"; free at least {needed / 1e6 + 1:,.0f} MB on the disk that holds it (or pass another out)"
        raise CheckpointError(f"{directory}: could not save the model ({getattr(e, 'strerror', None) or e}){free}; "
                              "the previous checkpoint, if any, is intact") from None
    keep = {weights_file, record.get("train_state", {}).get("file"), record.get(TABLES_KEY, {}).get("file"),
            record.get(CLASSIFY_KEY, {}).get("file")}
    stale_files = [path for stem in ("weights", "train_state", "tables", "classify")  # and killed saves' temporaries
                   for path in (*directory.glob(f"{stem}-*.safetensors"), *directory.glob(f".{stem}.*.tmp"))]
    for stale in stale_files:
        if stale.name not in keep:
            with contextlib.suppress(OSError):
                stale.unlink()
    return directory


def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors' writer of tensors (imported here, with torch, when tensors are written)."""
    from safetensors.torch import save_file as write

    write(tensors, filename, metadata=metadata)


def load_file(path: Path) -> dict[str, torch.Tensor]:
    """safetensors' reader of tensors (imported here, with torch, when tensors are read)."""
    from safetensors.torch import load_file as read

    return read(path)


def checked_without_model(directory: str | Path, meta: dict[str, Any], vocab: Vocab) -> bool:
    """The checks of `load_checkpoint` that need neither torch nor the model's class, for a model loaded on first
    use (NameModel.load): the weights file's name and hash, the model record its header keeps (`_check_header`),
    and the calibrations. False (nothing wrong found, but the rest needs the model's class: load it now) for a
    weights file saved before its header held that record, and for label calibrations of a model type that has
    none."""
    directory = Path(directory)
    path = checked_file(directory, meta.get("weights"), "weights", META_FILE)
    header = _read_header(path)
    if not isinstance(header.get("__metadata__"), dict) or RECORD_KEY not in header["__metadata__"]:
        return False
    _check_header(path, header, meta)
    try:
        if "calibration" in meta:
            Calibration.from_dict(meta["calibration"], vocab.size)
        if "label_calibrations" in meta:
            if meta["model_type"] != "conditional-counts":
                return False
            condition = Condition.from_dict(meta["model_config"].get("condition"))
            LabelCalibrations.from_dict(meta["label_calibrations"], vocab.size, condition)
    except (NamesmithError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{directory / META_FILE}: {e}") from None
    return True


class SavedClassifier:
    """A directory's classification tables (scoring.classify_tables), read and checked with the label calibrations
    namesmith.json holds on first use (`tables`), and its labels, read from namesmith.json alone."""

    def __init__(self, directory: str | Path, meta: dict[str, Any], vocab: Vocab):
        self.directory, self.meta, self.vocab = Path(directory), meta, vocab
        try:
            self.condition = Condition.from_dict(meta["model_config"]["condition"])
            self.calibrations = None if "label_calibrations" not in meta else LabelCalibrations.from_dict(
                meta["label_calibrations"], vocab.size, self.condition)
        except (NamesmithError, TypeError, ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{self.directory / META_FILE}: {e}") from None
        self.labels = dict(self.condition.labels)

    @functools.cached_property
    def tables(self) -> ClassifyTables:
        return read_classify_tables(self.directory, self.meta, self.vocab, self.calibrations)


def saved_classifier(directory: str | Path, meta: dict[str, Any], vocab: Vocab) -> SavedClassifier | None:
    """The directory's `SavedClassifier`; None without tables (saved before them, not a conditional count model,
    or over the tables' bound)."""
    return SavedClassifier(directory, meta, vocab) if CLASSIFY_KEY in meta else None


def _load_tensors(directory: Path, entry: Any, what: str,
                  check: Callable[[Path, dict[str, Any]], None] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a file `entry` names, after its hash and `check(path, header)` (the header's JSON) pass."""
    path = checked_file(directory, entry, what, META_FILE)
    if check is not None:
        check(path, _read_header(path))
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and (tensor.isnan().any() or tensor.isposinf().any()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
    return tensors


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The checked contents of a model directory's namesmith.json."""
    directory = Path(directory)
    path = directory / META_FILE
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: is a file, not a model directory (give the directory that "
                              f"`namesmith train --out DIR` wrote)")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such model directory "
                              f"(train one with `namesmith train --out {directory}`)")
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a namesmith model directory ({META_FILE} is missing)")
    if path.stat().st_size > MAX_META_BYTES:
        raise CheckpointError(f"{path}: too large to be a namesmith model description")
    meta = _parse_json(path, path.read_bytes())
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a namesmith model description")
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path}: format version {version!r} is not valid")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than this namesmith reads "
                              f"({FORMAT_VERSION}); upgrade namesmith")
    if version == 1:
        _upgrade_format_1(meta)
    if not isinstance(meta.get("model_type"), str) or meta["model_type"] not in MODEL_TYPES:
        raise CheckpointError(f"{path}: unknown model type {meta.get('model_type')!r}")
    vocab = meta.get("vocab")
    if (not isinstance(vocab, list) or not all(isinstance(c, str) and len(c) == 1 for c in vocab)
            or vocab != sorted(set(vocab)) or has_bad_chars("".join(vocab))):
        raise CheckpointError(f"{path}: the vocabulary is malformed (it must be distinct, sorted, printable "
                              "single characters)")
    if not isinstance(meta.get("model_config"), dict):
        raise CheckpointError(f"{path}: the model config is malformed")
    _check_record(path, meta, "data", _DATA_FIELDS)
    for key in ("train_config", "history", "metrics"):
        if key in meta and not isinstance(meta[key], dict):
            raise CheckpointError(f"{path}: the {key} record is malformed")
    return meta


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        return loads_bounded(data, MAX_JSON_DEPTH)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _read_header(path: Path) -> dict[str, Any]:
    """A safetensors file's header: {tensor name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise CheckpointError(f"{path}: unreadable safetensors file (header of {size:,} bytes)")
            header = _parse_json(path, f.read(size))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: unreadable safetensors file (its header is not a JSON object)")
    return header


def _check_model_record(path: Path, header: dict[str, Any], meta: dict[str, Any], vocab_size: int) -> None:
    """Refuse a namesmith.json whose model does not fit the weights file, before any tensor is read or any model
    built: the record the header keeps (`_check_header`), then every size the vocabulary and config declare
    against the tensors' shapes (`_check_declared_sizes`)."""
    _check_header(path, header, meta)
    _check_declared_sizes(path, header, meta, vocab_size)


def _check_declared_sizes(path: Path, header: dict[str, Any], meta: dict[str, Any], vocab_size: int) -> None:
    """The one check, for every model type and for directories saved before the header's record existed, that
    the sizes namesmith.json declares (vocabulary, n_layer, n_embd, block_size, order, members, components,
    labels: `CharModel.declared_sizes`) are those of the tensors in the file: a Transformer's n_layer edited
    to 10^5 was 292 s and 4.4 GB of building before this; now it is refused from the header's shapes."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise CheckpointError(f"{path}: unreadable safetensors file (tensor {name!r} has no valid shape)")
        shapes[name] = tuple(shape)
    cls = model_class(meta["model_type"])
    try:
        for size, declared, held in cls.declared_sizes(vocab_size, meta["model_config"], shapes):
            if declared != held:
                raise CheckpointError(f"{path.parent / META_FILE}: declares {size} {declared!r}, but the weights "
                                      f"({path.name}) hold {'none' if held is None else held}; the file was edited "
                                      "or belongs to another model")
    except (TypeError, KeyError, AttributeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{path.parent / META_FILE}: the model config does not fit {cls.model_type} ({e})") \
            from None


def _check_header(path: Path, header: dict[str, Any], meta: dict[str, Any]) -> None:
    """Compare the model record in a weights file's header with namesmith.json's: the declared vocabulary and
    config must be those the tensors were saved with. An edited vocabulary (one more character: a count model
    decoded its keys in another base and printed garbage; 60,000 more: 28.8 GB allocated) or config is refused
    at once. Files saved before the record existed are checked by their sizes (`_check_declared_sizes`) and
    their values (`load_weights`)."""
    stored = header.get("__metadata__", {}).get(RECORD_KEY) if isinstance(header.get("__metadata__"), dict) else None
    if not isinstance(stored, str):
        return
    saved = _parse_json(path, stored.encode())
    declared = {key: meta.get(key) for key in ("model_type", "model_config", "vocab")}
    for key, what in (("model_type", "model type"), ("vocab", "vocabulary"), ("model_config", "model config")):
        if not isinstance(saved, dict) or saved.get(key) != declared[key]:
            raise CheckpointError(f"{path.parent / META_FILE}: its {what} is not the one the weights were saved "
                                  f"with ({path.name}, a {saved.get('model_type') if isinstance(saved, dict) else '?'} "
                                  "model); the file was edited or belongs to another model")


def _upgrade_format_1(meta: dict[str, Any]) -> None:
    """Format 1 saved an n-gram mix as its inner type with an "ngram_mix" entry in the config."""
    config = meta.get("model_config")
    if not isinstance(config, dict) or not isinstance(config.get("ngram_mix"), dict):
        return
    inner = {k: v for k, v in config.items() if k != "ngram_mix"}
    mix = config["ngram_mix"]
    meta["model_config"] = {"model_type": meta.get("model_type"), "model": inner, "ngram": mix.get("ngram"),
                            "weights": mix.get("weights")}
    meta["model_type"] = "ngram-mix"


# The data record's fields that commands rely on, with their types (bool is not an int here).
_DATA_FIELDS: dict[str, tuple[type, ...]] = {
    "path": (str,), "sha256": (str,), "lowercase": (bool,), "encoding": (str,), "max_line_length": (int,),
    "dedupe": (bool,), "split_seed": (int,), "max_word_length": (int,),
}


def _check_record(path: Path, meta: dict[str, Any], key: str, fields: dict[str, tuple[type, ...]]) -> None:
    record = meta.get(key)
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: the {key} record is missing or malformed")
    for name, types in fields.items():
        value = record.get(name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise CheckpointError(f"{path}: {key}.{name} is missing or malformed")
    if record["max_word_length"] < 0 or record["max_line_length"] < 1:
        raise CheckpointError(f"{path}: {key} record holds impossible lengths")


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu", *,
                    with_train_state: bool = False) -> Checkpoint:
    """Load a model directory, checking format, hashes, vocabulary and weight shapes."""
    directory = Path(directory)
    meta = read_meta(directory)
    vocab = Vocab.saved(meta["vocab"], directory / META_FILE)
    cls = model_class(meta["model_type"])
    tensors = _load_tensors(directory, meta.get("weights"), "weights",
                            lambda path, header: _check_model_record(path, header, meta, vocab.size))
    try:
        model = cls.from_config_dict(vocab.size, meta["model_config"])
        model.load_weights(tensors)
        if "calibration" in meta:
            model.calibration = Calibration.from_dict(meta["calibration"], vocab.size)
        if "label_calibrations" in meta:
            if model.condition is None or not hasattr(model, "set_label_calibrations"):
                raise CheckpointError(f"label calibrations apply to conditional count models, not {model.model_type}")
            model.set_label_calibrations(LabelCalibrations.from_dict(meta["label_calibrations"], vocab.size,
                                                                     model.condition))
    except (NamesmithError, TypeError, ValueError, OverflowError, RuntimeError) as e:
        raise CheckpointError(f"{directory / META_FILE}: {e}") from None
    model.to(device).eval()
    train_state = None
    if with_train_state and "train_state" in meta:
        entry = meta["train_state"]
        if not isinstance(entry, dict) or not isinstance(entry.get("meta", {}), dict):
            raise CheckpointError(f"{directory / META_FILE}: the training state entry is malformed")
        train_state = {"tensors": _load_tensors(directory, entry, "training state"), "meta": entry.get("meta", {})}
    return Checkpoint(model, vocab, meta, train_state)
