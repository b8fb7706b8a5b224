"""The package's shape: sub-packages that say what they hold and import only what their ``MAY_IMPORT`` allows,
no import cycles, and torch-free modules that really load without torch (login nodes plan, launch and tabulate
with hundreds of processes). Modules are split by role, not by length: there is no size limit."""

import ast
import json
import re
import shutil
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
    "normae.spec.batching",
    "normae.spec.geometry",
    "normae.experiments.data_map",
    "normae.paths",
    "normae.atomic",
    "normae.experiments.plan_report",
    "normae.errors",
    "normae.data",
    "normae.data.registry",
    "normae.data.image_folders",
    "normae.data.layouts",
    "normae.datacheck",
    "normae.datagen",
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
    "normae.report.final_metrics",
)
HEAVY = ("torch", "timm", "torchvision", "numpy", "pandas", "scipy", "sklearn", "matplotlib", "PIL")
# The tables are pandas frames, check-data and the data generators read and write arrays and images: the numpy
# stack is allowed there, torch is not.
TORCH_FREE_WITH_NUMPY = (
    "normae.report.tables",
    "normae.report.pairs",
    "normae.report.html",
    "normae.datacheck.check",
    "normae.datagen.rehearsal",
    "normae.datagen.imagenet_like",
)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: Path) -> dict[str, Path]:
    """Every module of the package in folder ``package``, by dotted name."""
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


MODULES = package_modules(PACKAGE)


def imported_modules(name: str, path: Path, modules: dict[str, Path] = MODULES) -> set[str]:
    """The modules of ``modules`` that ``name`` imports anywhere in its text, deferred imports inside functions
    included."""
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
    return {module for module in found if module in modules and module != name}


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


RULE = "MAY_IMPORT"
MOVING_OUT: set[tuple[str, str]] = set()  # imports that break a rule while a move is under way (none now)


def declared_rule(init: Path) -> tuple[str, ...] | None:
    """A sub-package's ``MAY_IMPORT``, read from its ``__init__``'s text (nothing is imported), or None."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(target, "id", None) for target in node.targets] == [RULE]:
            return tuple(ast.literal_eval(node.value))
    return None


def rule_problems(package: Path) -> list[str]:
    """What is wrong with the sub-packages' declarations themselves: a missing rule, a name of no module."""
    modules, root, problems = package_modules(package), package.name, []
    for init in sorted(package.glob("*/__init__.py")):
        sub, rule = init.parent.name, declared_rule(init)
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if len(doc.split()) < 20 or RULE not in doc:
            problems.append(
                f"{root}.{sub}: its docstring needs a paragraph: what it holds, what it may import ({RULE})"
            )
        if rule is None or not all(isinstance(entry, str) for entry in rule):
            problems.append(f"{root}.{sub}: its __init__.py needs {RULE} = (names of {root} modules it may import)")
            continue
        problems += [
            f"{root}.{sub}: {RULE} names {entry!r}, which is not a module of {root} outside it"
            for entry in rule
            if f"{root}.{entry}" not in modules or entry.split(".")[0] == sub
        ]
    return problems


def allowed(target: list[str], rule: tuple[str, ...]) -> bool:
    """``target`` (a module's dotted parts below the root) is a rule entry, inside one, or a package above one
    (importing ``data.registry`` runs ``data``'s ``__init__``, which the rule's author allowed with it)."""
    entries = [entry.split(".") for entry in rule]
    return any(target[: len(entry)] == entry or entry[: len(target)] == target for entry in entries)


def forbidden_imports(package: Path) -> set[tuple[str, str]]:
    """(module, what it imports) for every import of a module of ``package`` that the importer's sub-package does
    not allow: not its own sub-package, not in its ``MAY_IMPORT``. Deferred imports count; top-level modules and
    sub-packages without a rule (``rule_problems`` reports those) are not checked."""
    modules = package_modules(package)
    rules = {init.parent.name: declared_rule(init) for init in package.glob("*/__init__.py")}
    found = set()
    for name, path in modules.items():
        own = name.split(".")[1:2]
        rule = rules.get(own[0]) if own else None
        if rule is None:
            continue
        for other in imported_modules(name, path, modules):
            target = other.split(".")[1:]
            if target and target[0] != own[0] and not allowed(target, rule):
                found.add((name, other))
    return found


def test_every_sub_package_declares_what_it_may_import():
    assert rule_problems(PACKAGE) == []


def test_each_docstring_names_its_rule_as_the_constant_does():
    """The prose a reader (and the review's import checker) reads says what MAY_IMPORT says, and no "never"
    names what the rule allows."""
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        stated = re.search(r"Of normae it may import exactly (.*?)\s+\(its\s+``MAY_IMPORT``", doc, re.S)
        assert stated, f"{init}: no 'Of normae it may import exactly ...' sentence"
        assert tuple(re.findall(r"``([\w.]+)``", stated.group(1))) == declared_rule(init), init
        never = {
            name.split(".")[0]
            for clause in re.findall(r"never\s+((?:``[\w.]+``(?:,\s*|\s+or\s+|\s+and\s+)?)+)", doc)
            for name in re.findall(r"``([\w.]+)``", clause)
        }
        assert not never & {entry.split(".")[0] for entry in declared_rule(init)}, (init, never)


def test_imports_keep_to_their_sub_packages_rules():
    found = forbidden_imports(PACKAGE)
    broken = sorted(found - MOVING_OUT)
    assert not broken, "imports their sub-package's MAY_IMPORT does not allow:\n" + "\n".join(
        f"{module} imports {other}" for module, other in broken
    )
    assert sorted(MOVING_OUT - found) == [], "no longer imported: delete these from MOVING_OUT"


def copy_of_the_package(tmp_path: Path) -> Path:
    copy = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize(
    "line",
    [
        "import normae.core.cnp",
        "def later():\n    from normae.core import cnp",  # deferred, inside a function
        "from ..core.cnp import true_neighbor_fraction",  # relative
    ],
)
def test_a_forbidden_import_is_found(tmp_path, line):
    copy = copy_of_the_package(tmp_path)
    loop = copy / "training" / "loop.py"
    loop.write_text(loop.read_text() + "\n" + line + "\n")
    added = forbidden_imports(copy) - forbidden_imports(PACKAGE)
    assert ("normae.training.loop", "normae.core.cnp") in added
    assert {module for module, _ in added} == {"normae.training.loop"}


def test_a_new_sub_package_needs_a_rule_and_is_held_to_it(tmp_path):
    copy = copy_of_the_package(tmp_path)
    front = copy / "front"  # as normae/cli/ will be: any sub-package is held to its own rule
    front.mkdir()
    doc = '"""Front: one parser, a module per command family; it may import only what MAY_IMPORT names."""\n'
    (front / "__init__.py").write_text(doc)
    (front / "train.py").write_text("from normae.stages import run_here\nfrom normae.front import parser\n")
    (front / "parser.py").write_text("def later():\n    from normae.spec import load_spec\n")
    assert rule_problems(copy) == [
        "normae.front: its docstring needs a paragraph: what it holds, what it may import (MAY_IMPORT)",
        "normae.front: its __init__.py needs MAY_IMPORT = (names of normae modules it may import)",
    ]
    assert forbidden_imports(copy) == forbidden_imports(PACKAGE)  # not checked until it has a rule
    (front / "__init__.py").write_text(
        doc.replace("one parser", "one parser for every command, " * 3) + 'MAY_IMPORT = ("spec", "stage")\n'
    )
    assert rule_problems(copy) == ["normae.front: MAY_IMPORT names 'stage', which is not a module of normae outside it"]
    assert forbidden_imports(copy) - forbidden_imports(PACKAGE) == {("normae.front.train", "normae.stages")}


def loaded_after_import(module: str) -> list[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("module", TORCH_FREE + TORCH_FREE_WITH_NUMPY)
def test_torch_free_modules_load_without_torch(module):
    loaded = {name.split(".")[0] for name in loaded_after_import(module)}
    forbidden = HEAVY[:3] if module in TORCH_FREE_WITH_NUMPY else HEAVY
    assert sorted(loaded & set(forbidden)) == []


def test_the_lists_name_real_modules():
    assert set(TORCH_FREE + TORCH_FREE_WITH_NUMPY) <= set(MODULES)
