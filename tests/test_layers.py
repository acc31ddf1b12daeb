"""The layers of CONTRIBUTING.md: every import of the project's code points to its own layer or
one below it, and no files or packages import each other in a cycle. Imports inside functions
count too."""
import ast
import subprocess
import sys
from collections import defaultdict

import pytest

from conftest import PROJECT_ROOT

# top to bottom; a module may import its own layer and the layers below it
LAYERS = [
    ("entry", ["train", "test", "predict", "export", "tune", "runs", "plot", "new_project", "api", "base",
               "benchmarks"]),
    ("many runs", ["experiments", "tuning"]),
    ("config parser", ["parse_config"]),
    ("engine", ["trainer"]),
    ("evaluation", ["evaluation"]),
    ("parts", ["data_loader", "model", "logger", "run"]),
    ("config", ["config"]),
    ("utilities", ["utils"]),
]
LAYER_OF = {top: depth for depth, (_, tops) in enumerate(LAYERS) for top in tops}
SKIPPED = ("tests", "scripts", ".venv", "saved", "data", "docs")


def project_files():
    for path in sorted(PROJECT_ROOT.rglob("*.py")):
        relative = path.relative_to(PROJECT_ROOT)
        if relative.parts[0] not in SKIPPED and not relative.parts[0].startswith("."):
            yield relative


def module_name(relative):
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source, module, is_package=False, known=None):
    """Every project module that `source` (the code of `module`) imports, at the top or inside a
    function. `from pkg import name` imports pkg.name where that is a module (in `known`), else pkg."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & (known or set())
            found.update(submodules or {base})
    return {name for name in found if name.split(".")[0] in LAYER_OF}


def import_graph():
    files = list(project_files())
    known = {module_name(f) for f in files}
    graph = {}
    for relative in files:
        module = module_name(relative)
        imported = imported_modules((PROJECT_ROOT / relative).read_text(), module, relative.name == "__init__.py",
                                    known)
        graph[module] = {m for m in imported if m in known} - {module}
    return graph


def upward_imports(graph):
    return sorted(f"{importer} -> {module}" for importer, imported in graph.items() for module in imported
                  if LAYER_OF[module.split(".")[0]] < LAYER_OF[importer.split(".")[0]])


def package_graph(graph):
    packages = defaultdict(set)
    for importer, imported in graph.items():
        packages[importer.split(".")[0]].update(m.split(".")[0] for m in imported)
    return {top: targets - {top} for top, targets in packages.items()}


def test_every_import_points_to_its_own_layer_or_below():
    assert upward_imports(import_graph()) == []


def strongly_connected(graph):
    """Tarjan's algorithm: the components of more than one node (cycles)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


@pytest.mark.parametrize("level", ["module", "package"])
def test_nothing_imports_in_a_cycle(level):
    graph = import_graph()
    assert strongly_connected(graph if level == "module" else package_graph(graph)) == []


def test_layer_table_covers_every_top_level_module():
    tops = {module_name(f).split(".")[0] for f in project_files()}
    assert tops - set(LAYER_OF) == set()
    contributing = (PROJECT_ROOT / "CONTRIBUTING.md").read_text()
    assert [top for top in LAYER_OF if f"{top}/" not in contributing and f"{top}.py" not in contributing] == []


def test_the_checks_see_an_upward_import_inside_a_function_and_a_cycle():
    source = "def f():\n    from trainer import Trainer\n    from .io import write_json\n    from . import dist\n"
    assert imported_modules(source, "utils.probe", known={"utils.dist"}) == {"trainer", "utils.io", "utils.dist"}
    graph = {"utils.probe": {"trainer"}, "trainer.a": {"logger.b"}, "logger.b": {"trainer.a"}}
    assert upward_imports(graph) == ["logger.b -> trainer.a", "utils.probe -> trainer"]
    assert strongly_connected(graph) == [["logger.b", "trainer.a"]]
    assert strongly_connected(package_graph(graph)) == [["logger", "trainer"]]


def test_importing_a_base_class_for_a_model_does_not_import_the_training_loop():
    code = ("import sys; from base import BaseModel, BaseDataLoader; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'trainer', 'pandas', 'logger', 'matplotlib', 'sklearn', 'torchmetrics', 'tensorboard'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    code = "import base; print(base.BaseTrainer.__module__, base.Callback.__module__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["trainer.base_trainer", "trainer.callback"]
