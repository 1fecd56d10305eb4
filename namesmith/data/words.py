"""Word lists: reading them safely, the built-in data set, the train/val/test split, tensors.

A word list is UTF-8 text with one name per line. Reading is strict about what it cannot use
and says so in one line naming the file and line; see docs/input.md.
"""

from __future__ import annotations

import hashlib
import logging
import random
import unicodedata
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from namesmith.core.casing import CASES, fold, resolve
from namesmith.core.errors import ConfigError, DataError
from namesmith.core.vocab import BOUNDARY, Vocab

if TYPE_CHECKING:
    import torch

log = logging.getLogger("namesmith")

BUILTIN = "builtin"  # the data path that names the built-in US baby-names set
_BUILTIN_FILE = "us_names.tsv"
# Characters that never belong in a name: controls, surrogates, private use, line separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Zl", "Zp"})
_KEPT_FORMAT = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner: see clean_word
_SYMBOL_CATEGORIES = frozenset({"So", "Me"})  # emoji and other pictographs; enclosing marks (keycaps): has_symbols


@dataclass(frozen=True)
class DataConfig:
    """Where the words come from and how each line becomes a word."""

    path: str = BUILTIN  # a text file, or "builtin"
    case: str = "auto"  # "auto", "exact" or "lower": see namesmith.core.casing
    lowercase: bool = False  # the same as case="lower"
    encoding: str = "utf-8"
    max_line_length: int = 64  # longer lines are skipped with a warning
    dedupe: bool = False
    split_seed: int = 42
    split: bool = True  # False: train and evaluate on every word (no held-out sets)
    # tables (namesmith.data.labelled): the label columns to condition on (None: all of them; (): none)
    condition: tuple[str, ...] | None = None
    weighting: str = "share"  # tables: how rows weigh in training: share, none, count or log (namesmith.data.tables)

    def __post_init__(self) -> None:
        if self.condition is not None:  # "sex,decade" and ["sex", "decade"] alike; "none" for no label
            if isinstance(self.condition, str):
                object.__setattr__(self, "condition", (self.condition,))
            labels = tuple(c.strip() for item in self.condition for c in str(item).split(",") if c.strip())
            object.__setattr__(self, "condition", () if labels == ("none",) else labels)
        if self.case not in CASES:
            raise ConfigError(f"case must be one of {', '.join(CASES)}, got {self.case!r}", field="case")
        if self.lowercase:
            object.__setattr__(self, "case", "lower")
        object.__setattr__(self, "lowercase", self.case == "lower")
        if self.max_line_length < 1:
            raise ConfigError(f"max_line_length must be at least 1, got {self.max_line_length}",
                              field="max_line_length")
        try:
            "".encode(self.encoding)
        except LookupError:
            raise ConfigError(f"encoding: unknown encoding {self.encoding!r}", field="encoding") from None


def builtin_path() -> Path:
    """Path of the built-in data set: US SSA baby names of one year (see scripts/)."""
    return Path(str(resources.files("namesmith") / "builtin" / _BUILTIN_FILE))


@cache  # read once a process (13 ms a read; a server, a test run and a CLI run that evaluates read it again and again)
def read_builtin_table() -> tuple[tuple[str, int, int], ...]:
    """Rows (name, female births, male births) of the built-in data set, most common first."""
    lines = builtin_path().read_text(encoding="utf-8").splitlines()
    rows = []
    for line in lines[1:]:  # the first line is the header
        name, female, male = line.split("\t")
        rows.append((name, int(female), int(male)))
    return tuple(rows)


def check_data_file(path: str | Path) -> Path:
    """`path` as a Path, or a `DataError` saying why it is not a file a word list can be read from."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, not a word list")
    if not p.is_file():
        raise DataError(f"{p}: is not a regular file (a device, pipe or socket), not a word list")
    return p


def read_file_bytes(path: str | Path) -> bytes:
    """The bytes of a data file, or a `DataError` saying why it cannot be read."""
    p = Path(path)
    try:
        return check_data_file(p).read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror or e})") from None


_UTF16_32_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                  (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


def decode_text(raw: bytes, path: str | Path, encoding: str = "utf-8") -> str:
    """Decode a word list, naming the line and byte offset of the first undecodable byte.

    UTF-8 (the default) accepts and drops a byte-order mark. A UTF-16/32 byte-order mark or a
    NUL byte is refused with a hint, since neither occurs in UTF-8 text.
    """
    if _is_utf8(encoding):
        for bom, name in _UTF16_32_BOMS:
            if raw.startswith(bom):
                raise DataError(f"{path}: starts with a {name.upper()} byte-order mark, not UTF-8; "
                                f"pass --encoding {name}")
        nul = raw.find(b"\x00", 0, 1 << 16)
        if nul >= 0:
            line = raw[:nul].count(b"\n") + 1
            raise DataError(f"{path}: looks like a binary file (NUL byte on line {line}, offset {nul}), "
                            "not a UTF-8 word list; pass --encoding if it is text in another encoding")
        encoding = "utf-8-sig"  # accept (and drop) a UTF-8 byte-order mark
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        byte = f"byte 0x{raw[e.start]:02x}" if e.start < len(raw) else "truncated data"
        raise DataError(
            f"{path}: line {line} is not valid {encoding.removesuffix('-sig')} "
            f"({byte} at offset {e.start}); pass --encoding (e.g. latin-1) "
            "if the file uses another encoding"
        ) from None
    except (UnicodeError, ValueError) as e:  # codecs such as idna fail without a position
        raise DataError(f"{path}: cannot be decoded as {encoding} ({e})") from None


def clean_word(word: str) -> str:
    """`word` without invisible format characters, NFC-normalised: how every word a user gives is
    taken (files, tables, the API and the command line).

    Format characters (category Cf: bidi embeddings, overrides and isolates such as U+202E, zero-width
    spaces, byte-order marks, soft hyphens) change how a name is shown, not what it is: kept, a model
    learns them and prints them into names (one U+202E shows "Liam" as "maiL"). The zero-width
    non-joiner and joiner stay: Persian and Indic names are written with them.
    """
    return unicodedata.normalize("NFC", strip_format(word))


def strip_format(word: str) -> str:
    """`word` without invisible format characters but the zero-width non-joiner and joiner (`clean_word`)."""
    if word.isascii():
        return word
    return "".join(c for c in word if c in _KEPT_FORMAT or unicodedata.category(c) != "Cf")


def clean_line(line: str, lowercase: bool = False) -> str:
    """The name on one line: the first tab-separated column, stripped, cleaned (`clean_word`)."""
    word = clean_word(line).strip().split("\t", 1)[0].strip()
    if lowercase:
        word = unicodedata.normalize("NFC", word.lower())
    return word


def has_bad_chars(word: str) -> bool:
    """True if `word` holds a control, surrogate, private-use or line/paragraph-separator character."""
    return any(unicodedata.category(c) in _BAD_CATEGORIES for c in word)


def has_symbols(word: str) -> bool:
    """True if `word` holds an emoji or other pictographic symbol (category So: 🦄, ™, ©; or an
    enclosing mark, Me, such as an emoji keycap): not a name a model should learn to write."""
    return not word.isascii() and any(unicodedata.category(c) in _SYMBOL_CATEGORIES for c in word)


def changed_by_rules(char: str) -> bool:
    """Whether the line rules act on `char` wherever it stands (it is removed, its line skipped, or it
    is whitespace other than a space): a block whose characters are none of these, and whose lines
    have no space at their ends, is cleaned by array operations (namesmith.data.counting)."""
    category = unicodedata.category(char)
    return (category in _BAD_CATEGORIES or category in _SYMBOL_CATEGORIES
            or (category == "Cf" and char not in _KEPT_FORMAT)
            or (char.isspace() and char != " "))


@dataclass
class SkippedLines:
    """The line numbers a reader passes over, too long, holding control characters, or holding an
    emoji (`has_symbols`): one warning per kind."""

    max_line_length: int
    too_long: list[int] = field(default_factory=list)
    bad_chars: list[int] = field(default_factory=list)
    symbols: list[int] = field(default_factory=list)

    def skip(self, name: str, lineno: int) -> bool:
        """True, and the line noted, if `name` is longer than `max_line_length`, holds a control
        character, or an emoji or other symbol."""
        if len(name) > self.max_line_length:
            self.too_long.append(lineno)
            return True
        if has_bad_chars(name):
            self.bad_chars.append(lineno)
            return True
        if has_symbols(name):
            self.symbols.append(lineno)
            return True
        return False

    @property
    def any(self) -> bool:
        return bool(self.too_long or self.bad_chars or self.symbols)

    def warn(self, source: str, rows: bool = False) -> None:
        """Say how many lines (a table's `rows`, by their name) were skipped, and the first, once per kind."""
        longer, holding = (("row(s) whose name is longer", "row(s) whose name holds") if rows
                           else ("line(s) longer", "line(s) holding"))
        if self.too_long:
            log.warning(f"{source}: skipped {len(self.too_long)} {longer} than "
                        f"--max-line-length={self.max_line_length} characters (first: line {self.too_long[0]})")
        if self.bad_chars:
            log.warning(f"{source}: skipped {len(self.bad_chars)} {holding} control characters "
                        f"(first: line {self.bad_chars[0]})")
        if self.symbols:
            log.warning(f"{source}: skipped {len(self.symbols)} {holding} an emoji or other symbol "
                        f"(first: line {self.symbols[0]})")


def parse_words(text: str, source: str = "<text>", *, lowercase: bool = False,
                max_line_length: int = 64, dedupe: bool = False) -> list[str]:
    """One word per line: cleaned (`clean_word`), stripped, blank lines skipped.

    Lines end at LF, CRLF or a lone CR. A tab ends the name (the first column of a spreadsheet
    export is kept). Lines longer than `max_line_length` characters, holding control characters,
    or holding an emoji (`has_symbols`) are skipped, with one warning per kind naming the first such line.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    words: list[str] = []
    skipped = SkippedLines(max_line_length)
    for lineno, line in enumerate(text.split("\n"), start=1):
        word = clean_line(line, lowercase)
        if word and not skipped.skip(word, lineno):
            words.append(word)
    skipped.warn(source)
    if dedupe:
        words = list(dict.fromkeys(words))
    if not words:
        if not text:
            raise DataError(f"{source}: is empty (no names in it)")
        if not text.replace("\ufeff", "").strip():
            raise DataError(f"{source}: holds only blank lines (no names in it)")
        raise DataError(f"{source}: has no usable names (every line was blank or skipped)")
    return words


def check_words(words: list[str], source: str = "words") -> list[str]:
    """Check a word list given through the API: what `parse_words` could have produced.

    Invisible format characters are removed (`strip_format`; words are otherwise used as given), and
    words must be non-empty
    strings without line breaks, control characters or emoji (`has_symbols`);
    a `DataError` names the first that is not.
    """
    if isinstance(words, (str, bytes)) or not hasattr(words, "__iter__"):
        raise DataError(f"{source}: expected a list of words, got {type(words).__name__}")
    words = list(words)
    if not words:
        raise DataError(f"{source}: is empty (no names in it)")
    cleaned = []
    for i, word in enumerate(words):
        if not isinstance(word, str):
            raise DataError(f"{source}: item {i} is a {type(word).__name__}, not a string")
        if not word:
            raise DataError(f"{source}: item {i} is an empty string")
        if has_bad_chars(word):
            raise DataError(f"{source}: item {i} ({word!r}) holds a line break or control character")
        word = strip_format(word)
        if has_symbols(word):
            raise DataError(f"{source}: item {i} ({word!r}) holds an emoji or other symbol: not a name")
        cleaned.append(word)
    return cleaned


def read_words(config: DataConfig | str | Path = BUILTIN, **options) -> tuple[list[str], str]:
    """A word list as the model learns it (see namesmith.core.casing) and the casing it is printed in."""
    if not isinstance(config, DataConfig):
        config = DataConfig(path=str(config), **options)
    if config.path == BUILTIN:
        words = [name for name, _, _ in read_builtin_table()]
    else:
        text = decode_text(read_file_bytes(config.path), config.path, config.encoding)
        words = parse_words(text, config.path, max_line_length=config.max_line_length)
    return prepare_words(words, config)


def prepare_words(words: list[str], config: DataConfig) -> tuple[list[str], str]:
    """Case-fold (see namesmith.core.casing) and optionally dedupe words that were read or given."""
    casing = resolve(words, config.case)
    words = fold(words, casing)
    return (list(dict.fromkeys(words)) if config.dedupe else words), casing


def load_words(config: DataConfig | str | Path = BUILTIN, **options) -> list[str]:
    """Read a word list (a path, "builtin", or a full `DataConfig`), case-folded as the model learns it."""
    return read_words(config, **options)[0]


def fingerprint(path: str | Path) -> str:
    """sha256 of a data file's bytes ("builtin" means the built-in file); DataError if it cannot be read."""
    p = builtin_path() if str(path) == BUILTIN else Path(path)
    digest = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        read_file_bytes(p)  # says why in one line (no such file, a directory, ...)
        raise
    return digest.hexdigest()


def words_fingerprint(words: list[str]) -> str:
    """sha256 of a word list as read (after normalisation), independent of the file's bytes."""
    return hashlib.sha256("\n".join(words).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Split:
    """The train/validation/test words of one shuffled word list."""

    train: list[str]
    val: list[str]
    test: list[str]

    def parts(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def split_words(words: list[str], seed: int = 42, split: bool = True) -> Split:
    """Shuffle with `random.Random(seed)`, then cut 80/10/10 at int(0.8n) and int(0.9n).

    This is the split of the makemore lecture series, so figures compare with published ones.
    The training set always keeps at least one word; tiny evaluation sets get a warning.
    With `split=False` every word is for training and the evaluation sets are empty.
    """
    if not split:
        return Split(list(words), [], [])
    shuffled = list(words)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    a, b = max(int(0.8 * n), 1), max(int(0.9 * n), 1)
    split = Split(shuffled[:a], shuffled[a:b], shuffled[b:])
    if n < 20:
        empty = [name for name, part in (("validation", split.val), ("test", split.test)) if not part]
        log.warning(f"only {n} word(s) for the 80/10/10 split: {len(split.train)} train, {len(split.val)} "
                    f"validation, {len(split.test)} test; "
                    + (f"the {' and '.join(empty)} set{'s are' if len(empty) > 1 else ' is'} empty and "
                       if empty else "")
                    + "held-out losses are missing or noisy (--no-split trains and evaluates on every word)")
    return split


def encode_words(words: list[str], vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets for next-character prediction, one row per word.

    For "emma": x = [<b>, e, m, m, a, <b>...], y = [e, m, m, a, <b>, -1...]; -1 marks padding
    (ignored by the loss). Shapes (N, L+1) where L is the longest word. Vectorised: the words
    are joined, encoded as code points and looked up in the sorted vocabulary in one go.
    """
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    width = int(lengths.max(initial=0)) + 1
    codes = np.frombuffer("".join(words).encode("utf-32-le"), dtype="<u4")
    vocab_codes = np.array([ord(c) for c in vocab.chars], dtype=np.uint32)  # sorted, like vocab.chars
    ids = np.searchsorted(vocab_codes, codes).clip(max=max(len(vocab_codes) - 1, 0))
    unknown = vocab_codes[ids] != codes if len(vocab_codes) else np.ones(len(codes), bool)
    if unknown.any():
        at = int(unknown.argmax())
        word = words[int(np.searchsorted(np.cumsum(lengths), at, side="right"))]
        vocab.encode(word)  # raises UnknownCharacterError naming the word and character
    rows = np.repeat(np.arange(len(words)), lengths)
    cols = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    x = np.zeros((len(words), width), dtype=np.int64)
    y = np.full((len(words), width), -1, dtype=np.int64)
    x[rows, cols + 1] = ids + 1
    y[rows, cols] = ids + 1
    y[np.arange(len(words)), lengths] = BOUNDARY
    import torch  # here, not at the top: reading and splitting words (the CLI's options too) needs no torch

    return torch.from_numpy(x), torch.from_numpy(y)


@dataclass
class Corpus:
    """A split word list with its vocabulary: what every model trains and evaluates on."""

    split: Split
    vocab: Vocab
    _tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_words(cls, words: list[str], seed: int = 42, vocab: Vocab | None = None, split: bool = True) -> Corpus:
        return cls(split_words(words, seed, split), vocab or Vocab.from_words(words))

    @cached_property
    def max_word_length(self) -> int:
        return max(len(w) for part in self.split.parts().values() for w in part)

    def words(self, part: str) -> list[str]:
        return self.split.parts()[part]

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of `encode_words` for "train", "val" or "test", built once."""
        if part not in self._tensors:
            self._tensors[part] = encode_words(self.words(part), self.vocab)
        return self._tensors[part]

    def word_tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of the words alone (a labelled corpus's `tensors` also carry each row's labels)."""
        return Corpus.tensors(self, part)

    def row_weights(self, part: str) -> torch.Tensor | None:
        """How much each word weighs in training, or None when all weigh the same (see namesmith.data.labelled)."""
        return None
