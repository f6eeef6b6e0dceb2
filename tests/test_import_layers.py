"""lora_core in layers: a module imports only from its own layer or a lower one, never inside a function, and no
imports go round in a circle. Built from the source with `ast`, so an import hidden in a function counts too;
one under `if TYPE_CHECKING:` (for annotations only, never run) does not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lora_core"

# Lowest first. What each layer holds: README's module table.
LAYERS: tuple[tuple[str, set[str]], ...] = (
    ("choices and records, no torch", {"settings", "settings.choices", "settings.knobs", "settings.results"}),
    ("the rules a config is checked by, no torch", {"settings.task_specs", "settings.variants", "settings.speeds",
                                                    "settings.dynamics_cost",
                                                    "settings.path_rule", "settings.budget"}),
    ("settings, no torch", {"settings.config", "cli.args"}),
    ("tasks: data and models", {"tasks", "tasks.data", "tasks.linear", "tasks.linear_model", "tasks.mlp",
                                "tasks.digits", "tasks.text_data", "tasks.text_model", "tasks.text_samples",
                                "tasks.registry"}),
    ("adapters", {"adapters", "adapters.inits", "adapters.lora_layer", "adapters.dora", "adapters.registry",
                  "adapters.attach", "adapters.peft_format"}),
    ("training", {"training", "training.devices", "training.optimizers", "training.loop", "training.fast",
                  "training.trainers", "training.batched", "training.fast_stacked", "training.fast_batched"}),
    ("measuring", {"measure", "measure.svd_memo", "measure.analysis", "measure.top_values", "measure.dynamics"}),
    ("runs", {"cache", "experiment", "sweep", "sweep_table", "inspector", "lesson_parts", "lesson_placement",
              "lessons"}),
    ("serving a room", {"serving", "serving.calibration", "serving.scheduler", "serving.work", "serving.prewarm",
                        "serving.room", "serving.challenge"}),
    ("entry points", {"", "cli", "cli.main", "cli.run_command", "cli.sweep_command", "cli.inspect_command",
                      "__main__"}),
)
# Layers that must load without torch (the command line refuses a bad flag before torch loads, and building a
# config, which validates it, needs no torch).
TORCH_FREE = 3


def _name(path: Path) -> str:
    """'lora_core/cli/args.py' -> 'cli.args'; the package's own __init__ -> ''."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.joinpath(*name.split(".")) if name else PACKAGE
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """The lora_core modules `path` imports, at the top or inside a function ('' is the package itself)."""
    module = _name(path)
    package = [p for p in (module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]) if p]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            found |= {t if _is_module(t) else ".".join(base) for t in (".".join([*base, a.name]) for a in node.names)}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lora_core"):
            found.add(node.module.removeprefix("lora_core").removeprefix("."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("lora_core").removeprefix(".") for a in node.names
                      if a.name.startswith("lora_core")}
    return found - {module}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` but those under `if TYPE_CHECKING:`."""
    hidden = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and ast.unparse(block.test) ==
              "TYPE_CHECKING" for stmt in block.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if id(n) not in hidden]


def graph() -> dict[str, set[str]]:
    return {_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer():
    placed = [m for _, members in LAYERS for m in members]
    assert len(placed) == len(set(placed)), "a module in two layers"
    assert set(placed) == set(graph()), f"not placed: {set(graph()) - set(placed)}; gone: {set(placed) - set(graph())}"


def test_imports_go_down_or_stay_in_their_layer():
    layer = {m: i for i, (_, members) in enumerate(LAYERS) for m in members}
    upward = [(m, t) for m, targets in graph().items() for t in targets if layer[t] > layer[m]]
    assert upward == [], "imports from a higher layer: " + ", ".join(f"{m} -> {t}" for m, t in upward)


def test_no_import_inside_a_function():
    all_lazy = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for f in ast.walk(tree):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(f):
                    if isinstance(n, ast.ImportFrom):  # a relative import's module, e.g. `from .budget` -> budget
                        all_lazy.add((_name(path), (n.module or "").removeprefix("lora_core.")))
                    elif isinstance(n, ast.Import):
                        all_lazy |= {(_name(path), a.name) for a in n.names}
    assert all_lazy == set()


def test_no_circle():
    edges = graph()
    state: dict[str, str] = {}

    def visit(m: str, trail: tuple[str, ...]) -> None:
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "a circle: " + " -> ".join((*trail, m))
        state[m] = "open"
        for t in sorted(edges[m]):
            visit(t, (*trail, m))
        state[m] = "done"

    for m in sorted(edges):
        visit(m, ())


def test_the_lower_layers_load_without_torch():
    modules = sorted(f"lora_core.{m}" for _, members in LAYERS[:TORCH_FREE] for m in members)
    code = (f"import sys; import {', '.join(modules)}; from lora_core.settings.config import preset\n"
            "configs = [preset(name) for name in ('default', 'digits', 'article')]  # each validated\n"
            "print('torch' in sys.modules, 'gzip' in sys.modules)")  # the digits' file is not read either
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.split() == ["False", "False"]
