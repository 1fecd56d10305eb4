"""A count model's plain draws saved beside its weights (namesmith.generation.saved_tables): loaded and sampled
without torch, the same names as the model draws itself, checked like the weights, and older directories without
them still load and sample through the model. An adapted list's model draws from its weights' rows in NumPy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import namesmith.models.sparse_ngram as sparse_ngram
from namesmith import NameModel
from namesmith.adaptation.prior import build_ngram_prior
from namesmith.core.errors import CheckpointError
from namesmith.data.words import load_words
from namesmith.generation.saved_tables import TABLES_KEY
from namesmith.training.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Directories of a bigram, an n-gram (calibrated), a conditional n-gram (calibrated per label node) and 40 names
    adapted onto a prior of 1,000 others (a sparse n-gram drawing only the 40's letters)."""
    tmp = tmp_path_factory.mktemp("tables")
    words = load_words("builtin")[:2000]
    plain = tmp / "names.txt"
    plain.write_text("\n".join(words) + "\n", encoding="utf-8")
    labelled = tmp / "names.tsv"
    labelled.write_text("name\tsex\n" + "".join(f"{w}\t{'FM'[len(w) % 2]}\n" for w in words), encoding="utf-8")
    dirs = {}
    for name, data, options in (("bigram", plain, {"model": "bigram-counts", "calibrate": "none"}),
                                ("ngram", plain, {"order": 4, "calibrate": "length"}),
                                ("conditional", labelled, {"order": 3, "condition": ("sex",), "calibrate": "length"})):
        trained = NameModel.train(data, out=tmp / name, **options)
        dirs[name] = (tmp / name, trained)
    prior = build_ngram_prior({"all": words[:1000]}, order=4)
    save_checkpoint(tmp / "prior", prior.model, prior.vocab, prior.meta)
    few = tmp / "few.txt"  # the prior's letters, less one: drawn only on request
    few.write_text("\n".join([w for w in words[1000:] if "e" not in w][:40]) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sparse_ngram, "MAX_CHAIN_CELLS", 0)  # as the catalogue prior's: too large a chain
        dirs["adapted"] = (tmp / "adapted", NameModel.train(few, order=4, prior=tmp / "prior", out=tmp / "adapted"))
    return dirs


@pytest.fixture
def chains(monkeypatch, request):
    """An adapted model's chain is too large (as over the catalogue's prior): it draws from its rows in memory too."""
    if request.node.callspec.params.get("kind") == "adapted":
        monkeypatch.setattr(sparse_ngram, "MAX_CHAIN_CELLS", 0)


@pytest.mark.parametrize("kind", ["bigram", "ngram", "conditional", "adapted"])
def test_saved_tables_draw_the_names_the_model_draws(models, kind, chains):
    directory, trained = models[kind]
    assert TABLES_KEY in json.loads((directory / "namesmith.json").read_text())
    for options in ({"seed": 3}, {"seed": 4, "starts_with": "ma"}, {"seed": 5, "regex": ".*[aeiou]$", "unique": True}):
        loaded = NameModel.load(directory)
        names = loaded.generate(30, **options).names
        assert loaded._model is None  # drawn from the tables alone
        assert names == trained.generate(30, **options).names  # the model itself, in memory
    if kind == "conditional":  # a request the tables cannot answer loads the model, and draws what it draws
        girls = {"seed": 1, "where": {"sex": "F"}}
        assert loaded.generate(10, **girls).names == trained.generate(10, **girls).names
        assert loaded._model is not None
    if kind == "adapted":  # its tables are of its own letters: the prior's letters need the model
        everything = {"seed": 1, "prior_letters": True}
        assert loaded.generate(10, **everything).names == trained.generate(10, **everything).names
        assert loaded._model is not None


def test_an_adapted_model_saves_no_tables_beside_its_weights(models, tmp_path):
    """Its rows are read from the weights file itself (namesmith.models.sparse_rows): nothing more on disk. An
    adapted model whose chain is small enough saves its chain (of its own letters), and draws from it."""
    directory, trained = models["adapted"]
    meta = json.loads((directory / "namesmith.json").read_text())
    assert trained.model.model_type == "sparse-ngram" and meta[TABLES_KEY]["file"] == meta["weights"]["file"]
    assert sorted(p.name for p in directory.glob("*.safetensors")) == [meta["weights"]["file"]]
    names = NameModel.load(directory).generate(200, seed=0).names
    assert "e" not in "".join(names) and len(set(names)) > 100
    trained.save(tmp_path / "small")
    entry = json.loads((tmp_path / "small" / "namesmith.json").read_text())[TABLES_KEY]
    assert "rows" not in entry and entry["file"].startswith("tables-")
    loaded = NameModel.load(tmp_path / "small")
    assert loaded.generate(50, seed=2).names == trained.generate(50, seed=2).names and loaded._model is None
    assert "e" not in "".join(loaded.generate(200, seed=0).names)


def test_an_older_directory_without_tables_loads_the_model_and_draws_the_same_names(models, tmp_path):
    directory, trained = models["ngram"]
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((directory / "namesmith.json").read_text())
    (old / meta["weights"]["file"]).write_bytes((directory / meta["weights"]["file"]).read_bytes())
    del meta[TABLES_KEY]
    (old / "namesmith.json").write_text(json.dumps(meta))
    loaded = NameModel.load(old)
    assert loaded._tables_entry is None and loaded._model is not None
    assert loaded.generate(25, seed=9).names == trained.generate(25, seed=9).names


def test_a_corrupted_tables_file_is_refused_in_one_line(models, tmp_path):
    directory, _ = models["bigram"]
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    meta = json.loads((copy / "namesmith.json").read_text())
    tables = copy / meta[TABLES_KEY]["file"]
    tables.write_bytes(tables.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="sha256") as error:
        NameModel.load(copy).generate(3)
    assert "\n" not in str(error.value)


def test_calibrating_a_loaded_model_draws_from_the_model_again(models):
    directory, _ = models["ngram"]
    loaded = NameModel.load(directory)
    before = loaded.generate(20, seed=2).names
    loaded.calibrate("none")
    assert loaded._tables_entry is None  # its tables were of the calibrated model
    untilted = loaded.generate(20, seed=2).names
    assert untilted != before


@pytest.mark.parametrize("kind", ["bigram", "ngram", "conditional", "adapted"])
def test_the_cli_samples_a_count_model_without_importing_torch(models, kind, chains):
    directory, trained = models[kind]
    code = ("import sys; from namesmith.cli import main; "
            f"code = main(['-q', 'sample', '-m', {str(directory)!r}, '-n', '3', '--seed', '1']); "
            "print('torch' in sys.modules, code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    *names, last = out.stdout.split("\n")[:-1]
    assert len(names) == 3 and last == "False 0"
    assert names == trained.generate(3, seed=1).names  # the library's names, from the model in memory


def test_a_chain_too_large_to_keep_is_neither_built_nor_saved(models, monkeypatch, tmp_path):
    """A long list's n-gram: its transitions would take gigabytes to build (8 bytes per state and token), so
    saving it checks the chain's size first, and samples through the model."""
    import namesmith.generation.saved_tables as saved_tables
    from namesmith.models.ngram import NGram

    _, trained = models["ngram"]
    monkeypatch.setattr(saved_tables, "MAX_CHAIN_BYTES", 8 * trained.model.chain_states() * trained.vocab.size - 1)
    monkeypatch.setattr(NGram, "markov_chain", lambda self: pytest.fail("the chain was built"))
    trained.save(tmp_path / "big")
    assert TABLES_KEY not in json.loads((tmp_path / "big" / "namesmith.json").read_text())
