"""A conditional count model classifies from the back-off tables saved beside its weights
(namesmith.scoring.classify_tables): without torch, with the posteriors the model itself gives, checked like the
weights; a directory without them, or a model whose tables are over the bound, classifies through the model."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from namesmith import NameModel
from namesmith.core.errors import CheckpointError
from namesmith.scoring import classify as classify_module
from namesmith.scoring import classify_tables
from namesmith.scoring.classify_tables import CLASSIFY_KEY

ENDINGS = {("F", "north"): "a", ("F", "south"): "ette", ("F", "east"): "ine",
           ("M", "north"): "o", ("M", "south"): "son", ("M", "east"): "ek"}
NAMES = ["davina", "kolette", "marek", "a", "tosino", "bessonette", "zzzz", "olivié", ""]


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    """Names whose ending says their sex and region (2 x 3 combinations, one missing), with counts."""
    rng = random.Random(5)
    lines = ["name\tsex\tregion\tcount"]
    for (sex, region), ending in ENDINGS.items():
        if (sex, region) == ("M", "east"):
            continue  # a combination no row has: classification still has every value of each label
        for _ in range(100):
            stem = "".join(rng.choice("bdklmnrstvz") + rng.choice("aeiou") for _ in range(rng.randint(1, 3)))
            lines.append(f"{stem}{ending}\t{sex}\t{region}\t{rng.randint(1, 50)}")
    path = tmp_path_factory.mktemp("classify-saved") / "names.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(table_path, tmp_path_factory):
    directory = tmp_path_factory.mktemp("classify-saved") / "model"
    return directory, NameModel.train(table_path, "ngram", order=4, calibrate="length", out=directory)


def same_posteriors(saved, expected):
    assert [r.error for r in saved] == [r.error for r in expected]
    for got, want in zip(saved, expected):
        if want.error is None:
            assert got.labels.keys() == want.labels.keys()
            for label, probs in want.labels.items():
                assert got.labels[label] == pytest.approx(probs, abs=1e-6, rel=0), (got.name, label)


def test_a_loaded_conditional_count_model_classifies_from_its_tables_as_the_model_does(trained):
    directory, model = trained
    assert CLASSIFY_KEY in json.loads((directory / "namesmith.json").read_text())
    loaded = NameModel.load(directory)
    saved = loaded.classify(NAMES)
    assert loaded._model is None  # the tables alone
    assert loaded.labels == model.labels and loaded._model is None
    same_posteriors(saved, model.classify(NAMES))  # the model in memory, through torch
    assert [r.error is not None for r in saved] == [False] * 7 + [True] * 2  # é and the empty name
    assert max(saved[0].labels["sex"], key=saved[0].labels["sex"].get) == "F"


def test_label_by_label_classification_from_the_tables_too(table_path, tmp_path, monkeypatch):
    """Past MAX_JOINT combinations each label is judged alone: the tables hold those nodes' mixtures instead."""
    monkeypatch.setattr(classify_module, "MAX_JOINT", 2)
    model = NameModel.train(table_path, "ngram", order=3, calibrate="none", out=tmp_path / "model")
    loaded = NameModel.load(tmp_path / "model")
    same_posteriors(loaded.classify(NAMES), model.classify(NAMES))
    assert loaded._model is None


def test_the_cli_classifies_a_conditional_count_model_without_importing_torch(trained):
    directory, model = trained
    code = ("import sys; from namesmith.cli import main; "
            f"code = main(['classify', '-m', {str(directory)!r}, '--json', 'davina', 'marek']); "
            "print('torch' in sys.modules, code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    *printed, last = out.stdout.split("\n")[:-1]
    assert last == "False 0"
    result = json.loads("\n".join(printed))
    assert result["labels"] == model.labels
    expected = model.classify(["davina", "marek"])
    for got, want in zip(result["names"], expected):
        for label, probs in want.labels.items():
            assert got["posterior"][label] == pytest.approx(probs, abs=1e-6, rel=0)


def test_a_directory_without_classification_tables_classifies_through_the_model(trained, tmp_path):
    directory, model = trained
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((directory / "namesmith.json").read_text())
    for path in directory.iterdir():
        if path.name != meta[CLASSIFY_KEY]["file"]:
            (old / path.name).write_bytes(path.read_bytes())
    del meta[CLASSIFY_KEY]
    (old / "namesmith.json").write_text(json.dumps(meta))
    loaded = NameModel.load(old)
    same_posteriors(loaded.classify(NAMES), model.classify(NAMES))
    assert loaded._model is not None


def test_corrupted_or_malformed_tables_are_refused_in_one_line(trained, tmp_path):
    directory, _ = trained
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    meta = json.loads((copy / "namesmith.json").read_text())
    tables = copy / meta[CLASSIFY_KEY]["file"]
    tables.write_bytes(tables.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="sha256") as error:
        NameModel.load(copy).classify(["davina"])
    assert "\n" not in str(error.value)
    # a file whose hash is recorded but whose tables do not fit the model's vocabulary
    from safetensors.numpy import load_file, save_file

    from namesmith.core.io import sha256_file

    tables.write_bytes((directory / meta[CLASSIFY_KEY]["file"]).read_bytes())
    arrays = load_file(tables)
    arrays["grams_2"] = arrays["grams_2"] + 10_000
    save_file(arrays, tables)
    meta[CLASSIFY_KEY]["sha256"] = sha256_file(tables)
    (copy / "namesmith.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="order 2 of the classification tables") as error:
        NameModel.load(copy).classify(["davina"])
    assert "\n" not in str(error.value)


def test_tables_over_the_bound_are_not_saved_and_the_model_classifies(trained, tmp_path, monkeypatch):
    _, model = trained
    monkeypatch.setattr(classify_tables, "MAX_CLASSIFY_BYTES", 1000)
    model.save(tmp_path / "big")
    assert CLASSIFY_KEY not in json.loads((tmp_path / "big" / "namesmith.json").read_text())
    assert not list((tmp_path / "big").glob("classify-*"))
    loaded = NameModel.load(tmp_path / "big")
    same_posteriors(loaded.classify(NAMES), model.classify(NAMES))


def test_a_calibrated_model_classifies_through_the_model_it_now_is(trained, tmp_path):
    directory, _ = trained
    loaded = NameModel.load(directory)
    loaded.calibrate("none")
    untilted = loaded.classify(["davina"])
    assert loaded._model is not None and loaded._classify_tables is None
    assert untilted[0].labels != NameModel.load(directory).classify(["davina"])[0].labels
