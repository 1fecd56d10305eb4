"""Every code block of README.md and docs/*.md runs in these tests, and every relative link resolves.

The blocks, by kind:

- ```python blocks run as written, each in a fresh directory.
- Console examples (a block whose first line is `$ namesmith ...`) run each `$` command against the
  model `out` that the file says trained it (the first `namesmith train ... --out out` it quotes in
  backticks: the README's default model, docs/generation.md's `bigram-counts` one) and must print
  what the block shows (run times excepted; with `--json`, the keys shown).
- ```bash blocks run command by command, in-process through `namesmith.cli.main`, each block in a
  fresh directory, and every command must succeed. Small data stands in for what the docs name
  but a test cannot afford (see `small_data` and `bounded`):
  `my_words.txt` and `words.txt` (the docs' placeholders for a user's own list) are 300 built-in
  names, `huge_words.txt` all of them; `--data us`, `israel` and `world` read every 40th distinct name of that
  set, with all its rows and labels; a model trained by gradient steps (every `--model` but the
  count models) stops after 20 steps unless the command says how many. `examples/` is the repository's.
- A block that cannot run in a test (it installs packages, starts a server that never returns, or
  starts several processes) is preceded by `<!-- not run: REASON -->`; there are few of them
  (`MAX_NOT_RUN`), each with its reason.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_NOT_RUN = 8
NOT_RUN = re.compile(r"^<!-- not run: (.+?) -->$")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    not_run: str | None  # the reason, where the block is marked
    shows: str | None = None  # a bash block's output, shown in the plain block right after it

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            mark = NOT_RUN.match(lines[i - 1]) if i else None
            found.append(Block(path, i + 1, fence.group(1), "\n".join(lines[i + 1:end]) + "\n",
                               mark.group(1) if mark else None))
            i = end
        i += 1
    for block, after in zip(found, found[1:]):
        between = lines[block.line + block.text.count("\n") + 1:after.line - 1]  # after its closing fence
        if block.lang == "bash" and after.lang == "" and not after.text.startswith("$ ") and not any(
                line.strip() for line in between):
            block.shows, after.not_run = after.text, f"the output of the block at line {block.line}"
    return found


BLOCKS = [block for path in FILES for block in blocks(path)]
PYTHON = [b for b in BLOCKS if b.lang == "python" and not b.not_run]
CONSOLE = [b for b in BLOCKS if b.text.startswith("$ namesmith ") and not b.not_run]
BASH = [b for b in BLOCKS if b.lang == "bash" and not b.not_run]
PICTURES = [b for b in BLOCKS if b.lang in ("mermaid", "text") and b.path.name == "architecture.md"]


def test_every_block_is_of_a_kind_the_tests_run_or_is_marked_not_run():
    kinds = {id(b) for b in PYTHON + CONSOLE + BASH + PICTURES}
    outputs = {id(b) for b in BLOCKS if b.not_run and b.not_run.startswith("the output of")}
    left = [b.id for b in BLOCKS if id(b) not in kinds and not b.not_run]
    assert not left, f"blocks no test runs (mark them `<!-- not run: REASON -->`): {left}"
    marked = [b for b in BLOCKS if b.not_run and id(b) not in outputs]
    assert len(marked) <= MAX_NOT_RUN, [b.id for b in marked]


def test_the_readme_has_a_python_and_a_shell_quick_start():
    readme = [b for b in BLOCKS if b.path.name == "README.md"]
    assert any(b in PYTHON for b in readme) and any(b in BASH for b in readme) and any(b in CONSOLE for b in readme)


def test_the_readme_is_a_five_minute_read():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


# --- Python blocks ------------------------------------------------------------------------------------
# the README's quick start in the fast set, docs/'s blocks (each trains its own models) in the whole suite
@pytest.mark.parametrize("block", [pytest.param(b, marks=[] if b.path.name == "README.md" else pytest.mark.slow)
                                   for b in PYTHON], ids=[b.id for b in PYTHON])
def test_a_python_block_runs(one_thread, tmp_path, monkeypatch, block):
    monkeypatch.chdir(tmp_path)
    exec(compile(block.text, str(block.path), "exec"), {"__name__": "__docs__"})


# --- console examples: `$ namesmith ...` and what it prints, as shown ----------------------------------
EXAMPLES = [(block, lines[0][2:], lines[1:]) for block in CONSOLE
            for lines in (chunk.splitlines() for chunk in re.split(r"^(?=\$ )", block.text, flags=re.M) if chunk)]
SECONDS = re.compile(r"\b\d+\.\d+ s\b")  # run times vary: "(1.11 s, acceptance ..."
MODEL_COMMAND = re.compile(r"`(namesmith train[^`]*--out out)`")


def model_command(path: Path) -> str | None:
    """The command a file's console examples say trained their model `out` (the first one it quotes)."""
    found = MODEL_COMMAND.search(" ".join(path.read_text(encoding="utf-8").split()))
    return found.group(1) if found else None


def shell(command: str, capsys) -> tuple[list[str], list[str]]:
    """stdout and stderr lines of `namesmith ...` run in this process (the same `main` the console script runs)."""
    from namesmith.cli import main

    main(shlex.split(command)[1:])
    out, err = capsys.readouterr()
    return out.splitlines(), err.splitlines()


def test_the_console_examples_name_the_model_they_run_against():
    """Every file with console examples quotes how its `out` was trained, as the tests train it."""
    for path in {block.path for block in CONSOLE}:
        assert model_command(path), f"{path.name}: quote the `namesmith train ... --out out` its examples read"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cli_trained):
    """A folder holding `out` as each command trains it, trained once per run (conftest.cli_trained), copied."""
    folders: dict[str, Path] = {}

    def folder(command: str) -> Path:
        if command not in folders:
            folders[command] = tmp_path_factory.mktemp("docs-examples")
            shutil.copytree(cli_trained(command), folders[command], dirs_exist_ok=True)
        return folders[command]
    return folder


def test_the_docs_have_console_examples():
    assert len(EXAMPLES) >= 10 and all(shown for _, _, shown in EXAMPLES)


def contains(shown, printed) -> bool:
    """Whether `shown` JSON is `printed` JSON with some keys left out (times only approximately equal)."""
    if isinstance(shown, dict):
        return isinstance(printed, dict) and all(k in printed and (k == "seconds" or contains(v, printed[k]))
                                                 for k, v in shown.items())
    return shown == printed


@pytest.mark.parametrize("block, command, shown", EXAMPLES, ids=[f"{b.id} {c}" for b, c, _ in EXAMPLES])
def test_a_console_example_prints_what_the_docs_show(one_thread, trained, monkeypatch, capsys, block, command, shown):
    """What a block shows is the names (stdout), or all the command printed (stdout, then stderr)."""
    monkeypatch.chdir(trained(model_command(block.path)))
    out, err = shell(command, capsys)
    if "--json" in command:
        assert contains(json.loads("\n".join(shown)), json.loads("\n".join(out)))
        return
    same = [SECONDS.sub("_ s", line) for line in shown]
    assert same in ([SECONDS.sub("_ s", line) for line in out], [SECONDS.sub("_ s", line) for line in out + err]), \
        "\n".join(out + err)


def test_the_classify_example_prints_what_its_comment_says(one_thread, trained, monkeypatch, capsys):
    """`namesmith classify -m out ...  # leslie: sex F 99% ...`: out is the default model (`namesmith train`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    line = re.search(r"^(namesmith classify -m out [^#]*?)\s+# (.*?)(?: \(|$)", text, flags=re.M)
    monkeypatch.chdir(trained("namesmith train --out out"))
    out, _ = shell(line.group(1), capsys)
    assert out[0] == line.group(2)


# --- bash blocks: every command, with small data --------------------------------------------------------
PLACEHOLDER_LISTS = ("my_words.txt", "words.txt", "huge_words.txt")
BIG_SETS = ("us", "israel", "world")
COUNT_MODELS = ("bigram-counts", "ngram")
STEPS = "20"


def commands(text: str) -> list[list[str]]:
    """The block's commands as argument lists: comments dropped, `\\` continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """The placeholder word lists, and every 40th distinct name of each large built-in set with all its rows."""
    from namesmith.data.catalogue import load_dataset

    folder = tmp_path_factory.mktemp("docs-data")
    builtin = load_dataset("builtin").distinct_names()
    for name in PLACEHOLDER_LISTS:  # a list of 1,000 names or more is not adapted onto the catalogue's prior
        names = builtin if name == "huge_words.txt" else builtin[::len(builtin) // 300][:300]
        (folder / name).write_text("\n".join(names) + "\n", encoding="utf-8")
    for name in BIG_SETS:
        table = load_dataset(name)
        keep = set(table.distinct_names()[::40])
        columns = ["name", *table.label_columns, *(["count"] if table.has_counts else [])]
        rows = ["\t".join(columns)]
        for i, word in enumerate(table.names):
            if word in keep:
                rows.append("\t".join([word, *(table.labels[c][i] for c in table.label_columns),
                                       *([str(int(table.counts[i]))] if table.has_counts else [])]))
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def bounded(argv: list[str], data: Path) -> list[str]:
    """`namesmith ARGS` with the large sets read from their small stand-ins, and gradient training capped."""
    args = argv[1:]
    for i, arg in enumerate(args[:-1]):
        if arg == "--data" and args[i + 1] in BIG_SETS:
            args[i + 1] = str(data / f"{args[i + 1]}.tsv")
    model = args[args.index("--model") + 1] if "--model" in args else "ngram"
    if args[0] == "train" and model not in COUNT_MODELS and "--max-steps" not in args:
        args += ["--max-steps", STEPS]
    return args


def test_every_command_of_a_run_block_is_namesmith():
    others = [(b.id, " ".join(c)) for b in BASH for c in commands(b.text) if c[0] != "namesmith"]
    assert not others, f"mark these blocks `<!-- not run: REASON -->` or split them: {others}"


@pytest.mark.slow  # each block trains several models: 25-90 s on a busy 2-core machine
@pytest.mark.parametrize("block", BASH, ids=[b.id for b in BASH])
def test_a_bash_block_runs(one_thread, small_data, tmp_path, monkeypatch, capsys, block):
    from namesmith.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for name in PLACEHOLDER_LISTS:
        shutil.copy(small_data / name, tmp_path / name)
    printed_lines = []
    for argv in commands(block.text):
        status = main(bounded(argv, small_data))
        printed = capsys.readouterr()
        assert status in (0, None), f"{' '.join(argv)} exited {status}:\n{printed.out}{printed.err}"
        printed_lines += printed.out.splitlines() + printed.err.splitlines()
    if block.shows:  # what the docs show it printing
        missing = [line for line in block.shows.splitlines() if line not in printed_lines]
        assert not missing, "\n".join(printed_lines)


@pytest.mark.slow  # two models of examples/elves.txt, one adapted onto the catalogue's prior
def test_the_elves_table_is_what_the_two_models_draw(one_thread, tmp_path, monkeypatch, capsys):
    """docs/short-lists.md's table of ten names from each model of examples/elves.txt (`--seed 1`)."""
    from namesmith.cli import main

    text = (ROOT / "docs" / "short-lists.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (adapted|the list alone), `([^`]+)` \| (.+) \|$", text, flags=re.M)
    assert len(rows) == 4
    monkeypatch.chdir(tmp_path)
    elves = str(ROOT / "examples" / "elves.txt")
    assert main(["train", "--data", elves, "--no-split", "--out", "elves", "-q"]) == 0
    assert main(["train", "--data", elves, "--no-split", "--prior", "none", "--out", "elves-alone", "-q"]) == 0
    capsys.readouterr()
    for model, options, names in rows:
        directory = "elves" if model == "adapted" else "elves-alone"
        main(["sample", "-m", directory, "-n", "10", "--seed", "1", *options.split(), "-q"])
        assert capsys.readouterr().out.splitlines() == names.split(", "), (model, options)


# --- the architecture's pictures --------------------------------------------------------------------
@pytest.mark.parametrize("block", PICTURES, ids=[b.id for b in PICTURES])
def test_a_picture_of_the_layers_names_every_module(block):
    """Both pictures name every module of the package (a new one: add it to its layer), and no module that is gone."""
    package = ROOT / "namesmith"
    folders = sorted(p.parent.name for p in package.glob("*/__init__.py"))
    modules = {p.name for p in package.rglob("*.py")} - {"__init__.py", "__main__.py"}
    named = set(re.findall(r"[a-z_]+\.py", block.text))
    assert "serve/" in block.text and not modules - named, \
        f"add {sorted(modules - named)} to the layer they belong to in both pictures of {block.path.name}"
    assert all(f"{folder}/" in block.text for folder in folders), f"name every subpackage of {folders}"
    assert not named - modules, f"{block.path.name} names modules that are gone: {sorted(named - modules)}"


# --- links --------------------------------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a file's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_every_relative_link_resolves(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists() or (anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)):
            broken.append(target)
    assert not broken, f"{path.name}: {broken}"


def test_every_docs_file_is_reached_from_the_readme():
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        path = todo.pop()
        seen.add(path)
        text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in LINK.findall(text):
            file = (path.parent / target.partition("#")[0]).resolve()
            if file.suffix == ".md" and file.exists() and file not in seen:
                todo.append(file)
    assert not set(FILES) - seen, sorted(str(p.relative_to(ROOT)) for p in set(FILES) - seen)
