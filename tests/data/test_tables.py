"""Word tables (namesmith/data/tables.py): reading TSV/CSV, every bad-table error, the split by
distinct name, aggregation and weighting, checked against hand computations."""

from __future__ import annotations

import logging
import math
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from namesmith.core.errors import ConfigError, DataError
from namesmith.data.tables import Table, aggregate, is_table, parse_table, read_table, split_by_name, weights
from namesmith.data.words import split_words

TSV = "name\tsex\tdecade\tcount\nleslie\tF\t1950s\t12\nleslie\tM\t1950s\t8\nemma\tF\t2010s\t30\nleslie\tF\t1950s\t3\n"


def write(tmp_path: Path, text: str, name: str = "t.tsv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def bad(tmp_path: Path, text: str, name: str = "bad.csv", **options) -> str:
    """The one-line message of the DataError that reading `text` from a file, and conditioning on every
    label column, raises (a label column is checked when it is used)."""
    with pytest.raises(DataError) as e:
        table = read_table(write(tmp_path, text, name), **options)
        aggregate(table, tuple(table.label_columns))
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(tmp_path / name) + ":")
    return message


# --- reading ---------------------------------------------------------------------------------------

def test_tsv_rows_counts_labels_and_duplicates(tmp_path):
    table = read_table(write(tmp_path, TSV))
    assert table.names == ["leslie", "leslie", "emma", "leslie"]  # the same name on many rows, in file order
    assert table.counts.dtype == np.int64 and table.counts.tolist() == [12, 8, 30, 3]
    assert table.labels == {"sex": ["F", "M", "F", "F"], "decade": ["1950s", "1950s", "2010s", "1950s"]}
    assert table.count_column == "count" and table.has_counts
    assert table.source == str(tmp_path / "t.tsv")
    assert table.distinct_names() == ["emma", "leslie"]
    assert table.label_values("sex") == ["F", "M"]
    assert table.label_columns == ["sex", "decade"]
    values, codes = table.codes("decade")
    assert values == ["1950s", "2010s"] and codes.tolist() == [0, 0, 1, 0]


def test_csv_with_standard_quoting_and_n_column(tmp_path):
    text = 'Name,origin,N\n"Smith, Jr.",en,4\n"O""Brien",ga,0\n  zoë , "fr" , 2 \n'
    table = read_table(write(tmp_path, text, "t.csv"))
    assert table.names == ["Smith, Jr.", 'O"Brien', "zoë"]  # quoted comma and quote; fields stripped
    assert table.labels == {"origin": ["en", "ga", "fr"]}
    assert table.counts.tolist() == [4, 0, 2] and table.count_column == "N"


def test_a_tab_in_the_header_means_tsv_even_with_commas(tmp_path):
    table = read_table(write(tmp_path, "name\tnote\nanna\ta, b\n"))
    assert table.names == ["anna"] and table.labels == {"note": ["a, b"]}


def test_no_count_column_counts_one_and_name_column_option(tmp_path):
    text = "first,sex\nann,F\nbo,M\n"
    table = read_table(write(tmp_path, text, "t.csv"), name_column="first")
    assert table.names == ["ann", "bo"] and table.counts.tolist() == [1, 1]
    assert not table.has_counts and table.count_column is None
    other = read_table(write(tmp_path, "name,births,sex\nann,5,F\n", "u.csv"), count_column="births")
    assert other.counts.tolist() == [5] and other.labels == {"sex": ["F"]}
    # without count_column, 'births' is a count column too (issue 27: the names spreadsheets use)
    assert read_table(tmp_path / "u.csv").counts.tolist() == [5]
    # and a column named otherwise is a label
    assert read_table(write(tmp_path, "name,score,sex\nann,5,F\n", "v.csv")).labels == {"score": ["5"], "sex": ["F"]}


def test_names_are_cleaned_like_word_lists(tmp_path, caplog):
    decomposed = unicodedata.normalize("NFD", "Zoë")
    text = f"\ufeffname,sex\n{decomposed},F\nÉMILE,M\n{'x' * 70},F\nbad\x07name,F\n\n,,\n"
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        table = read_table(write(tmp_path, text, "t.csv"), lowercase=True)
    assert table.names == ["zoë", "émile"]  # BOM dropped, NFC, lowercased; blank and all-empty rows skipped
    assert len(table.names[0]) == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert any("longer than --max-line-length=64" in w and "line 4" in w for w in warnings)
    assert any("control characters" in w and "line 5" in w for w in warnings)
    assert read_table(tmp_path / "t.csv").labels["sex"] == ["F", "M"]  # labels are never lowercased


def test_crlf_and_multiline_csv_line_numbers(tmp_path):
    table = parse_table("name,sex\r\nann,F\r\nbo,M\r\n", "x")
    assert table.names == ["ann", "bo"]
    # a quoted field may span lines; errors name the line where the record ends
    message = bad(tmp_path, 'name,sex\n"ann",F\n"bo",""\n')
    assert "line 3" in message and "'sex'" in message


def test_is_table():
    assert is_table("name\tsex\n")
    assert is_table("Name,Sex,Count")
    assert is_table("\n\ufeffname,n\nann,1")  # the first non-blank line, BOM dropped
    assert is_table("first;x\n") is False
    assert not is_table("emma\nolivia\n")  # a plain list
    assert not is_table("name\n")  # no separator
    assert not is_table("given,sex\n")  # no name column ...
    assert is_table("given,sex\n", name_column="given")  # ... unless named
    assert not is_table("")


# --- every bad table: one line naming file, line and column ----------------------------------------

def test_no_name_column_lists_the_header(tmp_path):
    message = bad(tmp_path, "given,sex\nann,F\n")
    assert "line 1" in message and "no name column" in message and "given, sex" in message
    message = bad(tmp_path, "name,sex\nann,F\n", name_column="first")
    assert "no name column 'first'" in message and "name, sex" in message
    message = bad(tmp_path, "name,sex\nann,F\n", count_column="births")
    assert "no count column 'births'" in message


@pytest.mark.parametrize("count", ["-3", "1.5", "x", "", "1e3", "٣"])
def test_count_not_a_non_negative_integer(tmp_path, count):
    message = bad(tmp_path, f"name,sex,count\nann,F,4\nbo,M,{count}\n")
    assert f"line 3, column 'count': {count!r} is not a non-negative integer" in message


def test_count_too_large(tmp_path):
    assert "too large" in bad(tmp_path, f"name,count\nann,{2 ** 63}\n")
    assert read_table(write(tmp_path, f"name,count\nann,{2 ** 63 - 1}\n", "ok.csv")).counts[0] == 2 ** 63 - 1


def test_wrong_number_of_fields(tmp_path):
    message = bad(tmp_path, "name,sex,count\nann,F,1\nbo,M\n")
    assert "line 3" in message and "2 field(s) where the header has 3" in message and "'count' is missing" in message
    message = bad(tmp_path, "name\tsex\nann\tF\tx\n", name="bad.tsv")
    assert "line 2" in message and "extra field follows column 'sex'" in message


def test_empty_name_and_empty_label(tmp_path):
    assert "line 2, column 'name': the name is empty" in bad(tmp_path, "name,sex\n,F\n")
    assert "line 3, column 'sex': the label is empty" in bad(tmp_path, "name,sex\nann,F\nbo, \n")


def test_label_with_a_control_character(tmp_path):
    message = bad(tmp_path, 'name,origin\nann,"a\tb"\n')
    assert "line 2, column 'origin'" in message and "control character" in message
    assert "column 'origin'" in bad(tmp_path, "name,origin\nann,x\x1by\n")


def test_bad_headers_and_empty_files(tmp_path):
    assert "column 2 has no name" in bad(tmp_path, "name,,sex\nann,x,F\n")
    assert "column 'Sex' appears twice" in bad(tmp_path, "name,sex,Sex\nann,F,F\n")
    assert "is empty" in bad(tmp_path, "\n \n")
    assert "has a header (line 1) but no rows" in bad(tmp_path, "name,sex\n\n")
    assert "no usable names" in bad(tmp_path, f"name,sex\n{'y' * 99},F\n")
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="count_column: 'name' is already the name column"):
        parse_table("name,sex\nann,F\n", count_column="name")


# --- split by distinct name ------------------------------------------------------------------------

def make_table(n_names: int, rows_per_name: int = 3) -> Table:
    names, sexes, counts = [], [], []
    for i in range(n_names):
        for j in range(rows_per_name):
            names.append(f"n{i:03d}")
            sexes.append("FM"[j % 2])
            counts.append(i + j)
    return Table(names=names, counts=np.array(counts, dtype=np.int64), labels={"sex": sexes},
                 count_column="count")


def test_split_by_distinct_name_is_disjoint_complete_and_deterministic():
    table = make_table(100)
    parts = split_by_name(table, seed=42)
    name_sets = {part: set(t.names) for part, t in parts.items()}
    assert not name_sets["train"] & name_sets["val"] and not name_sets["train"] & name_sets["test"]
    assert not name_sets["val"] & name_sets["test"]
    assert [len(name_sets[p]) for p in ("train", "val", "test")] == [80, 10, 10]
    assert sum(len(t) for t in parts.values()) == len(table)  # every row somewhere, each name with all its rows
    assert all(len(t) == 3 * len(name_sets[p]) for p, t in parts.items())
    # the same cut as data.split_words on the sorted distinct names (the lecture series' split)
    reference = split_words(table.distinct_names(), seed=42)
    assert name_sets["train"] == set(reference.train) and name_sets["test"] == set(reference.test)
    again = split_by_name(table, seed=42)
    assert all(again[p].names == parts[p].names for p in parts)
    assert split_by_name(table, seed=7)["test"].names != parts["test"].names
    # rows keep their order and their labels and counts
    train = parts["train"]
    rows = [i for i, name in enumerate(table.names) if name in name_sets["train"]]
    assert train.counts.tolist() == table.counts[rows].tolist()
    assert train.labels["sex"] == [table.labels["sex"][i] for i in rows]


def test_split_of_a_tiny_table_keeps_a_training_name(caplog):
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        parts = split_by_name(make_table(1))
    assert len(parts["train"]) == 3 and len(parts["val"]) == 0 and len(parts["test"]) == 0
    assert "only 1 distinct name" in caplog.text
    parts = split_by_name(make_table(10), fractions=(0.5, 0.3, 0.2))
    assert [len(set(parts[p].names)) for p in ("train", "val", "test")] == [5, 3, 2]
    with pytest.raises(ConfigError, match="fractions"):
        split_by_name(make_table(10), fractions=(0.5, 0.6, 0.1))


# --- aggregation and weighting ---------------------------------------------------------------------

def test_aggregate_sums_counts_per_name_and_condition():
    table = parse_table(TSV, "t")
    by_name = aggregate(table)
    assert by_name.names == ["leslie", "emma"] and by_name.counts.tolist() == [23, 30] and by_name.labels == {}
    by_sex = aggregate(table, ("sex",))
    assert list(zip(by_sex.names, by_sex.labels["sex"], by_sex.counts.tolist())) == [
        ("leslie", "F", 15), ("leslie", "M", 8), ("emma", "F", 30)]
    both = aggregate(table, ("decade", "sex"))
    assert len(both) == 3 and both.label_columns == ["decade", "sex"]
    assert int(both.counts.sum()) == int(table.counts.sum())
    with pytest.raises(ConfigError, match=r"condition: .* no label column 'era' \(labels: sex, decade\)"):
        aggregate(table, ("era",))


def test_weights():
    table = parse_table("name,count\na,0\nb,1\nc,10\n", "t")
    assert weights(table, "none").tolist() == [1.0, 1.0, 1.0]
    assert weights(table, "count").tolist() == [0.0, 1.0, 10.0]
    log_weights = weights(table, "log")
    assert log_weights.dtype == np.float64
    assert log_weights.tolist() == [0.0, 1.0, pytest.approx(1 + math.log(10))]
    no_counts = parse_table("name,sex\na,F\nb,M\n", "t")
    assert all(weights(no_counts, w).tolist() == [1.0, 1.0] for w in ("none", "count", "log"))
    with pytest.raises(ConfigError, match="weighting: unknown 'births' \\(choose share, none, count, log\\)"):
        weights(table, "births")


def test_none_after_aggregate_counts_each_distinct_name_and_labels_once():
    table = parse_table(TSV, "t")
    assert weights(aggregate(table, ("sex",)), "none").sum() == 3  # (leslie, F), (leslie, M), (emma, F)
    assert weights(aggregate(table), "none").sum() == 2


def test_select_and_where():
    table = parse_table(TSV, "t")
    assert table.select([2, 0]).names == ["emma", "leslie"]
    mask = np.array([True, False, False, True])
    assert table.select(mask).counts.tolist() == [12, 3]
    females = table.where({"sex": "F"})
    assert females.names == ["leslie", "emma", "leslie"] and females.counts.tolist() == [12, 30, 3]
    assert len(table.where({"sex": "F", "decade": "2010s"})) == 1
    with pytest.raises(ConfigError, match=r"where: sex='X' is not a value of 'sex' \(values: F, M\)"):
        table.where({"sex": "X"})
    with pytest.raises(ConfigError, match="no label column 'era'"):
        table.where({"era": "1950s"})


def test_sniff_finds_the_separator_and_the_name_column():
    from namesmith.data.tables import sniff
    assert sniff("\ufeffname;sex;count\nEmma;F;10\n").delimiter == ";"
    assert is_table("First Name,Gender\nEmma,F\n") and is_table("given_name\tyear\n")
    table = parse_table("\ufeffName;Sex;Births\nEmma;F;10\nLiam;M;12\n", "x.csv")
    assert table.names == ["Emma", "Liam"] and table.counts.tolist() == [10, 12] and table.label_columns == ["Sex"]
    assert sniff("given,sex\nann,F\n").name_at is None  # a table, but its names cannot be found
    assert sniff("Emma;F\nLiam;M\n").header is None  # every line the same fields: a table without a header
    assert sniff("Smith, Jr.\nAnna\n") is None and sniff("emma\t12\nliam\t3\n") is None  # word lists
