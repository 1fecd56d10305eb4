"""Build namesmith's nicknames list (namesmith/catalogue/nicknames.tsv.gz) from the `nicknames` package.

`nicknames` (Apache-2.0; Carlton Northern and Nick Crews, https://github.com/carltonnorthern/nicknames)
ships `names.csv`, a hand-curated list of English given names and their common nicknames as rows
`name1,has_nickname,name2`. It is needed only to rebuild, never at run time: this script writes its
(name, nickname) pairs as a gzip-compressed TSV, deterministic like the other catalogue files
(sorted, gzip level 9, mtime 0, no file name), its data card `NICKNAMES.md` (source, licence,
figures, sha256 of the upstream file and of ours) and the licence text `nicknames.LICENSE`.

What is changed: names are NFC-normalised and lowercased (the upstream file is lowercase already),
rows of other relationships than `has_nickname` are left out (1.0.1 has none), a pair of a name
with itself is dropped, and repeated pairs are kept once.

Usage (from the repository root)::

    pip install -c constraints.txt nicknames
    python scripts/build_nicknames.py              # --out DIR to write elsewhere
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import sys
import unicodedata
from pathlib import Path

from build_catalogue import write_atomic  # scripts/ is on the path when a script runs

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "namesmith" / "catalogue"
PACKAGE = "nicknames"
PINNED = "1.0.1"  # the version the shipped file was built with (constraints.txt)
RELATIONSHIP = "has_nickname"
# The Apache License 2.0 text, which the package's wheel does not include; it is the standard text.
LICENCE_URL = "https://www.apache.org/licenses/LICENSE-2.0.txt"


def upstream_csv() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: {PACKAGE} is not installed (pip install -c constraints.txt {PACKAGE})")
    path = Path(next(iter(spec.submodule_search_locations))) / "names.csv"
    if not path.is_file():
        sys.exit(f"error: {path} not found in the {PACKAGE} package")
    return path


def clean(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip()).lower()


def pairs_of(path: Path) -> tuple[list[tuple[str, str]], int, int]:
    """(name, nickname) pairs, sorted and distinct; the upstream rows read and those of other relationships."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if header != ["name1", "relationship", "name2"]:
        sys.exit(f"error: {path}: unexpected header {header!r}")
    pairs = {(clean(a), clean(b)) for a, relation, b in body if relation == RELATIONSHIP}
    other = sum(relation != RELATIONSHIP for _, relation, _ in body)
    return sorted((a, b) for a, b in pairs if a and b and a != b), len(body), other


def tsv_gz(pairs: list[tuple[str, str]]) -> bytes:
    text = "name\tnickname\n" + "".join(f"{a}\t{b}\n" for a, b in pairs)
    assert "\r" not in text and all("\t" not in a + b for a, b in pairs)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as f:
        f.write(text.encode("utf-8"))
    return buffer.getvalue()


def card(version: str, source: Path, rows: int, other: int, pairs: list[tuple[str, str]], payload: bytes) -> str:
    names = {a for a, _ in pairs}
    nicknames = {b for _, b in pairs}
    upstream_sha = hashlib.sha256(source.read_bytes()).hexdigest()
    return "\n".join([
        "# Nicknames",
        "",
        "`nicknames.tsv.gz` holds common English nicknames of given names: columns `name`, `nickname`, one",
        "row per pair, lowercase, sorted; gzip level 9, mtime 0, no file name. Built by",
        "`scripts/build_nicknames.py` (do not edit by hand; rebuild instead). Read with",
        "`namesmith.data.nicknames.nicknames_of(NAME)`.",
        "",
        f"- Source: the PyPI package `{PACKAGE}` {version} (https://github.com/carltonnorthern/nicknames), its "
        f"hand-curated `names.csv` ({rows:,} rows, sha256 `{upstream_sha}`).",
        "- Licence: Apache-2.0 (Carlton Northern and Nick Crews); the licence text is `nicknames.LICENSE`. "
        "Changes: the rows were reformatted as described below.",
        f"- Built with: {PACKAGE} {version}.",
        f"- Rows: {len(pairs):,} (name, nickname) pairs; {len(names):,} names with nicknames; "
        f"{len(nicknames):,} distinct nicknames.",
        f"- File: {len(payload):,} bytes; sha256 `{hashlib.sha256(payload).hexdigest()}`.",
        "- How it was built: each `name1,has_nickname,name2` row became the pair (name1, name2), NFC-normalised "
        f"and lowercased; rows of other relationships left out ({other}); a name paired with itself dropped; "
        "repeated pairs kept once.",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: namesmith/catalogue)")
    parser.add_argument("--licence", type=Path, default=None,
                        help=f"a copy of the Apache License 2.0 text ({LICENCE_URL}) to ship beside the file "
                             "(default: keep the one in --out)")
    args = parser.parse_args(argv)
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"error: {PACKAGE} is not installed (pip install -c constraints.txt {PACKAGE})")
    if version != PINNED:
        print(f"warning: {PACKAGE} {version} is installed; the shipped file was built with {PINNED}, so the bytes "
              "may differ", file=sys.stderr)
    source = upstream_csv()
    pairs, rows, other = pairs_of(source)
    payload = tsv_gz(pairs)
    licence = args.licence or (args.out / "nicknames.LICENSE")
    if not licence.is_file():
        sys.exit(f"error: {licence} not found: pass --licence with the Apache License 2.0 text ({LICENCE_URL})")
    licence_text = licence.read_bytes()
    if b"Apache License" not in licence_text or b"Version 2.0" not in licence_text:
        sys.exit(f"error: {licence} is not the Apache License 2.0 text")
    write_atomic(args.out / "nicknames.tsv.gz", payload)
    write_atomic(args.out / "nicknames.LICENSE", licence_text)
    write_atomic(args.out / "NICKNAMES.md", card(version, source, rows, other, pairs, payload).encode("utf-8"))
    print(f"{hashlib.sha256(payload).hexdigest()}  nicknames.tsv.gz  ({len(payload):,} bytes, {len(pairs):,} pairs)")


if __name__ == "__main__":
    main()
