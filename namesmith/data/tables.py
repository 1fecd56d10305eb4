"""Word tables: names with counts and labels (sex, decade, origin, ...), read safely.

A plain word list says only *which* names exist. Real name data says more: how many babies got
each name, of which sex, in which decade or country. A *table* carries that:

    name,sex,decade,count            name<TAB>locale<TAB>sex
    Leslie,F,1950s,12345             José<TAB>es_ES<TAB>M
    Leslie,M,1950s,6789              ...

Format (see `parse_table`):

- The first non-blank line is the header; its separator is sniffed (`sniff`): a tab, else a
  semicolon (Excel's CSV where the comma is the decimal mark), else a comma, the first of them
  that splits the header into columns of which one holds the names. Tab-separated lines are split
  at tabs (no quoting); the others are read with Python's `csv` module (standard double-quote
  quoting: `"Smith, Jr.",M` and `""` for a literal quote; spaces after a separator are ignored, so
  `a, "b"` is two fields `a` and `b`).
- One column holds the name: `name`, `first_name`, `given_name` or `forename` (any case, with or
  without `_`, `-` or a space: `First Name`), or the one named by `name_column`.
- An optional column holds a count: the first of `count`, `n`, `births`, `number`, `frequency`,
  `freq`, `occurrences` (as loosely), or `count_column`. Without one every row counts 1. A count
  is a non-negative integer written with the digits 0-9.
- Every other column is a label (its values are strings: `F`, `1950s`, `es_ES`); only the labels
  a model is conditioned on are checked (an empty cell of a `Notes` column left out is no error).
- A file that looks like a table but has no name column (a header of known column names such as
  `gender` or `year`, or lines that all split into the same number of fields at `;` or `,`) is
  refused by the readers of namesmith.data.sources, naming what was found, rather than read as words.
- The same name may appear on many rows (one per sex, decade, ...). Blank lines, and rows whose
  fields are all empty (a spreadsheet's trailing `,,,`), are skipped.
- Fields are stripped of surrounding whitespace. Names are cleaned like plain word lists
  (`data.clean_line`): byte-order marks dropped, optionally lowercased, NFC-normalised; names longer
  than `max_line_length` or holding control characters are skipped with one warning per kind.
  Labels are NFC-normalised and never lowercased.
- Anything else wrong is a `DataError` in one line naming the file, line and column: no name
  column, a count that is not a non-negative integer, a row with the wrong number of fields, an
  empty name or label, a label holding a control character.

For evaluation a table is split **by distinct name** (`split_by_name`): every row of a name goes
to the same part, so a held-out name is unseen in training under every label. How rows weigh in
training is `weights` (`none`, `count`, `log`) after `aggregate`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from namesmith.core.errors import ConfigError, DataError
from namesmith.data.words import SkippedLines, clean_word, decode_text, has_bad_chars, read_file_bytes

log = logging.getLogger("namesmith")

NAME_COLUMN = "name"
# Header names, compared loosely (`_loose`: any case, without "_", "-" or spaces): spreadsheets
# exported from name registries say "First Name", "given_name" or "births" as often as "name".
NAME_COLUMNS = (NAME_COLUMN, "firstname", "givenname", "forename")
COUNT_COLUMNS = ("count", "n", "births", "number", "frequency", "freq", "occurrences")  # the first in the header
# Other columns name tables have: a header of only such names (and none of the above) is a table
# without a name column, refused rather than read as words.
LABEL_COLUMNS = ("sex", "gender", "year", "decade", "country", "locale", "origin", "language", "rank", "state")
DELIMITERS = ("\t", ";", ",")  # in the order they are tried
SNIFF_LINES = 50  # lines `sniff` reads to see whether every line has the same fields
WEIGHTINGS = ("share", "none", "count", "log")
PARTS = ("train", "val", "test")

_COUNT_RE = re.compile(r"[0-9]+")
_INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True, eq=False)
class Table:
    """Rows of (name, count, labels): what a table file holds, after cleaning.

    `labels` maps each label column (header order) to its value on every row. `count_column` is
    the header's count column, or None when the file had none (then every count is 1). Treat a
    table as read-only: `select`, `where`, `aggregate` and `split_by_name` make new ones.
    """

    names: list[str]
    counts: np.ndarray  # (rows,) int64
    labels: dict[str, list[str]]
    source: str = "<table>"
    count_column: str | None = None
    # label column -> why its values cannot be used (the first empty or bad cell), raised when it is used
    problems: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.counts.dtype == np.int64 and self.counts.shape == (len(self.names),)
        assert all(len(values) == len(self.names) for values in self.labels.values())

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        counts = f"from {self.count_column!r}" if self.has_counts else "all 1"
        return (f"Table({self.source!r}: {len(self)} rows, {len(set(self.names))} distinct names, "
                f"labels {self.label_columns}, counts {counts})")

    @property
    def label_columns(self) -> list[str]:
        return list(self.labels)

    @property
    def has_counts(self) -> bool:
        """True if the counts came from a count column (not the default 1 per row)."""
        return self.count_column is not None

    def distinct_names(self) -> list[str]:
        """Every name once, sorted by code point."""
        return sorted(set(self.names))

    def label_values(self, column: str) -> list[str]:
        """The distinct values of one label column, sorted."""
        return sorted(set(self._column(column, "column")))

    def codes(self, column: str) -> tuple[list[str], np.ndarray]:
        """(sorted values, int64 index of each row's value): a label column as integers for a model."""
        values = self.label_values(column)
        index = {value: i for i, value in enumerate(values)}
        codes = np.fromiter((index[v] for v in self.labels[column]), dtype=np.int64, count=len(self))
        return values, codes

    def select(self, rows: Sequence[int] | np.ndarray) -> Table:
        """The table of the given rows (indices, or a boolean mask of length len(self)), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            assert rows.shape == (len(self),), "a boolean mask needs one entry per row"
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False)
        index = rows.tolist()
        return Table(names=[self.names[i] for i in index], counts=self.counts[rows].copy(),
                     labels={c: [v[i] for i in index] for c, v in self.labels.items()},
                     source=self.source, count_column=self.count_column, problems=self.problems)

    def where(self, values: Mapping[str, str]) -> Table:
        """The rows whose labels equal `values` ({column: value}), e.g. {"sex": "F"}.

        An unknown column or value is a `ConfigError` listing the known ones.
        """
        mask = np.ones(len(self), dtype=bool)
        for column, value in values.items():
            known = self.label_values(column)  # raises for an unknown column
            if value not in known:
                shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
                raise ConfigError(f"where: {column}={value!r} is not a value of {column!r} (values: {shown})")
            mask &= np.fromiter((v == value for v in self.labels[column]), dtype=bool, count=len(self))
        return self.select(mask)

    def _column(self, column: str, parameter: str) -> list[str]:
        """A label column's values, to be used: a `ConfigError` if there is no such column, a `DataError`
        naming its first empty or bad cell if it has one (columns no one uses are never checked)."""
        if column not in self.labels:
            known = ", ".join(self.labels) or "none"
            raise ConfigError(f"{parameter}: {self.source} has no label column {column!r} (labels: {known})")
        if column in self.problems:
            raise DataError(self.problems[column])
        return self.labels[column]


@dataclass(frozen=True)
class Layout:
    """How a delimited text is laid out, as `sniff` found it.

    `header` is the first line's fields when it is a header (of a name column, or of known column
    names), None when every line splits into the same fields but none is a header; `name_at` the
    name column's index, None when there is none (then the text is a table that cannot be read).
    """

    delimiter: str
    header: list[str] | None
    name_at: int | None

    @property
    def separator(self) -> str:
        return {"\t": "tab", ";": "semicolon", ",": "comma"}[self.delimiter]


def sniff(text: str, name_column: str | None = None) -> Layout | None:
    """Whether the text (or its first lines) is a delimited table, and how; None for a word list.

    In order: a header with a name column (`NAME_COLUMNS`, or `name_column`) at a tab, a semicolon
    or a comma; a header with another known column (`COUNT_COLUMNS`, `LABEL_COLUMNS`: a table
    whose names cannot be found); the first `SNIFF_LINES` lines all split into the same two or more
    fields at a semicolon or a comma (a table without a header: names do not all hold one). Lines
    of names with a tab and no header are a word list (the first column is the name:
    `data.clean_line`), as are names of which some hold a comma (`Smith, Jr.`).
    """
    lines = _first_lines(text, SNIFF_LINES)
    if not lines:
        return None
    wanted = {_loose(name_column)} if name_column is not None else set(NAME_COLUMNS)
    split = {d: _split(lines[0], d) for d in DELIMITERS}
    for d, fields in split.items():
        loose = [_loose(f) for f in fields]
        at = next((i for i, f in enumerate(loose) if f in wanted), None)
        if len(fields) >= 2 and at is not None:
            return Layout(d, fields, at)
    known = set(NAME_COLUMNS + COUNT_COLUMNS + LABEL_COLUMNS)
    for d, fields in split.items():
        if len(fields) >= 2 and any(_loose(f) in known for f in fields):
            return Layout(d, fields, None)
    for d in DELIMITERS[1:]:
        widths = {len(_split(line, d)) for line in lines}
        if len(widths) == 1 and widths.pop() >= 2:
            return Layout(d, None, None)
    return None


def is_table(text_or_first_line: str, name_column: str | None = None) -> bool:
    """Does this text (or its first line) start with a table header naming a name column (`sniff`)?"""
    layout = sniff(text_or_first_line, name_column)
    return layout is not None and layout.name_at is not None


def not_a_table_message(source: str, layout: Layout) -> str:
    """Why a text that `sniff` found to be a table without a name column is refused (one line)."""
    names = "'" + "', '".join(NAME_COLUMNS[:1] + ("first_name", "given_name", "forename")) + "'"
    if layout.header is not None:
        return (f"{source}: looks like a {layout.separator}-separated table (columns: {', '.join(layout.header)}) "
                f"but no column holds the names; call that column {names} (or choose it with name_column)")
    return (f"{source}: every line splits into the same fields at a {layout.separator}, like a table without a "
            f"header; add a header row naming the columns (the names' column {names}), or remove the "
            f"{layout.separator}s if they belong to the names")


def parse_table(text: str, source: str = "<text>", *, name_column: str | None = None,
                count_column: str | None = None, lowercase: bool = False, max_line_length: int = 64) -> Table:
    """Read a table (header + rows, TSV if the header has a tab, else CSV); see the module docstring."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.replace("\ufeff", "").strip():
        raise DataError(f"{source}: is empty (no header and no names in it)")
    layout = sniff(text, name_column)
    records = _records(text, source, "\t" if layout is None else layout.delimiter)
    header_line, header = next(records)
    header = [h.replace("\ufeff", "").strip() for h in header]
    columns = _check_header(header, header_line, source)
    name_at = _find_column(columns, name_column, NAME_COLUMNS, "name", header_line, source)
    count_at = _find_column(columns, count_column, COUNT_COLUMNS, "count", header_line, source, exclude=name_at)
    label_at = [i for i in range(len(columns)) if i not in (name_at, count_at)]

    names: list[str] = []
    counts: list[int] = []
    labels: list[list[str]] = [[] for _ in label_at]
    problems: dict[str, str] = {}  # checked when a column is used (Table._column)
    skipped = SkippedLines(max_line_length)
    for lineno, fields in records:
        fields = [f.strip() for f in fields]
        if not any(fields):
            continue
        if len(fields) != len(columns):
            raise DataError(_field_count_message(source, lineno, len(fields), columns))
        name = clean_word(fields[name_at]).strip()
        if lowercase:
            name = unicodedata.normalize("NFC", name.lower())
        where = f"{source}: line {lineno}, column {columns[name_at]!r}"
        if not name:
            raise DataError(f"{where}: the name is empty")
        if skipped.skip(name, lineno):
            continue
        row_labels = [unicodedata.normalize("NFC", fields[i]) for i in label_at]
        for i, value in zip(label_at, row_labels):
            if columns[i] not in problems and (not value or has_bad_chars(value)):
                why = "the label is empty" if not value else f"the label {value!r} holds a control character"
                problems[columns[i]] = f"{source}: line {lineno}, column {columns[i]!r}: {why}"
        names.append(name)
        counts.append(_parse_count(fields[count_at], source, lineno, columns[count_at]) if count_at is not None else 1)
        for values, value in zip(labels, row_labels):
            values.append(value)
    skipped.warn(source, rows=True)
    if not names:
        if skipped.any:
            raise DataError(f"{source}: has no usable names (every row was skipped)")
        raise DataError(f"{source}: has a header (line {header_line}) but no rows")
    return Table(names=names, counts=np.array(counts, dtype=np.int64),
                 labels={columns[i]: values for i, values in zip(label_at, labels)}, source=source,
                 count_column=columns[count_at] if count_at is not None else None, problems=problems)


def read_table(path: str | Path, *, encoding: str = "utf-8", name_column: str | None = None,
               count_column: str | None = None, lowercase: bool = False, max_line_length: int = 64) -> Table:
    """Read a table file (decoded like a word list: `data.decode_text`); see `parse_table`."""
    text = decode_text(read_file_bytes(path), path, encoding)
    return parse_table(text, str(path), name_column=name_column, count_column=count_column,
                       lowercase=lowercase, max_line_length=max_line_length)


def split_by_name(table: Table, seed: int = 42,
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, Table]:
    """Train/val/test tables that share no name: the split is by distinct name, not by row.

    The sorted distinct names are shuffled with `random.Random(seed)` and cut at int(f0*n) and
    int((f0+f1)*n), as `data.split_words` cuts a word list (with the default fractions the cut is
    the same: the training part keeps at least one name; fewer than 20 names get a warning). Every
    row then goes to the part of its name, keeping its order, so a held-out name is unseen in
    training under every label and held-out figures are honest.
    """
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions) \
            or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(f"fractions: expected three non-negative numbers that sum to 1, got {fractions}")
    names = table.distinct_names()
    random.Random(seed).shuffle(names)
    n = len(names)
    a = max(int(fractions[0] * n), 1)
    b = max(int((fractions[0] + fractions[1]) * n), a)
    part_of = {name: 0 for name in names[:a]}
    part_of.update({name: 1 for name in names[a:b]})
    part_of.update({name: 2 for name in names[b:]})
    row_part = np.fromiter((part_of[name] for name in table.names), dtype=np.int8, count=len(table))
    parts = {part: table.select(row_part == k) for k, part in enumerate(PARTS)}
    if n < 20:
        log.warning(f"{table.source}: only {n} distinct name(s) to split by name: {a} train, {b - a} validation, "
                    f"{n - b} test; held-out losses are missing or noisy")
    return parts


def aggregate(table: Table, condition: tuple[str, ...] = ()) -> Table:
    """Merge the rows that share (name, values of the `condition` columns), summing their counts.

    The result has the `condition` label columns only, one row per distinct combination, in order
    of first appearance. `aggregate(table, ())` is one row per distinct name; `("sex",)` one per
    (name, sex), so a unisex name is two rows. Weighting the result with `none` counts each
    distinct (name, conditioned labels) once.
    """
    condition = tuple(condition)
    columns = [table._column(c, "condition") for c in condition]
    if len(set(condition)) != len(condition):
        raise ConfigError(f"condition: a column is named twice in {condition}")
    index: dict[tuple[str, ...], int] = {}
    inverse = np.fromiter((index.setdefault(key, len(index)) for key in zip(table.names, *columns)),
                          dtype=np.int64, count=len(table))
    counts = np.zeros(len(index), dtype=np.int64)
    np.add.at(counts, inverse, table.counts)
    keys = list(index)
    return Table(names=[key[0] for key in keys], counts=counts,
                 labels={c: [key[1 + i] for key in keys] for i, c in enumerate(condition)},
                 source=table.source, count_column=table.count_column)


def weights(table: Table, weighting: str) -> np.ndarray:
    """How much each row weighs in training, float64 of shape (rows,).

    - `none`: 1 per row. Apply it to `aggregate(table, condition)` to count each distinct
      (name, conditioned labels) once, whatever its count (what plain word lists do).
    - `count`: the row's count (births: realistic frequencies).
    - `log`: 1 + ln(count), a middle way that keeps rare names audible.

    - `share`: the row's share of its name's count (its count over the total count of the rows of
      that name): every distinct name weighs 1 in all, shared among the label values it was given
      under. Without a condition it is `none`; conditioned on sex, a name given to 10,000 girls and
      5 boys is a girl's name, where `none` makes it a boy's name as much as a girl's.

    A row whose count is 0 weighs 0 under `count`, `log` and `share` (a name whose rows all count
    0 shares 1 equally among them) and 1 under `none`. Tables without a count column count 1 per
    row, so `none`, `count` and `log` give 1 and `share` splits each name equally among its rows.
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting: unknown {weighting!r} (choose {', '.join(WEIGHTINGS)})")
    counts = table.counts.astype(np.float64)
    if weighting == "none":
        return np.ones(len(table), dtype=np.float64)
    if weighting == "count":
        return counts
    if weighting == "share":
        names, of = np.unique(np.array(table.names, dtype=object), return_inverse=True)
        totals = np.bincount(of, weights=counts, minlength=len(names))
        rows = np.bincount(of, minlength=len(names))
        return np.where(totals[of] > 0, counts / np.where(totals[of] > 0, totals[of], 1), 1.0 / rows[of])
    out = np.zeros(len(table), dtype=np.float64)
    positive = counts > 0
    out[positive] = 1.0 + np.log(counts[positive])
    return out


# --- reading -------------------------------------------------------------------------------------

def _first_lines(text: str, n: int) -> list[str]:
    """The first `n` non-blank lines (byte-order marks dropped)."""
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.replace("\ufeff", "")
        if line.strip():
            lines.append(line)
            if len(lines) == n:
                break
    return lines


def _loose(column: str) -> str:
    """A column name as header names are compared: any case, without "_", "-" or spaces."""
    return "".join(c for c in column.casefold() if c not in "_- ")


def _split(line: str, delimiter: str) -> list[str]:
    """One line's fields at `delimiter` (tab: plainly; else as CSV); [] if it is not valid CSV."""
    if delimiter == "\t":
        return [f.strip() for f in line.split("\t")]
    try:
        return [f.strip() for f in next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])]
    except csv.Error:
        return []


def _records(text: str, source: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank record; the first is the header."""
    if delimiter == "\t":
        for lineno, line in enumerate(text.split("\n"), start=1):
            if line.replace("\ufeff", "").strip():
                yield lineno, line.split("\t")
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        for fields in reader:
            if fields and any(f.replace("\ufeff", "").strip() for f in fields):
                yield reader.line_num, fields
    except csv.Error as e:
        raise DataError(f"{source}: line {reader.line_num}: not valid CSV ({e})") from None


def _check_header(header: list[str], lineno: int, source: str) -> list[str]:
    seen: dict[str, str] = {}
    for i, column in enumerate(header, start=1):
        if not column:
            raise DataError(f"{source}: line {lineno} (the header): column {i} has no name")
        if column.casefold() in seen:
            raise DataError(f"{source}: line {lineno} (the header): column {column!r} appears twice")
        seen[column.casefold()] = column
    return header


def _find_column(columns: list[str], wanted: str | None, defaults: tuple[str, ...], what: str,
                 lineno: int, source: str, exclude: int | None = None) -> int | None:
    """Index of the name or count column: `wanted` if given, else the first of `defaults` in the header
    (compared loosely: `_loose`)."""
    loose = [_loose(c) for c in columns]
    if wanted is not None:
        if _loose(wanted) in loose:
            at = loose.index(_loose(wanted))
            if at == exclude:
                raise ConfigError(f"{what}_column: {wanted!r} is already the name column")
            return at
        raise DataError(f"{source}: line {lineno} (the header): no {what} column {wanted!r} "
                        f"(columns: {', '.join(columns)})")
    for default in defaults:
        if default in loose and loose.index(default) != exclude:
            return loose.index(default)
    if what == "name":
        raise DataError(f"{source}: line {lineno} (the header): no name column (columns: {', '.join(columns)}); "
                        "name one 'name' or choose one with name_column")
    return None


def _field_count_message(source: str, lineno: int, got: int, columns: list[str]) -> str:
    if got < len(columns):
        detail = f"column {columns[got]!r} is missing"
    else:
        detail = f"an extra field follows column {columns[-1]!r}"
    return (f"{source}: line {lineno}: {got} field(s) where the header has {len(columns)} "
            f"({', '.join(columns)}); {detail}")


def _parse_count(field: str, source: str, lineno: int, column: str) -> int:
    if not _COUNT_RE.fullmatch(field):
        raise DataError(f"{source}: line {lineno}, column {column!r}: {field!r} is not a non-negative integer")
    count = int(field)
    if count > _INT64_MAX:
        raise DataError(f"{source}: line {lineno}, column {column!r}: {field} is too large (at most {_INT64_MAX})")
    return count
