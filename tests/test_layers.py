"""The layering rules of docs/DESIGN: nothing outside ``ssmseg/tasks/`` asks which task it is (the model
registry may name its entries' tasks in at most 3 lines), ``tasks/`` imports nothing from ``experiments/``,
the report reads files only, no module but ``outputs.py`` removes folders, ``experiments/`` and ``cli/`` reach a
task through the registry only, and no module is over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from ssmseg.tasks import TASK_NAMES
from tests.conftest import REPO

PACKAGE = REPO / "ssmseg"
REGISTRY = PACKAGE / "models" / "registry.py"
REGISTRY_LINES = 3  # the registry's own comparisons (a model's task against the run's)


def _modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def _names_a_task(node: ast.AST) -> bool:
    """A task's name as a literal, or a tuple/list/set holding one."""
    if isinstance(node, ast.Constant):
        return node.value in TASK_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_task(e) for e in node.elts)
    return False


def _reads_a_task(node: ast.AST) -> bool:
    """An expression that holds a task's name: ``x.task``, ``cfg.task.name``, ``m["task"]``, ``m.get("task")``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "task" or (node.attr == "name" and _reads_a_task(node.value))
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "task"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "task"
    return False


def task_questions(source: str) -> list[int]:
    """Lines that ask which task it is: a comparison with a task's name (``== "segmentation"``,
    ``in ("reconstruction", ...)``), a comparison of a task-valued expression with a string literal, a dispatch
    table keyed by task names, or a ``case "segmentation":``."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            literal = any(isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands)
            asks = any(_names_a_task(o) for o in operands) or (literal and any(_reads_a_task(o) for o in operands))
        elif isinstance(node, ast.Dict):
            asks = any(k is not None and _names_a_task(k) for k in node.keys)
        else:
            asks = isinstance(node, ast.MatchValue) and _names_a_task(node.value)
        if asks:
            lines.add(node.lineno)
    return sorted(lines)


def _questions_outside_tasks() -> dict[Path, list[int]]:
    found = {}
    for path in _modules():
        if PACKAGE / "tasks" in path.parents:
            continue
        lines = task_questions(path.read_text(encoding="utf-8"))
        if lines:
            found[path] = lines
    return found


def test_nothing_outside_tasks_asks_which_task_it_is():
    found = _questions_outside_tasks()
    registry = found.pop(REGISTRY, [])
    where = [f"{p.relative_to(REPO)}:{n}" for p, lines in found.items() for n in lines]
    assert not where, (
        f"{len(where)} comparisons of a task's name outside ssmseg/tasks/: ask the task (tasks.task_life), its "
        f"registry entry, or what the file holds instead: {', '.join(where)}"
    )
    assert len(registry) <= REGISTRY_LINES, f"models/registry.py compares task names on lines {registry}"


def test_the_scan_finds_each_way_of_asking():
    name = TASK_NAMES[-1]
    planted = {
        f'if cfg.task.name == "{name}":\n    pass\n': [1],
        f'x = kind in ("a", "{name}")\n': [1],
        'ok = manifest.get("task") != "other"\n': [1],
        f'run = {{\n    "{name}": 1,\n}}[name]\n': [1],
        f'match name:\n    case "{name}":\n        pass\n': [2],
        'same = entry.task == task\nprint("segmentation")\nkind = "rgb" == mode\n': [],
    }
    for source, lines in planted.items():
        assert task_questions(source) == lines, source


def test_a_planted_question_is_caught(tmp_path, monkeypatch):
    victim = PACKAGE / "report" / "plots.py"
    text = victim.read_text(encoding="utf-8") + f'\n\ndef _planted(ev):\n    return ev["task"] == "{TASK_NAMES[0]}"\n'
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda p, *a, **k: text if p == victim else real(p, *a, **k))
    found = _questions_outside_tasks()
    assert found.get(victim) == [len(text.splitlines())]


def test_every_task_answers_everything_a_command_asks():
    from ssmseg.tasks import task_life
    from ssmseg.tasks.life import TaskLife

    asked = [n for n in vars(TaskLife) if not n.startswith("_")] + list(TaskLife.__annotations__)
    for name in TASK_NAMES:
        life = task_life(name)
        assert life.name == name
        assert not [n for n in asked if not hasattr(life, n)], name


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_tasks_import_nothing_from_experiments():
    bad = [
        f"{p.relative_to(REPO)}: {m}"
        for p in _modules(PACKAGE / "tasks")
        for m in sorted(_imports(p))
        if m == "ssmseg.experiments" or m.startswith("ssmseg.experiments.")
    ]
    assert not bad, f"tasks/ imports experiments/ (a lower layer calling a higher one): {bad}"


def test_the_report_reads_files_only():
    higher = ("ssmseg.experiments", "ssmseg.engine", "ssmseg.tasks", "torch")
    bad = [
        f"{p.relative_to(REPO)}: {m}"
        for p in _modules(PACKAGE / "report")
        for m in sorted(_imports(p))
        if any(m == h or m.startswith(h + ".") for h in higher)
    ]
    assert not bad, f"report/ imports code beyond files: {bad}"


def test_only_outputs_removes_folders():
    bad = []
    for path in _modules():
        if path == PACKAGE / "outputs.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            if name == "rmtree":
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, f"rmtree outside ssmseg/outputs.py (every command that writes goes through it): {bad}"


SHARED_TASK_MODULES = ("ssmseg.tasks", "ssmseg.tasks.life", "ssmseg.tasks.results")  # the registry and its contracts


def _task_modules_imported(path: Path) -> list[str]:
    """The ``ssmseg.tasks.<name>...`` modules a file imports beyond the registry and its contracts (also
    ``from ssmseg.tasks import segmentation``)."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "ssmseg.tasks":
                names += [f"ssmseg.tasks.{a.name}" for a in node.names if a.name in TASK_NAMES]
        else:
            continue
        bad += [n for n in names if n.startswith("ssmseg.tasks.") and n not in SHARED_TASK_MODULES]
    return bad


def test_commands_reach_a_task_through_the_registry_only():
    """``experiments/`` and ``cli/`` ask a task through ``tasks.task_life``/``life_of`` (``TaskLife``), never by
    importing its package: a new task then needs no change there."""
    bad = [
        f"{p.relative_to(REPO)}: {m}"
        for under in ("experiments", "cli")
        for p in _modules(PACKAGE / under)
        for m in _task_modules_imported(p)
    ]
    assert not bad, f"a command imports a task's own modules; go through ssmseg.tasks.task_life: {bad}"


def test_the_import_scan_finds_a_task_module(tmp_path):
    name = TASK_NAMES[0]
    planted = {
        f"from ssmseg.tasks.{name}.baseline import run_baseline\n": 1,
        f"import ssmseg.tasks.{name}.evaluate\n": 1,
        f"from ssmseg.tasks import {name}\n": 1,
        "from ssmseg.tasks import task_life\nfrom ssmseg.tasks.life import TaskLife\n": 0,
    }
    for i, (source, count) in enumerate(planted.items()):
        path = tmp_path / f"m{i}.py"
        path.write_text(source, encoding="utf-8")
        assert len(_task_modules_imported(path)) == count, source


MAX_LINES = 600


def test_no_module_is_over_600_lines():
    sizes = {f"{p.relative_to(REPO)}": len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"
