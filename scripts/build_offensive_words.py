"""Build namesmith's offensive-words list from the `better-profanity` package's word list.

`better-profanity` (MIT licence) ships `profanity_wordlist.txt`, a list of English swear words,
slurs and sexual terms kept for chat filters. It is needed only to rebuild the list, never at run
time: this script copies it, with the package's licence, into `namesmith/builtin/offensive_words.*`.

What is changed, and why:
- Every entry is normalised the way `namesmith.data.offensive` normalises names (case folded, accents
  dropped, common letter substitutions undone: `sh1t` → `shit`), then deduplicated. Entries the
  upstream list spells several ways (`fuck`, `fcuk`, `fuk`...) stay as separate words.
- Multi-word entries are kept with their spaces removed: a name is matched with its separators
  (space, hyphen, apostrophe, period) removed too.
- A short list of entries is dropped: the upstream list is made for chat, where a word like
  `kill`, `ugly` or `god` is worth flagging; in names they are ordinary words or real given names
  (`Len`, `Yury`, `Maxi`, `Dong`, `Hebe`). Each dropped entry and the reason is in
  `NOT_OFFENSIVE_IN_NAMES` below, and the card lists them.

Usage (from the repository root)::

    pip install better-profanity==0.7.0
    python scripts/build_offensive_words.py
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from namesmith.data.offensive import MIN_SUBSTRING, normalise  # noqa: E402

OUT_DIR = REPO_ROOT / "namesmith" / "builtin"
PACKAGE = "better-profanity"

# Upstream entries that are not offensive as (parts of) names, and why.
NOT_OFFENSIVE_IN_NAMES = {
    "len": "a given name (Len)",
    "yury": "a given name (Yury)",
    "maxi": "a given name (Maxi), and the start of Maximilian, Maxine",
    "dong": "a given name and surname (Vietnamese, Chinese)",
    "hebe": "a given name (Hebe, Greek goddess)",
    "titi": "a given name (Titi)",
    "god": "an ordinary word (Godfrey, Godwin)",
    "hell": "an ordinary word, and inside Michelle, Shelly, Rochelle",
    "kill": "an ordinary word, and the start of Killian",
    "ugly": "an ordinary word",
    "lust": "an ordinary word",
    "hemp": "an ordinary word (a plant)",
    "pawn": "an ordinary word",
    "loin": "an ordinary word",
    "womb": "an ordinary word",
    "ovum": "an ordinary word",
    "racy": "an ordinary word",
    "prig": "an ordinary word",
    "lech": "inside Lechner, Alecha",
    "hump": "the start of Humphrey",
    "hoar": "an ordinary word (hoarfrost)",
    "teat": "an ordinary word",
    "toke": "inside Tokens, Tokelau",
    "tush": "inside Tushar (a given name)",
    "whiz": "an ordinary word",
    "jerk": "an ordinary word",
    "herp": "inside Herpreet",
    "meth": "inside Methuselah, Bethmethy",
    "rum": "an ordinary word",
    "pot": "an ordinary word",
    "fat": "the start of Fatima",
    "weed": "an ordinary word",
    "omg": "an abbreviation, not offensive",
    "lmao": "an abbreviation, not offensive",
    "wtf": "an abbreviation",
    "pms": "an abbreviation",
    "pcp": "an abbreviation",
    "hiv": "a disease's name",
    "uzi": "a given name (Uzi)",
    "thug": "an ordinary word",
    "nude": "an ordinary word",
    "oral": "an ordinary word",
    "arian": "a given name (Arian), and inside Ariana, Mariana, Darian",
    "aryan": "a given name (Aryan, Aaryan), and inside Maryann",
    "organ": "an ordinary word, and inside Morgan",
    "heli": "inside Ophelia, Helios",
    "virgin": "inside Virginia",
    "prude": "inside Prudence",
    "hoor": "a given name (Hoor, Hooria)",
    "willy": "a given name (Willy)",
    "fanny": "a given name (Fanny)",
    "woody": "a given name (Woody)",
    "massa": "a surname (Massa)",
    "wang": "a surname (Wang)",
}

# Upstream entries that are offensive as a whole name or a whole part of one, but inside other names
# too often to match as substrings (they match like the words shorter than offensive.MIN_SUBSTRING).
WHOLE_WORD_ONLY = {
    "anal": "inside Analia, Annalise, Danalyn",
    "anus": "inside Anushka, Tanush",
    "arse": "inside Karsen, Larsen, Arsenio",
    "klan": "inside Deklan, Oakland",
    "nazi": "inside Nazir, Naziyah",
    "heil": "inside Sheila",
    "faig": "inside Faigy",
    "quim": "inside Joaquim",
    "hore": "inside Thoren",
    "hooter": "inside Shooter",
    "moron": "inside Moroni",
    "fart": "inside Fartun",
    "duche": "inside Duchess",
    "shiz": "inside Shiza",
    "raper": "inside Draper",
}


def upstream_dir() -> Path:
    """The installed better_profanity package's folder, found without importing it."""
    spec = importlib.util.find_spec("better_profanity")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: {PACKAGE} is not installed (pip install {PACKAGE}==0.7.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def licence_text() -> str:
    dist = importlib.metadata.distribution(PACKAGE)
    for file in dist.files or []:
        if file.name.upper().startswith("LICENSE"):
            return Path(dist.locate_file(file)).read_text(encoding="utf-8")
    sys.exit(f"error: the installed {PACKAGE} has no licence file")


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder to write offensive_words.{txt,LICENSE,md} in")
    args = parser.parse_args()
    source = upstream_dir() / "profanity_wordlist.txt"
    raw = source.read_bytes()
    entries = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    dropped = set(NOT_OFFENSIVE_IN_NAMES)
    words = set()
    for entry in entries:
        for variant in normalise(entry):
            if variant and variant not in dropped:
                words.add("=" + variant if variant in WHOLE_WORD_ONLY else variant)
    words = sorted(words, key=lambda w: w.lstrip("="))
    version = importlib.metadata.version(PACKAGE)
    body = "\n".join(words) + "\n"
    write_atomically(args.out / "offensive_words.txt", body)
    write_atomically(args.out / "offensive_words.LICENSE", licence_text())
    reasons = "\n".join(f"- `{k}`: {v}" for k, v in sorted(NOT_OFFENSIVE_IN_NAMES.items()))
    whole = "\n".join(f"- `{k}`: {v}" for k, v in sorted(WHOLE_WORD_ONLY.items()))
    card = f"""# Offensive words

`offensive_words.txt` is the word list of the PyPI package `{PACKAGE}` {version} (MIT licence, see
`offensive_words.LICENSE`; upstream file `profanity_wordlist.txt`, {len(entries)} entries, sha256
`{hashlib.sha256(raw).hexdigest()}`),
normalised as `namesmith.data.offensive.normalise` does (case folded, accents dropped, letter substitutions
undone, separators removed) and deduplicated: {len(words)} words, sha256
`{hashlib.sha256(body.encode()).hexdigest()}`. Built by `scripts/build_offensive_words.py`.

Entries dropped because they are ordinary words or given names rather than offensive in a name:

{reasons}

One word per line. A line `=word` is matched only as a whole name or a whole part of one (as words
shorter than {MIN_SUBSTRING} letters are), because inside other names it is too common:

{whole}
"""
    write_atomically(args.out / "offensive_words.md", card)
    print(f"{len(entries)} upstream entries -> {len(words)} words in {args.out / 'offensive_words.txt'}")


if __name__ == "__main__":
    main()
