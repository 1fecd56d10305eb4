"""Where words come from: the catalogue's built-in sets, table files, and plain word lists.

`DataConfig.path` names one of:
- a built-in set of the catalogue (`builtin`, `us`, `israel`, `world`: namesmith.data.catalogue); to
  read a file that happens to have such a name, write it as a path (`./us`);
- a table file: a header row naming a name column (`name`, `first_name`...: see namesmith.data.tables),
  separated by tabs, semicolons or commas, then rows; the header is never taken for a name;
- a plain word list, one name per line (namesmith.data.words).

A file that looks like a table without a name column (a header of other known columns, or lines
that all split into the same fields at a semicolon or comma) is refused in one line saying what
was found: read as words, its header and separators would become names.

Tables and the catalogue's sets may list a name on many rows (per sex, decade...); learned
without conditions, each distinct name counts once, in order of first appearance.
"""

from __future__ import annotations

from pathlib import Path

from namesmith.core.casing import fold, resolve
from namesmith.core.errors import DataError
from namesmith.core.io import sha256_file
from namesmith.data.catalogue import DATASETS, load_dataset
from namesmith.data.tables import Table, aggregate, not_a_table_message, read_table, sniff
from namesmith.data.words import BUILTIN, DataConfig, decode_text, fingerprint, prepare_words, read_words

SNIFF_BYTES = 1 << 16  # how much of a file is read to see whether it starts with a table header


def is_catalogue(path: str | Path) -> bool:
    """Whether `path` names a built-in set rather than a file."""
    return str(path) in DATASETS


def is_table_file(path: str | Path, encoding: str = "utf-8") -> bool:
    """Whether a file is a table (`tables.sniff` on its first lines finds a name column); a
    `DataError` if it looks like a table without one (`tables.not_a_table_message`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False  # reading it as a word list reports the problem
    try:
        text = decode_text(head, path, encoding)
    except DataError:
        return False
    if len(head) == SNIFF_BYTES:  # the last line may be cut: sniff whole lines only
        text = text[: text.rfind("\n") + 1] or text
    layout = sniff(text)
    if layout is not None and layout.name_at is None:
        raise DataError(not_a_table_message(str(path), layout))
    return layout is not None


def read_source(config: DataConfig) -> tuple[list[str], str]:
    """The words of `config.path` as the model learns them, and their casing (see namesmith.core.casing)."""
    path = config.path
    if path == BUILTIN or not (is_catalogue(path) or is_table_file(path, config.encoding)):
        return read_words(config)
    if is_catalogue(path):
        table = load_dataset(path, max_line_length=config.max_line_length)
    else:
        table = read_table(path, encoding=config.encoding, max_line_length=config.max_line_length)
    return prepare_words(aggregate(table).names, config)


def read_labelled_source(config: DataConfig) -> tuple[Table, str] | None:
    """A table source's rows with their names as the model learns them (and their casing), or None
    for a plain word list. Conditioned and weighted training, and every table, read rows this way
    (namesmith.data.labelled): the same name may be on many rows."""
    path = config.path
    if not (is_catalogue(path) or is_table_file(path, config.encoding)):
        return None
    if is_catalogue(path):
        table = load_dataset(path, max_line_length=config.max_line_length)
    else:
        table = read_table(path, encoding=config.encoding, max_line_length=config.max_line_length)
    casing = resolve(table.names, config.case)
    folded = Table(names=fold(table.names, casing), counts=table.counts, labels=table.labels, source=table.source,
                   count_column=table.count_column, problems=table.problems)
    return folded, casing


def source_fingerprint(path: str | Path) -> str:
    """sha256 of the file behind a data path (a built-in set's own file for its name)."""
    if is_catalogue(path) and str(path) != BUILTIN:
        return sha256_file(DATASETS[str(path)].path())
    return fingerprint(path)
