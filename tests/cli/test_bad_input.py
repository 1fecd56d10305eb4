"""Issue #5, input data: every awkward word list is handled or refused in one line naming the file.

Each case runs through the CLI in-process (`cli.main`), checks the exit status and, for errors,
that stderr is one `namesmith: error:` line naming the file (and line, where there is one).
"""

from __future__ import annotations

import logging
import os
import unicodedata
from pathlib import Path

import pytest
import torch

from namesmith import NameModel, cli
from namesmith.core.errors import ConfigError, DataError
from namesmith.core.vocab import BOUNDARY
from namesmith.data.sources import read_source
from namesmith.data.words import DataConfig, check_words, decode_text, load_words, parse_words, split_words
from namesmith.training.checkpoint import load_checkpoint

NAMES = ["anna", "bob", "carl", "dora", "emil", "fritz", "gina", "hugo", "ida", "jan", "kim", "lena"]


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def train_file(capsys, tmp_path: Path, data: bytes | str | Path, *extra: str, model: str = "bigram-counts",
               quiet: bool = True):
    """Train on `data` (bytes written to a file, or a path); returns (rc, out, err, model dir)."""
    if isinstance(data, bytes):
        path = tmp_path / "words.txt"
        path.write_bytes(data)
    else:
        path = Path(data)
    out_dir = tmp_path / "model"
    rc, out, err = run(capsys, *(["-q"] if quiet else []), "train", "--model", model, "--data", str(path), "--out",
                       str(out_dir), "--samples", "5", "--seed", "1", *extra)
    return rc, out, err, out_dir


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == cli.EXIT_ERROR, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("namesmith: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- refused, with a one-line error -------------------------------------------------------------

def test_missing_path(capsys, tmp_path):
    rc, _, err, _ = train_file(capsys, tmp_path, tmp_path / "nope.txt")
    assert_one_line_error(rc, err, "nope.txt", "no such file")


def test_directory(capsys, tmp_path):
    rc, _, err, _ = train_file(capsys, tmp_path, tmp_path)
    assert_one_line_error(rc, err, str(tmp_path), "is a directory")


def test_not_a_regular_file(capsys, tmp_path):
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    rc, _, err, _ = train_file(capsys, tmp_path, "/dev/null")
    assert_one_line_error(rc, err, "/dev/null", "not a regular file")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(capsys, tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("anna\n")
    path.chmod(0)
    rc, _, err, _ = train_file(capsys, tmp_path, path)
    assert_one_line_error(rc, err, "secret.txt", "cannot read")


def test_empty_file(capsys, tmp_path):
    rc, _, err, _ = train_file(capsys, tmp_path, b"")
    assert_one_line_error(rc, err, "words.txt", "is empty")


def test_only_blank_lines(capsys, tmp_path):
    rc, _, err, _ = train_file(capsys, tmp_path, b"\n\n   \r\n\t\n \xef\xbb\xbf\n")
    assert_one_line_error(rc, err, "words.txt", "only blank lines")


def test_non_utf8_names_line_and_offset_and_offers_encoding(capsys, tmp_path):
    rc, _, err, _ = train_file(capsys, tmp_path, "anna\njosé\n".encode("latin-1"))
    assert_one_line_error(rc, err, "words.txt", "line 2", "offset 8", "0xe9", "--encoding")


def test_non_utf8_with_encoding_option_trains(capsys, tmp_path):
    rc, _, err, out_dir = train_file(capsys, tmp_path, "anna\njosé\nbob\n".encode("latin-1"),
                                     "--encoding", "latin-1")
    assert rc == 0, err
    assert "é" in load_checkpoint(out_dir).vocab.chars


def test_binary_file(capsys, tmp_path):
    rc, _, err, _ = train_file(capsys, tmp_path, b"anna\n" + bytes(range(256)) * 8)
    assert_one_line_error(rc, err, "words.txt", "binary", "line 2")


def test_utf16_file_is_refused_with_a_hint_then_accepted(capsys, tmp_path):
    data = "anna\nbob\ncarl\n".encode("utf-16")
    rc, _, err, _ = train_file(capsys, tmp_path, data)
    assert_one_line_error(rc, err, "words.txt", "UTF-16", "--encoding utf-16")
    rc, _, err, out_dir = train_file(capsys, tmp_path, data, "--encoding", "utf-16")
    assert rc == 0, err
    assert load_checkpoint(out_dir).vocab.chars == tuple(sorted(set("annabobcarl")))


def test_unknown_encoding(capsys, tmp_path):
    rc, _, err, _ = train_file(capsys, tmp_path, b"anna\n", "--encoding", "no-such-codec")
    assert_one_line_error(rc, err, "--encoding", "no-such-codec")


def test_line_longer_than_max_line_length_is_skipped_with_a_warning(capsys, caplog, tmp_path):
    data = b"anna\n" + b"x" * 1000 + b"\nbob\ncarl\n"
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        rc, _, err, out_dir = train_file(capsys, tmp_path, data)
    assert rc == 0, err
    assert "x" not in load_checkpoint(out_dir).vocab.chars
    assert any("skipped 1 line(s) longer than --max-line-length=64" in r.message and "line 2" in r.message
               for r in caplog.records), caplog.text
    rc, _, err, out_dir = train_file(capsys, tmp_path, data, "--max-line-length", "1000", "--overwrite")
    assert rc == 0, err
    assert "x" in load_checkpoint(out_dir).vocab.chars


def test_file_of_only_overlong_lines(capsys, tmp_path):
    rc, _, err, _ = train_file(capsys, tmp_path, b"y" * 100 + b"\n", "--max-line-length", "10")
    assert_one_line_error(rc, err, "words.txt", "no usable names")


def test_control_characters_skip_the_line(caplog):
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        words = parse_words("an\x07na\nbob\u2028x\nca\x1brl\ndora\n", "w.txt")
    assert words == ["dora"]
    assert "skipped 3 line(s) holding control characters (first: line 1)" in caplog.text


# --- accepted, and normalised ------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbfanna\nbob\ncarl\n",  # UTF-8 byte-order mark
    b"anna\r\nbob\r\ncarl\r\n",  # CRLF
    b"anna\rbob\rcarl\r",  # lone CR (classic Mac)
    b"anna\r\nbob\rcarl\n",  # all three at once
    b"  anna  \n\tbob\ncarl\t42\n\n \n",  # surrounding spaces and tabs, a second column, blank lines
    b"anna\nbob\ncarl",  # no final newline
], ids=["bom", "crlf", "cr", "mixed-endings", "whitespace-tabs", "no-final-newline"])
def test_layouts_read_as_the_same_three_names(capsys, tmp_path, data):
    rc, _, err, out_dir = train_file(capsys, tmp_path, data)
    assert rc == 0, err
    assert load_checkpoint(out_dir).vocab.chars == tuple(sorted(set("annabobcarl")))
    assert load_words(tmp_path / "words.txt") == ["anna", "bob", "carl"]


def test_duplicates_kept_by_default_and_dropped_with_dedupe(capsys, tmp_path):
    data = b"anna\nanna\nbob\nanna\ncarl\n"
    rc, _, err, out_dir = train_file(capsys, tmp_path, data, "--no-split")
    assert rc == 0, err
    assert load_checkpoint(out_dir).meta["data"]["n_words"]["train"] == 5
    rc, _, err, out_dir = train_file(capsys, tmp_path, data, "--no-split", "--dedupe", "--overwrite")
    assert rc == 0, err
    assert load_checkpoint(out_dir).meta["data"]["n_words"]["train"] == 3


@pytest.mark.parametrize("model", ["bigram-counts", "bigram"])
def test_single_word_trains_with_a_warning(capsys, caplog, tmp_path, model):
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        rc, out, err, out_dir = train_file(capsys, tmp_path, b"anna\n", "--max-steps", "50", model=model, quiet=False)
    assert rc == 0, err
    assert "validation and test sets are empty" in caplog.text
    assert "(no words)" in out  # the empty sets are reported, not a crash
    assert load_checkpoint(out_dir).meta["data"]["n_words"] == {"train": 1, "val": 0, "test": 0}


def test_three_words_train_with_a_warning(capsys, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        rc, _, err, _ = train_file(capsys, tmp_path, b"anna\nbob\ncarl\n", "--max-steps", "50", model="bigram")
    assert rc == 0, err
    assert "only 3 word(s)" in caplog.text and "validation set is empty" in caplog.text


def test_tiny_split_warning_is_precise():
    assert split_words(NAMES[:3]).train and not split_words(NAMES[:3]).val
    assert len(split_words(NAMES).train) >= 1
    assert split_words(["solo"]).parts() == {"train": ["solo"], "val": [], "test": []}


def test_single_repeated_character(capsys, tmp_path):
    rc, out, err, out_dir = train_file(capsys, tmp_path, b"a\naa\naaaa\n", "--no-split")
    assert rc == 0, err
    model = NameModel.load(out_dir)
    assert model.vocab.chars == ("a",)
    names = model.generate(50, seed=0).names
    assert len(names) == 50 and all(set(n) <= {"a"} for n in names)


def test_names_with_spaces_hyphens_apostrophes_periods(capsys, tmp_path):
    words = ["mary ann", "jean-luc", "o'brien", "st. john", "j.r.r."]
    rc, _, err, out_dir = train_file(capsys, tmp_path, "\n".join(words).encode(), "--no-split")
    assert rc == 0, err
    assert {" ", "-", "'", "."} <= set(load_checkpoint(out_dir).vocab.chars)
    assert load_words(tmp_path / "words.txt") == words


def test_any_unicode_and_nfc(capsys, tmp_path):
    words = ["Дмитрий", "Αλέξανδρος", "李小龙", "José", "Jose\u0301", "Zoë", "Ǆemal"]
    rc, _, err, out_dir = train_file(capsys, tmp_path, "\n".join(words).encode(), "--no-split")
    assert rc == 0, err
    vocab = load_checkpoint(out_dir).vocab.chars
    assert "\u0301" not in vocab and "é" in vocab  # "é" typed two ways is one character
    assert {"Д", "Α", "李"} <= set(vocab)
    loaded = load_words(tmp_path / "words.txt")
    assert loaded[3] == loaded[4] == "José"
    assert all(unicodedata.is_normalized("NFC", w) for w in loaded)


def test_lowercase_result_is_nfc():
    assert parse_words("İSTANBUL\nÉLODIE\n", lowercase=True) == [unicodedata.normalize("NFC", "i̇stanbul"), "élodie"]


@pytest.mark.parametrize("model", ["bigram-counts", "bigram"])
def test_boundary_never_collides_with_a_data_character(model):
    # every label the boundary could be shown as is a data character here; the token id stays apart
    words = [".", "a.b", "#$|^~·", "<b>", "x.", ".y", "\u00b7.\u00b7"] * 3
    result = NameModel.train(model=model, words=words, split=False, max_steps=300, device="cpu")
    assert BOUNDARY not in result.vocab.stoi.values()
    assert result.vocab.boundary_label == "<b>"
    names = result.generate(200, seed=3).names
    assert all(set(n) <= set(result.vocab.chars) for n in names)


def test_deterministic_chain_through_a_period():
    # with no smoothing "a.b" is the only path: a '.' inside a name never ends it
    result = NameModel.train(model="bigram-counts", words=["a.b"] * 4, split=False, smoothing=0.0, device="cpu")
    assert result.generate(30, seed=0).names == ["a.b"] * 30


def test_decode_text_reports_the_line_of_a_bad_byte():
    with pytest.raises(DataError, match=r"f\.txt: line 3 .*offset 6"):
        decode_text(b"ab\ncd\n\xff\n", "f.txt")


def test_api_word_lists_are_checked():
    for bad, needle in [([], "empty"), (["ok", ""], "item 1"), (["a\nb"], "line break"), (["ok", 3], "not a string"),
                        ("anna", "list of words")]:
        with pytest.raises(DataError, match=needle):
            check_words(bad)
        with pytest.raises(DataError, match=needle):
            NameModel.train(model="bigram-counts", words=bad)


def test_data_config_validation():
    with pytest.raises(ConfigError, match="^max_line_length must be at least 1") as error:
        DataConfig(max_line_length=0)
    assert error.value.field == "max_line_length"
    with pytest.raises(ConfigError, match="^encoding: .*rot-99") as error:
        DataConfig(encoding="rot-99")
    assert error.value.field == "encoding"


# --- options validated up front ----------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["--max-steps", "-1"], "--max-steps"),
    (["--max-steps", "0"], "--max-steps"),
    (["--samples", "-3"], "--samples"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--batch-size", "-2"], "--batch-size"),
    (["--max-line-length", "-5"], "--max-line-length"),
    (["--device", "tpu"], "--device"),
    (["--seed", str(2**70)], "--seed"),
    (["--model", "bigram-counts", "--smoothing", "-1"], "--smoothing"),
    (["--model", "mlp", "--ema", "1"], "--ema"),
    (["--model", "mlp", "--ngram-mix", "-1"], "--ngram-mix"),
])
def test_bad_train_options(capsys, tmp_path, argv, needle):
    (tmp_path / "w.txt").write_text("\n".join(NAMES))
    rc, _, err = run(capsys, "train", "--data", str(tmp_path / "w.txt"), "--out", str(tmp_path / "m"), *argv)
    assert_one_line_error(rc, err, needle)
    assert not (tmp_path / "m").exists()  # refused before any training or writing


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_when_there_is_none(capsys, tmp_path):
    rc, _, err = run(capsys, "train", "--data", str(tmp_path / "missing.txt"), "--device", "cuda",
                     "--out", str(tmp_path / "m"))
    assert_one_line_error(rc, err, "--device cuda", "CUDA is not available")  # before reading the data
    rc, _, err = run(capsys, "sample", "-m", str(tmp_path / "m"), "--device", "cuda:1")
    assert_one_line_error(rc, err, "--device cuda:1")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--model", "no-such-model"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["sample", "-n", "many"])
    assert e.value.code == 2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    NameModel.train(model="bigram-counts", words=NAMES, out=out, device="cpu")
    return out


@pytest.mark.parametrize("argv, needle", [
    (["-n", "-1"], "-n/--num"),
    (["--temperature", "0"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--top-k", "0"], "--top-k"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--max-len", "0"], "--max-len must be at least 1"),
    (["--device", "tpu"], "--device"),
    (["--starts-with", "Ω"], "--starts-with"),
])
def test_bad_sample_options(capsys, model_dir, argv, needle):
    rc, _, err = run(capsys, "sample", "-m", str(model_dir), *argv)
    assert_one_line_error(rc, err, needle)


def test_out_is_a_file(capsys, tmp_path):
    (tmp_path / "w.txt").write_text("\n".join(NAMES))
    rc, _, err = run(capsys, "train", "--model", "bigram-counts", "--data", str(tmp_path / "w.txt"),
                     "--out", str(tmp_path / "w.txt"))
    assert_one_line_error(rc, err, "w.txt", "not a directory")


# --- issue 27: tables read as words, emoji lines; issue 31: invisible direction and zero-width characters ---

@pytest.mark.parametrize("data, expected", [
    ("\ufeffname;sex;count\nEmma;F;10\nLiam;M;12\nNoah;M;3\n", {"emma", "liam", "noah"}),  # Excel's CSV
    ("first_name,gender\nEmma,F\nLiam,M\nNoah,M\n", {"emma", "liam", "noah"}),
    ("Given Name\tGender\tBirths\nEmma\tF\t10\nLiam\tM\t12\nNoah\tM\t3\n", {"emma", "liam", "noah"}),
], ids=["semicolon-bom", "first_name", "given-name-tab"])
def test_tables_with_other_separators_and_column_names_are_read_as_tables(capsys, tmp_path, data, expected):
    rc, out, err, out_dir = train_file(capsys, tmp_path, data.encode(), "--condition", "none", "--no-split")
    assert rc == 0, err
    model = NameModel.load(out_dir)
    assert set(model.corpus.words("train")) == expected  # no header, no separators, no counts
    assert set(model.vocab.chars) <= set("emmaliamnoah")


@pytest.mark.parametrize("data, needles", [
    ("given;sex\nEmma;F\nLiam;M\n", ["semicolon-separated table", "columns: given, sex", "no column holds the names"]),
    ("Emma,F,10\nLiam,M,12\nNoah,M,3\n", ["splits into the same fields at a comma", "add a header row"]),
], ids=["header-without-name-column", "no-header"])
def test_tables_whose_names_cannot_be_found_are_refused_in_one_line(capsys, tmp_path, data, needles):
    rc, _, err, _ = train_file(capsys, tmp_path, data.encode())
    assert_one_line_error(rc, err, "words.txt", *needles)


def test_names_with_a_comma_now_and_then_are_still_a_word_list(tmp_path):
    (tmp_path / "w.txt").write_text("Smith, Jr.\nAnna\nBob\n", encoding="utf-8")
    assert read_source(DataConfig(str(tmp_path / "w.txt"), case="exact"))[0] == ["Smith, Jr.", "Anna", "Bob"]


def test_label_columns_not_conditioned_on_are_not_checked(capsys, tmp_path):
    data = b"Name,Gender,Year,Notes\nEmma,F,2001,twin\nLiam,M,2002,\nNoah,M,2003,\n"
    rc, _, err, _ = train_file(capsys, tmp_path, data, "--condition", "none")
    assert rc == 0, err
    rc, _, err, _ = train_file(capsys, tmp_path, data, "--condition", "Gender", "--overwrite")
    assert rc == 0, err
    rc, _, err, _ = train_file(capsys, tmp_path, data, "--overwrite")  # every label: Notes too
    assert_one_line_error(rc, err, "words.txt: line 3, column 'Notes': the label is empty")


def test_emoji_lines_are_skipped_with_a_count(caplog, capsys, tmp_path):
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        words = parse_words("anna\n🦄\nbob\nli🦄am\ncarl\n1\ufe0f\u20e3\n", "w.txt")
    assert words == ["anna", "bob", "carl"]
    assert "skipped 3 line(s) holding an emoji or other symbol (first: line 2)" in caplog.text
    with pytest.raises(DataError, match=r"item 1 \('🦄'\) holds an emoji"):
        check_words(["anna", "🦄"])
    rc, _, err, out_dir = train_file(capsys, tmp_path, "anna\n🦄\n🦄\nbob\ncarl\n".encode(), "--no-split")
    assert rc == 0, err
    assert "🦄" not in NameModel.load(out_dir).vocab.chars


def test_invisible_format_characters_are_removed_from_words(tmp_path):
    override, zero_width = "\u202e", "\u200b"
    text = f"li{override}am\n{zero_width}emma\u2066\u2069\nno\u00adah\nمی\u200cنا\n"  # ZWNJ is part of Persian
    expected = ["liam", "emma", "noah", "می\u200cنا"]
    assert parse_words(text) == expected
    (tmp_path / "w.txt").write_text(text, encoding="utf-8")
    assert load_words(tmp_path / "w.txt") == expected
    assert check_words([f"li{override}am", "ann\u2067a"]) == ["liam", "anna"]  # the API's words
    (tmp_path / "t.csv").write_text(f"name,sex\nli{override}am,M\n", encoding="utf-8")
    assert read_source(DataConfig(str(tmp_path / "t.csv")))[0] == ["liam"]
    model = NameModel.train(words=[f"{override}{w}" for w in NAMES], model="bigram-counts", split=False)
    assert override not in model.vocab.chars
