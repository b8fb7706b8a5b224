"""The package's shape: sub-packages that say what they hold, no import cycles, and torch-free modules
that really load without torch (login nodes plan, launch and tabulate with hundreds of processes)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "normae"
# Modules that must load without torch, timm, torchvision or the numpy stack (pandas, scipy, sklearn, matplotlib).
TORCH_FREE = (
    "normae.cli",
    "normae.cli.main",
    "normae.cli.options",
    "normae.cli.training",
    "normae.cli.bench",
    "normae.cli.launch",
    "normae.cli.plan",
    "normae.cli.data",
    "normae.cli.results",
    "normae.cli.analysis",
    "normae.spec",
    "normae.spec.checks",
    "normae.spec.base",
    "normae.spec.pretrain",
    "normae.spec.evaluation",
    "normae.spec.bench",
    "normae.spec.vocabulary",
    "normae.model_sizes",
    "normae.training.batching",
    "normae.experiments.data_map",
    "normae.paths",
    "normae.atomic",
    "normae.experiments.plan_report",
    "normae.errors",
    "normae.data",
    "normae.data.registry",
    "normae.experiments",
    "normae.experiments.config",
    "normae.experiments.plan",
    "normae.experiments.plan_types",
    "normae.experiments.faithful",
    "normae.experiments.mapping",
    "normae.stages",
    "normae.cluster",
    "normae.cluster.launch",
    "normae.cluster.resources",
    "normae.cluster.job",
    "normae.cluster.submitit_adapter",
    "normae.report.summarize",
)
HEAVY = ("torch", "timm", "torchvision", "numpy", "pandas", "scipy", "sklearn", "matplotlib", "PIL")
# The tables are pandas frames: the numpy stack is allowed there, torch is not.
TORCH_FREE_WITH_PANDAS = ("normae.report.tables", "normae.report.pairs", "normae.report.html")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """The normae modules ``name`` imports anywhere in its text, deferred imports inside functions included."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


def test_no_import_cycles():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    # A package's __init__ importing its own sub-module is not a cycle of roles.
    for name in graph:
        graph[name] = {other for other in graph[name] if not other.startswith(name + ".")}
    visiting, done, cycles = [], set(), []

    def visit(node):
        if node in done:
            return
        if node in visiting:
            cycles.append(visiting[visiting.index(node) :] + [node])
            return
        visiting.append(node)
        for other in sorted(graph[node]):
            visit(other)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_every_sub_package_says_what_it_holds_and_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 20, f"{init} needs a paragraph: what it holds and what it may import"
        assert "import" in doc, f"{init}'s docstring must say what the sub-package may import"


def test_no_module_is_a_grab_bag():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: lines for name, lines in sizes.items() if lines > 375} == {}


def loaded_after_import(module: str) -> list[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("module", TORCH_FREE + TORCH_FREE_WITH_PANDAS)
def test_torch_free_modules_load_without_torch(module):
    loaded = {name.split(".")[0] for name in loaded_after_import(module)}
    forbidden = HEAVY[:3] if module in TORCH_FREE_WITH_PANDAS else HEAVY
    assert sorted(loaded & set(forbidden)) == []


def test_the_lists_name_real_modules():
    assert set(TORCH_FREE + TORCH_FREE_WITH_PANDAS) <= set(MODULES)
