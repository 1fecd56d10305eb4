"""The README's examples run as written: its Python snippets (each in a fresh directory), and its console
examples print what it shows."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs(one_thread, tmp_path, monkeypatch, code):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


# --- the console examples: `$ namesmith ...` and what it prints, as shown ----------------------------
TEXT = README.read_text(encoding="utf-8")
# the command that trains the examples' `out` (a count model of the built-in names: a fraction of a second)
OUT_MODEL = re.search(r"`(namesmith train --model bigram-counts [^`]*--out out)`", TEXT).group(1)
CONSOLE = [block for block in re.findall(r"^```[a-z]*\n(.*?)^```$", TEXT, flags=re.M | re.S)
           if block.startswith("$ namesmith ")]
EXAMPLES = [(lines[0][2:], lines[1:]) for block in CONSOLE
            for lines in (chunk.splitlines() for chunk in re.split(r"^(?=\$ )", block, flags=re.M) if chunk)]
SECONDS = re.compile(r"\b\d+\.\d+ s\b")  # run times vary: "(1.11 s, acceptance ..."


def shell(command: str, capsys) -> tuple[list[str], list[str]]:
    """stdout and stderr lines of `namesmith ...` run in this process (the same `main` the console script runs)."""
    from namesmith.cli import main

    main(shlex.split(command)[1:])
    out, err = capsys.readouterr()
    return out.splitlines(), err.splitlines()


@pytest.fixture(scope="module")
def examples_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme-examples")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        from namesmith.cli import main

        assert main(shlex.split(OUT_MODEL)[1:] + ["-q"]) == 0
    return folder


def test_the_readme_has_console_examples():
    assert len(EXAMPLES) >= 10 and all(shown for _, shown in EXAMPLES)


def contains(shown, printed) -> bool:
    """Whether `shown` JSON is `printed` JSON with some keys left out (times only approximately equal)."""
    if isinstance(shown, dict):
        return isinstance(printed, dict) and all(k in printed and (k == "seconds" or contains(v, printed[k]))
                                                 for k, v in shown.items())
    return shown == printed


@pytest.mark.parametrize("command, shown", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_a_console_example_prints_what_the_readme_shows(one_thread, examples_folder, monkeypatch, capsys, command,
                                                        shown):
    """What the README shows is the names (stdout), or all the command printed (stdout, then stderr)."""
    monkeypatch.chdir(examples_folder)
    out, err = shell(command, capsys)
    if "--json" in command:
        assert contains(json.loads("\n".join(shown)), json.loads("\n".join(out)))
        return
    same = [SECONDS.sub("_ s", line) for line in shown]
    assert same in ([SECONDS.sub("_ s", line) for line in out], [SECONDS.sub("_ s", line) for line in out + err]), \
        "\n".join(out + err)


def test_the_classify_example_prints_what_its_comment_says(one_thread, tmp_path, monkeypatch, capsys):
    """`namesmith classify -m out ...  # leslie: sex F 99% ...`: out is the default model (`namesmith train`)."""
    line = re.search(r"^(namesmith classify -m out [^#]*?)\s+# (.*?)(?: \(|$)", TEXT, flags=re.M)
    monkeypatch.chdir(tmp_path)
    from namesmith.cli import main

    assert main(["train", "-q"]) == 0
    out, _ = shell(line.group(1), capsys)
    assert out[0] == line.group(2)
