"""The import graph. Apps: module-level imports go one way only (accounts, then checkpoints and endpoints, then
inferences; esd, the wire and project layer, imports no app), and no module imports itself back in a cycle.
The engine: its packages are floors (request, models, sampling, features, then the generation flow on top), every
import in it goes down (function-level ones too), no module or package of it is in a cycle, and `request/`, which
the web process imports, loads no torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("accounts", "checkpoints", "endpoints", "inferences", "esd")
ALLOWED = {
    "accounts": {"esd"},
    "checkpoints": {"accounts", "esd"},
    "endpoints": {"accounts", "esd"},
    "inferences": {"accounts", "checkpoints", "endpoints", "esd"},
    "esd": set(),
}
# The URL configuration is the composition root: it mounts every app's routes.
COMPOSITION_ROOTS = {"esd.urls"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path for app in APPS for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts
    }


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under `if TYPE_CHECKING:`, which never run."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }


def module_level_imports(name: str, path: Path, known: set[str], *, anywhere: bool = False) -> set[str]:
    """The project modules `name` imports when it is imported or, with `anywhere`, also inside its functions
    (imports under `if TYPE_CHECKING:` never run and are left out)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree) if anywhere else set()
    for node in ast.walk(tree) if anywhere else tree.body:
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def graph(*, anywhere: bool = False) -> dict[str, set[str]]:
    modules = project_modules()
    return {name: module_level_imports(name, path, set(modules), anywhere=anywhere) for name, path in modules.items()}


def find_cycles(edges: dict[str, set[str]]) -> list[str]:
    cycles = []
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    return cycles


def test_apps_import_only_in_the_designs_direction():
    wrong = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source not in COMPOSITION_ROOTS
        for target in targets
        if (app := source.split(".")[0]) != (other := target.split(".")[0]) and other not in ALLOWED[app]
    )
    assert wrong == []


def test_no_module_level_import_cycle():
    assert find_cycles(graph()) == []


def test_no_import_cycle_even_through_imports_inside_functions():
    """Services queue work by actor name (esd.queues) rather than importing the actors that import them."""
    assert find_cycles(graph(anywhere=True)) == []


ENGINE = "inferences.engine"
# The engine's floors, lowest first. A module may import its own floor and those below it; devtools (test and bench
# tooling) may import every floor, and no floor imports devtools.
FLOORS = (
    {"errors", "configs_path", "configs"},
    {"request"},
    {"models"},
    {"sampling"},
    {"features"},
    {"generate", "batched", "infotext", "runner", ""},
    {"devtools"},
)


def engine_part(module: str) -> str:
    """`inferences.engine.request.payload` -> `request`; a module at the engine's root is its own part."""
    return module.removeprefix(ENGINE).lstrip(".").split(".")[0]


def floor(module: str) -> int:
    return next(level for level, parts in enumerate(FLOORS) if engine_part(module) in parts)


def in_engine(module: str) -> bool:
    return module == ENGINE or module.startswith(f"{ENGINE}.")


def engine_graph() -> dict[str, set[str]]:
    return {
        source: {target for target in targets if in_engine(target)}
        for source, targets in graph(anywhere=True).items()
        if in_engine(source)
    }


def test_every_engine_module_is_on_a_floor():
    assert [module for module in engine_graph() if engine_part(module) not in set().union(*FLOORS)] == []


def test_engine_imports_go_down_its_floors_even_inside_functions():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in engine_graph().items()
        for target in targets
        if floor(target) > floor(source)
    )
    assert upward == []


def test_no_import_cycle_inside_the_engine_at_any_level():
    modules = engine_graph()
    assert find_cycles(modules) == []
    packages: dict[str, set[str]] = {}
    for source, targets in modules.items():
        packages.setdefault(engine_part(source), set()).update(
            engine_part(target) for target in targets if engine_part(target) != engine_part(source)
        )
    assert find_cycles(packages) == []


def test_the_request_package_loads_no_torch():
    """The web process parses and plans jobs with `request/`: importing all of it must not load the ML stack."""
    request = ROOT / "inferences" / "engine" / "request"
    names = sorted(f"{ENGINE}.request.{path.stem}" for path in request.glob("*.py") if path.stem != "__init__")
    assert len(names) >= 10
    heavy = ("torch", "diffusers", "transformers", "k_diffusion", "spandrel", "rembg", "cv2")
    code = f"import sys; {'; '.join(f'import {name}' for name in names)}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
