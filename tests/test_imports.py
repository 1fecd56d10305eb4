"""The package's import graph: no cycles, and imports flow one way, from the applications down to the data.

Every `import`/`from ... import` of a namesmith module counts, at module level, inside a function (a lazy
import that goes back up is a cycle too, and a sign that a piece lives in the wrong place) or under
`if TYPE_CHECKING:`. The layers, lowest first, are `LAYERS` (docs/architecture.md draws them).
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "namesmith"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache  # every module parsed once a run
def imports() -> tuple[tuple[str, int, str], ...]:
    """(module, line, imported module) for every import of a namesmith module by a module of the package."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    found = []
    for name, path in sorted(modules.items()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(name, node.lineno, target) for target in targets if target in modules and target != name]
    return tuple(found)


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module_name(p): set() for p in PACKAGE.rglob("*.py")}
    for name, _, target in imports():
        graph[name].add(target)
    return graph


# The layers, lowest first: a module may import its own layer and the layers below it, never one above.
# The package root (which re-exports the public API) and `__main__` sit with the applications.
LAYERS = ("core", "data", "models", "scoring", "choosing", "generation", "training", "adaptation", "namemodel",
          "applications")
APPLICATIONS = ("cli", "serve")  # the command line and the server: applications of NameModel


def layer_of(module: str) -> str:
    """The layer of a module of the package: its subpackage, `namemodel`, or the applications."""
    if module in ("namesmith", "namesmith.__main__") or module.split(".")[1] in APPLICATIONS:
        return "applications"
    return module.split(".")[1]


def upward_imports(found: list[tuple[str, int, str]]) -> list[str]:
    """'module:line imports target (layer is above layer)' for each import of a layer above the importer's."""
    return [f"{name}:{line} imports {target} ({layer_of(target)} is above {layer_of(name)})"
            for name, line, target in found if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(name))]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_imports_have_no_cycle():
    graph = import_graph()
    # the package root re-exports the public API; nothing inside the package may import it back
    importers_of_root = sorted(n for n, targets in graph.items() if "namesmith" in targets and n != "namesmith")
    assert importers_of_root == [], f"modules importing the package root: {importers_of_root}"
    graph["namesmith"] = set()
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_sits_in_a_layer():
    unplaced = sorted(m for m in import_graph() if layer_of(m) not in LAYERS)
    assert unplaced == [], f"modules of no layer (add their subpackage to LAYERS and docs/architecture.md): {unplaced}"


def test_imports_flow_down_the_layers():
    upward = upward_imports(imports())
    assert upward == [], "imports of a layer above the importer's:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_import():
    found = [("namesmith.data.counting", 58, "namesmith.models.ngram"), ("namesmith.models.ngram", 3,
             "namesmith.data.ngram_keys"), ("namesmith.serve.app", 1, "namesmith.cli"),
             ("namesmith.cli", 9, "namesmith.serve.app"), ("namesmith.namemodel", 5, "namesmith.adaptation.adapt")]
    assert upward_imports(found) == ["namesmith.data.counting:58 imports namesmith.models.ngram (models is above data)"]


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "namesmith.namemodel" in graph["namesmith.cli.common"]  # imported inside functions only


HEAVY = "import json, sys\nprint('heavy:', json.dumps({m: m in sys.modules for m in ('torch', 'numpy')}))"


def heavy_modules_after_each(steps: list[str]) -> list[dict[str, bool]]:
    """Which of torch and NumPy one fresh interpreter has imported after each of `steps`, run in turn. Imports only
    add up, so a step after which torch is not there did not import it, nor did any step before it (one interpreter,
    not one a step: each start costs a fifth of a second)."""
    probe = "".join(f"{step}\n{HEAVY}\n" for step in steps)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line[len("heavy: "):]) for line in result.stdout.splitlines() if line.startswith("heavy: ")]


def test_import_namesmith_and_help_need_no_torch():
    # torch takes seconds to import; `import namesmith` and `namesmith --help` take a fraction of that without it
    help_only = "from namesmith.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    # a command's parser imports what its own options need, not what the other commands' need
    light = (["-q", "score", "-m", "dir", "emma"], ["ensemble", "-m", "a", "-m", "b", "--out", "c"], ["data"],
             ["serve", "--port", "8001"])
    parses = [f"from namesmith.cli import parse\nparse({argv!r})" for argv in light]
    after = heavy_modules_after_each(["import namesmith", help_only, *parses, "import numpy"])
    assert len(after) == 3 + len(parses)
    assert after[0] == after[1] == {"torch": False, "numpy": False}
    assert [argv for argv, found in zip(light, after[2:]) if found["torch"]] == []
    assert after[-1]["numpy"]  # the probe sees what was imported


def test_the_lazy_names_of_the_package_resolve():
    import namesmith
    from namesmith.core.version import __version__
    from namesmith.data.words import DataConfig, load_words
    from namesmith.namemodel import NameModel

    assert (namesmith.NameModel, namesmith.DataConfig, namesmith.load_words) == (NameModel, DataConfig, load_words)
    assert namesmith.__version__ == __version__
    assert all(hasattr(namesmith, name) for name in namesmith.__all__)
    try:
        namesmith.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown attribute of the package must raise AttributeError")
