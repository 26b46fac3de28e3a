"""Mutation testing of app/realtime and app/security with the fast tests: `scripts/mutate`.

Each mutant is one small change to one module's AST, of the kinds a careless edit makes:

- a comparison flipped (`<` to `>=`, `==` to `!=`, `is` to `is not`, `in` to `not in`) or
  moved by one (`<` to `<=`, `>=` to `>`);
- a condition negated (`if x` to `if not x`, the same for `while`, `elif` and `x if c else y`);
  `and` swapped with `or`;
- a number constant moved by one (`n` to `n + 1` and `n - 1`; `True` and `False` swapped);
- a statement deleted (replaced by `pass`);
- a `return value` turned into `return None`.

Only code inside functions is mutated: module constants are configuration, and a test
that pins `KNOWN_ADDRESS_SECONDS` would pin a number, not a behaviour. A line ending in
`# pragma: no mutate` is left alone (none is needed so far).

How a mutant runs: a parent process imports pytest and the third-party libraries once,
then forks one child per mutant. The child puts an import hook in front of `sys.path` that
compiles the mutated tree for the one module under test, and runs that module's fast test
files with `-x -q` (no test that starts a server or a browser). A failing run kills the
mutant; a run past its timeout (a multiple of the clean run's time) counts as killed too,
reported apart. Nothing in the work tree is written, so runs cannot leave a mutant behind.

Mutants known to be equivalent (no test can tell them from the original) are listed with
a reason in tools/equivalent_mutants.toml, keyed by `path::function::change#n`; they are
set aside from the score. A listed key that no longer matches a mutant is reported, so
the list cannot rot silently.

    scripts/mutate                      every module
    scripts/mutate client manager       some modules (a name, or a path under app/)
    scripts/mutate --list client        the mutants, without running them
    scripts/mutate --show KEY           the change a key stands for
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import signal
import sys
import time
import tomllib
import types
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tools" / "equivalent_mutants.toml"
RESULTS_DIR = ROOT / ".mutation"

# Each module's fast tests: the files that exercise it without a server or a browser.
# A module's own tests/test_<name>_edges.py is added when it exists.
FAST_TESTS: dict[str, list[str]] = {
    "app/realtime/channels.py": ["tests/test_manager.py"],
    "app/realtime/client.py": [
        "tests/test_manager.py",
        "tests/test_replay.py",
        "tests/test_logs.py",
    ],
    "app/realtime/encoding.py": ["tests/test_encoding.py"],
    "app/realtime/events.py": ["tests/test_encoding.py", "tests/test_manager.py"],
    "app/realtime/ids.py": ["tests/test_ids.py", "tests/test_replay.py"],
    "app/realtime/latency.py": ["tests/test_delivery_latency.py"],
    "app/realtime/manager.py": [
        "tests/test_manager.py",
        "tests/test_replay.py",
        "tests/test_logs.py",
    ],
    "app/realtime/replay.py": ["tests/test_replay.py"],
    "app/realtime/service.py": [],
    "app/realtime/stepping.py": ["tests/test_stepping.py", "tests/test_writer.py"],
    "app/realtime/stream_slots.py": [],
    "app/realtime/tasks.py": [],
    "app/realtime/visibility.py": ["tests/test_manager.py", "tests/test_replay.py"],
    "app/realtime/writer.py": ["tests/test_writer.py", "tests/test_delivery_latency.py"],
    "app/realtime/broker/__init__.py": [],
    "app/realtime/broker/base.py": [],
    "app/realtime/broker/memory.py": ["tests/test_manager.py", "tests/test_replay.py"],
    "app/realtime/broker/redis.py": ["tests/test_redis_broker.py", "tests/test_logs.py"],
    "app/security/login_throttle.py": [],
    "app/security/origins.py": [],
    "app/security/passwords.py": [],
    "app/security/proxies.py": [],
    "app/security/rate_limit.py": [],
    "app/security/tokens.py": [],
}

# Extra edge-test files per module, beyond tests/test_<stem>_edges.py.
EXTRA_EDGES: dict[str, list[str]] = {
    "app/realtime/manager.py": ["tests/test_stream_slots_edges.py"],
    "app/realtime/channels.py": ["tests/test_manager_edges.py"],
    "app/realtime/events.py": ["tests/test_manager_edges.py"],
    "app/realtime/visibility.py": ["tests/test_manager_edges.py"],
    "app/realtime/ids.py": ["tests/test_manager_edges.py"],
    "app/realtime/tasks.py": ["tests/test_manager_edges.py"],
    "app/realtime/broker/memory.py": ["tests/test_manager_edges.py"],
    "app/realtime/broker/base.py": [
        "tests/test_broker_edges.py",
        "tests/test_service_edges.py",
        "tests/test_manager_edges.py",
    ],
    "app/realtime/broker/__init__.py": ["tests/test_broker_edges.py"],
    "app/realtime/stepping.py": ["tests/test_writer_edges.py"],
    "app/realtime/broker/redis.py": ["tests/test_redis_broker_edges.py"],
}

# Imported once in the parent so each forked child starts warm. Nothing of app/ or tests/:
# those must be imported afresh in the child, after the mutant's hook is in place.
WARM_IMPORTS = (
    "pytest",
    "_pytest.python",
    "hypothesis",
    "httpx",
    "fastapi",
    "starlette.applications",
    "sqlmodel",
    "sqlalchemy",
    "pydantic",
    "redis",
    "redis.asyncio",
    "passlib.context",
    "uvicorn",
)

_FLIP = {
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_OP_TEXT = {
    ast.Lt: "<",
    ast.GtE: ">=",
    ast.Gt: ">",
    ast.LtE: "<=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_DELETABLE = (
    ast.Expr,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Raise,
    ast.Delete,
    ast.Continue,
    ast.Break,
    ast.Return,
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.With,
    ast.AsyncWith,
    ast.Try,
)


@dataclass(frozen=True)
class Mutant:
    path: str  # relative to ROOT
    key: str  # path::function::change#n, stable across edits elsewhere in the file
    line: int
    node_index: int  # position of the mutated node in ast.walk order
    kind: str
    arg: int  # which variant at that node (operator position, or +1/-1)
    before: str
    after: str


def _walk(tree: ast.AST) -> list[ast.AST]:
    return list(ast.walk(tree))


def _function_scopes(tree: ast.AST) -> dict[int, str]:
    """id(node) -> qualified name of the innermost enclosing function, '' at module or class
    level (and for a function's decorators, defaults and annotations)."""
    names: dict[int, str] = {}

    def visit(node: ast.AST, scope: str, path: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = f"{path}.{child.name}" if path else child.name
                for part in ast.iter_child_nodes(child):
                    if part in child.body:
                        names[id(part)] = inner
                        visit(part, inner, inner)
                    else:
                        _mark(part, scope, names)
                names[id(child)] = scope
            elif isinstance(child, ast.ClassDef):
                inner = f"{path}.{child.name}" if path else child.name
                names[id(child)] = scope
                for part in ast.iter_child_nodes(child):
                    if part in child.body:
                        names[id(part)] = scope
                        if isinstance(part, ast.FunctionDef | ast.AsyncFunctionDef):
                            visit(_Holder(part), scope, inner)
                        else:
                            visit(part, scope, inner)
                    else:
                        _mark(part, scope, names)
            else:
                names[id(child)] = scope
                visit(child, scope, path)

    visit(tree, "", "")
    return names


class _Holder(ast.AST):
    """Lets visit() see one statement as a child."""

    _fields = ("body",)

    def __init__(self, statement: ast.stmt) -> None:
        super().__init__()
        self.body = [statement]


def _mark(node: ast.AST, name: str, names: dict[int, str]) -> None:
    for sub in ast.walk(node):
        names[id(sub)] = name


def _no_mutate_lines(source: str) -> set[int]:
    return {
        number
        for number, line in enumerate(source.splitlines(), start=1)
        if line.rstrip().endswith("# pragma: no mutate")
    }


def _is_docstring(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
        return False
    return isinstance(node.value.value, str)


def _variants(node: ast.AST, parents: dict[int, ast.AST]) -> Iterator[tuple[str, int, str]]:
    """(kind, arg, human text of the change) for every mutation of this node."""
    if isinstance(node, ast.Compare):
        for position, op in enumerate(node.ops):
            flipped = _FLIP.get(type(op))
            if flipped is not None:
                yield "flip", position, f"{_OP_TEXT[type(op)]} -> {_OP_TEXT[flipped]}"
            moved = _BOUNDARY.get(type(op))
            if moved is not None:
                yield "boundary", position, f"{_OP_TEXT[type(op)]} -> {_OP_TEXT[moved]}"
    elif isinstance(node, ast.If | ast.While | ast.IfExp) and not _flippable(node.test):
        yield "negate", 0, "condition -> not condition"
    elif isinstance(node, ast.BoolOp):
        other = "or" if isinstance(node.op, ast.And) else "and"
        mine = "and" if other == "or" else "or"
        yield "boolop", 0, f"{mine} -> {other}"
    elif isinstance(node, ast.Constant) and isinstance(node.value, int | float):  # bool too
        if isinstance(node.value, bool):
            yield "bool", 0, f"{node.value} -> {not node.value}"
        else:
            yield "number", 1, f"{node.value!r} -> {node.value + 1!r}"
            yield "number", -1, f"{node.value!r} -> {node.value - 1!r}"
    returns_none = isinstance(node, ast.Return) and (
        node.value is None or (isinstance(node.value, ast.Constant) and node.value.value is None)
    )
    if isinstance(node, ast.Return) and not returns_none:
        yield "return_none", 0, "return value -> return None"
    if isinstance(node, _DELETABLE) and not _is_docstring(node, parents):
        parent = parents.get(id(node))
        bare_return = isinstance(node, ast.Return) and node.value is None
        if (bare_return or not isinstance(node, ast.Return)) and (
            parent is not None and not _is_placeholder(node)
        ):
            yield "delete", 0, "statement deleted"


def _flippable(test: ast.expr) -> bool:
    """A one-operator comparison: its flip already is the negated condition."""
    return isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _FLIP


def _is_placeholder(node: ast.AST) -> bool:
    """A Protocol's `...` does nothing to delete."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def mutants_of(path: str) -> list[Mutant]:
    source = (ROOT / path).read_text()
    tree = ast.parse(source)
    scopes = _function_scopes(tree)
    parents = _parents(tree)
    skipped_lines = _no_mutate_lines(source)
    found: list[Mutant] = []
    seen: Counter[str] = Counter()
    for index, node in enumerate(_walk(tree)):
        scope = scopes.get(id(node), "")
        if not scope or getattr(node, "lineno", None) in skipped_lines:
            continue
        if _in_annotation(node, parents):
            continue
        for kind, arg, text in _variants(node, parents):
            label = f"{kind}: {text}"
            seen[f"{scope}::{label}"] += 1
            key = f"{path}::{scope}::{label}#{seen[f'{scope}::{label}']}"
            line = getattr(node, "lineno", 0)
            before = ast.unparse(node).splitlines()[0] if not isinstance(node, ast.stmt) else ""
            if isinstance(node, ast.stmt):
                before = source.splitlines()[line - 1].strip()
            after = ast.unparse(_mutated_node(node, kind, arg)).splitlines()
            found.append(
                Mutant(path, key, line, index, kind, arg, before, after[0] if after else "")
            )
    return found


def _in_annotation(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    child = node
    parent = parents.get(id(child))
    while parent is not None:
        if isinstance(parent, ast.AnnAssign) and child is parent.annotation:
            return True
        if isinstance(parent, ast.arg) and child is parent.annotation:
            return True
        if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef) and child is parent.returns:
            return True
        child, parent = parent, parents.get(id(parent))
    return False


def _mutated_node(node: ast.AST, kind: str, arg: int) -> ast.AST:
    """A mutated copy of `node` alone (for display), or the replacement statement."""
    clone = copy.deepcopy(node)
    if kind in ("flip", "boundary"):
        assert isinstance(clone, ast.Compare)
        table = _FLIP if kind == "flip" else _BOUNDARY
        clone.ops[arg] = table[type(clone.ops[arg])]()
    elif kind == "negate":
        assert isinstance(clone, ast.If | ast.While | ast.IfExp)
        clone.test = ast.UnaryOp(op=ast.Not(), operand=clone.test)
    elif kind == "boolop":
        assert isinstance(clone, ast.BoolOp)
        clone.op = ast.Or() if isinstance(clone.op, ast.And) else ast.And()
    elif kind == "bool":
        assert isinstance(clone, ast.Constant)
        clone.value = not clone.value
    elif kind == "number":
        assert isinstance(clone, ast.Constant) and isinstance(clone.value, int | float)
        clone.value = clone.value + arg
    elif kind == "return_none":
        assert isinstance(clone, ast.Return)
        clone.value = ast.Constant(value=None)
    elif kind == "delete":
        clone = ast.Pass()
    ast.copy_location(clone, node)
    if isinstance(clone, ast.If | ast.While) and kind == "negate":
        clone.body, clone.orelse = clone.body[:1], []
    return clone


def mutated_tree(mutant: Mutant) -> ast.Module:
    tree = ast.parse((ROOT / mutant.path).read_text())
    nodes = _walk(tree)
    target = nodes[mutant.node_index]
    if mutant.kind == "delete":
        parents = _parents(tree)
        parent = parents[id(target)]
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(parent, field, None)
            if isinstance(statements, list) and target in statements:
                statements[statements.index(target)] = ast.copy_location(ast.Pass(), target)
                break
        else:
            raise AssertionError(f"no body holds {mutant.key}")
    else:
        replacement = _mutated_node(target, mutant.kind, mutant.arg)
        if isinstance(replacement, ast.If | ast.While):
            assert isinstance(target, ast.If | ast.While)
            target.test = replacement.test
        else:
            for field, value in ast.iter_fields(replacement):
                setattr(target, field, value)
    return ast.fix_missing_locations(tree)


# -- running ------------------------------------------------------------------------------


class _MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, module_name: str, filename: str, code: types.CodeType) -> None:
        self._name = module_name
        self._filename = filename
        self._code = code

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self._name:
            return None
        is_package = self._filename.endswith("__init__.py")
        spec = importlib.util.spec_from_loader(
            fullname, self, origin=self._filename, is_package=is_package
        )
        assert spec is not None
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = [str(Path(self._filename).parent)]
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__file__ = self._filename
        exec(self._code, module.__dict__)  # noqa: S102 - the point of the tool


def _module_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def tests_for(path: str) -> list[str]:
    stem = Path(path).stem if Path(path).stem != "__init__" else Path(path).parent.name
    # The edge tests first: they are quick and aimed, so most mutants die in them (-x).
    files = [f"tests/test_{stem}_edges.py", *EXTRA_EDGES.get(path, []), *FAST_TESTS[path]]
    unique = list(dict.fromkeys(f for f in files if (ROOT / f).exists()))
    return unique


def _code_by_qualname(code: types.CodeType, found: dict[str, types.CodeType]) -> None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.setdefault(const.co_qualname, const)
            _code_by_qualname(const, found)


def _functions_of(module: types.ModuleType) -> Iterator[types.FunctionType]:
    """Every function object the module defines: module functions, methods (of nested
    classes too), static and class methods, properties, and what decorators wrap."""
    seen: set[int] = set()

    def unwrap(value: object) -> Iterator[types.FunctionType]:
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if isinstance(value, property):
            for part in (value.fget, value.fset, value.fdel):
                yield from unwrap(part)
            return
        if isinstance(value, type):
            if value.__module__ == module.__name__ and id(value) not in seen:
                seen.add(id(value))
                for member in vars(value).values():
                    yield from unwrap(member)
            return
        while value is not None:
            if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
                yield value
            value = getattr(value, "__wrapped__", None)

    for value in list(vars(module).values()):
        yield from unwrap(value)


def _swap_in(mutant: Mutant) -> None:
    """Give the already imported module's functions the mutant's code.

    Only function bodies are mutated, so swapping `__code__` changes the behaviour for every
    holder of those functions (other modules' imports, bound methods, the tests) at once,
    without importing anything again."""
    module = sys.modules[_module_name(mutant.path)]
    filename = str(ROOT / mutant.path)
    original: dict[str, types.CodeType] = {}
    _code_by_qualname(compile((ROOT / mutant.path).read_text(), filename, "exec"), original)
    mutated: dict[str, types.CodeType] = {}
    _code_by_qualname(compile(mutated_tree(mutant), filename, "exec"), mutated)
    changed = {name for name, code in mutated.items() if original.get(name) != code}
    swapped = 0
    for function in _functions_of(module):
        name = function.__code__.co_qualname
        if name in changed:
            function.__code__ = mutated[name]
            swapped += 1
    if not swapped:
        raise RuntimeError(f"no function of {module.__name__} holds {mutant.key}")


def _run_child(mutant: Mutant | None, tests: list[str], fresh: bool) -> int:
    """In the forked child: put the mutant in, run the tests, return pytest's code."""
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_WRONLY)
    if not os.environ.get("MUTATE_VERBOSE"):
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    if mutant is not None and fresh:
        code = compile(mutated_tree(mutant), str(ROOT / mutant.path), "exec")
        finder = _MutantFinder(_module_name(mutant.path), str(ROOT / mutant.path), code)
        sys.meta_path.insert(0, finder)
    elif mutant is not None:
        try:
            _swap_in(mutant)
        except RuntimeError:
            return UNAPPLIED
    import pytest

    args = [
        *tests,
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-o",
        "addopts=--strict-markers",
        "--hypothesis-seed=0",
        # Warm imports (anyio, hypothesis, the tests) cannot be rewritten any more: fine.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    return int(pytest.main(args))


UNAPPLIED = 72  # the child's exit code when the mutant's function could not be found


def run_one(
    mutant: Mutant | None, tests: list[str], timeout: float, fresh: bool = False
) -> tuple[str, float]:
    """'killed', 'survived' or 'timeout' (for None: 'survived' means the clean run passed)."""
    started = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = _run_child(mutant, tests, fresh)
        except BaseException:  # noqa: BLE001 - a mutant that breaks the import still counts as killed
            if os.environ.get("MUTATE_VERBOSE"):
                import traceback

                traceback.print_exc()
            code = 71
        finally:
            os._exit(code)
    deadline = started + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            with _suppress_lookup():
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - started
        time.sleep(0.02)
    with _suppress_lookup():
        os.killpg(pid, signal.SIGKILL)  # whatever the tests left running (a redis-server)
    code = os.waitstatus_to_exitcode(status)
    if code == UNAPPLIED:
        return "error", time.monotonic() - started
    return ("survived" if code == 0 else "killed"), time.monotonic() - started


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError | PermissionError)


def load_equivalents() -> dict[str, str]:
    if not EQUIVALENT_FILE.exists():
        return {}
    data = tomllib.loads(EQUIVALENT_FILE.read_text())
    return {entry["key"]: entry["reason"] for entry in data.get("equivalent", [])}


def resolve(names: list[str]) -> list[str]:
    if not names:
        return list(FAST_TESTS)
    chosen = []
    for name in names:
        matches = [p for p in FAST_TESTS if p == name or Path(p).stem == name or name in p]
        if name in ("broker", "realtime", "security"):
            matches = [p for p in FAST_TESTS if f"/{name}/" in p]
        if not matches:
            raise SystemExit(f"no module {name!r}; known: {', '.join(FAST_TESTS)}")
        chosen += matches
    return list(dict.fromkeys(chosen))


def _warm_up(paths: list[str], fresh: bool) -> None:
    """Import once in the parent what every child needs. By default that is the project and
    its test modules too (children swap the mutant's code in); with `fresh`, only
    third-party libraries (children import the project anew, through the hook)."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    for name in WARM_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if fresh:
        leaked = [m for m in sys.modules if m == "app" or m.startswith(("app.", "tests."))]
        assert not leaked, f"warm-up imported project modules: {leaked}"
        return
    importlib.import_module("tests.conftest")
    for path in paths:
        importlib.import_module(_module_name(path))
        for test_file in tests_for(path):
            importlib.import_module(_module_name(test_file))


def mutate_module(path: str, equivalents: dict[str, str], fresh: bool) -> dict[str, object]:
    mutants = mutants_of(path)
    tests = tests_for(path)
    result: dict[str, object] = {"path": path, "tests": tests, "mutants": len(mutants)}
    if not tests:
        print(f"{path}: no fast test file: all {len(mutants)} mutants survive", flush=True)
        outcomes = {m.key: "survived" for m in mutants}
    else:
        verdict, seconds = run_one(None, tests, timeout=600, fresh=fresh)
        if verdict != "survived":
            raise SystemExit(f"{path}: the clean run of {' '.join(tests)} fails; fix it first")
        timeout = max(10.0, 3 * seconds + 5)
        print(f"{path}: {len(mutants)} mutants, clean run {seconds:.1f}s", flush=True)
        outcomes = {}
        for number, mutant in enumerate(mutants, start=1):
            if mutant.key in equivalents:
                outcomes[mutant.key] = "equivalent"
                continue
            outcomes[mutant.key], _ = run_one(mutant, tests, timeout, fresh)
            if outcomes[mutant.key] == "survived":
                print(
                    f"  survived L{mutant.line} {mutant.key}\n      {mutant.before}  =>  {mutant.after}",
                    flush=True,
                )
            elif number % 25 == 0:
                print(f"  ... {number}/{len(mutants)}", flush=True)
    for mutant in mutants:
        if mutant.key in equivalents:
            outcomes[mutant.key] = "equivalent"
    counts = Counter(outcomes.values())
    result.update(
        killed=counts["killed"],
        timeout=counts["timeout"],
        equivalent=counts["equivalent"],
        survived=counts["survived"],
        survivors=[
            {"key": m.key, "line": m.line, "before": m.before, "after": m.after}
            for m in mutants
            if outcomes[m.key] == "survived"
        ],
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / (path.replace("/", "__") + ".json")).write_text(json.dumps(result, indent=2))
    return result


def _results_file(path: str) -> Path:
    return RESULTS_DIR / (path.replace("/", "__") + ".json")


def rerun_survivors(path: str, equivalents: dict[str, str], fresh: bool) -> dict[str, object]:
    """The last run's figures, with its survivors run again (or set aside as equivalent)."""
    last = json.loads(_results_file(path).read_text())
    mutants = {m.key: m for m in mutants_of(path)}
    if len(mutants) != last["mutants"]:
        raise SystemExit(f"{path} changed since its last run: run it whole")
    tests = tests_for(path)
    verdict, seconds = run_one(None, tests, timeout=600, fresh=fresh)
    if verdict != "survived":
        raise SystemExit(f"{path}: the clean run of {' '.join(tests)} fails; fix it first")
    timeout = max(10.0, 3 * seconds + 5)
    counts = Counter(killed=last["killed"], timeout=last["timeout"])
    counts["equivalent"] = sum(1 for key in mutants if key in equivalents)
    survivors = []
    for entry in last["survivors"]:
        mutant = mutants.get(entry["key"])
        if mutant is None:
            raise SystemExit(f"{path} changed since its last run: run it whole")
        if mutant.key in equivalents:
            continue
        outcome, _ = run_one(mutant, tests, timeout, fresh)
        counts[outcome] += 1
        if outcome == "survived":
            print(
                f"  survived L{mutant.line} {mutant.key}\n      {mutant.before}  =>  {mutant.after}"
            )
            survivors.append(entry)
    result = {
        "path": path,
        "tests": tests,
        "mutants": len(mutants),
        "killed": counts["killed"],
        "timeout": counts["timeout"],
        "equivalent": counts["equivalent"],
        "survived": len(survivors),
        "survivors": survivors,
    }
    _results_file(path).write_text(json.dumps(result, indent=2))
    return result


def score(result: dict[str, object]) -> float:
    judged = int(result["mutants"]) - int(result["equivalent"])  # type: ignore[call-overload]
    caught = int(result["killed"]) + int(result["timeout"])  # type: ignore[call-overload]
    return 100.0 if judged == 0 else 100.0 * caught / judged


def print_table(results: list[dict[str, object]]) -> None:
    header = f"{'module':36} {'mutants':>7} {'killed':>6} {'timeout':>7} {'equiv':>5} {'surv':>4} {'score':>6}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        print(
            f"{r['path']:36} {r['mutants']:>7} {r['killed']:>6} {r['timeout']:>7} "
            f"{r['equivalent']:>5} {r['survived']:>4} {score(r):>5.1f}%"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "modules", nargs="*", help="names (client), paths, or realtime/security/broker"
    )
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--show", metavar="KEY", help="print the mutated source around KEY")
    parser.add_argument("--table", action="store_true", help="print the table of the last runs")
    parser.add_argument("--fail-under", type=float, default=95.0)
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run again only what survived the last run (after adding tests or equivalents)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="import the project anew in each child through an import hook (slower)",
    )
    options = parser.parse_args()
    equivalents = load_equivalents()
    if options.show:
        path = options.show.split("::")[0]
        mutant = next(m for m in mutants_of(path) if m.key == options.show)
        print(f"{mutant.path}:{mutant.line}  {mutant.before}  =>  {mutant.after}")
        return 0
    paths = resolve(options.modules)
    if options.list:
        for path in paths:
            for m in mutants_of(path):
                mark = "  [equivalent]" if m.key in equivalents else ""
                print(f"L{m.line:<4} {m.key}{mark}\n      {m.before}  =>  {m.after}")
        return 0
    if options.table:
        results = [
            json.loads((RESULTS_DIR / (p.replace("/", "__") + ".json")).read_text())
            for p in paths
            if (RESULTS_DIR / (p.replace("/", "__") + ".json")).exists()
        ]
        print_table(results)
        return 0
    all_keys = {m.key for p in FAST_TESTS for m in mutants_of(p)}
    stale = sorted(k for k in equivalents if k not in all_keys)
    for key in stale:
        print(f"warning: {EQUIVALENT_FILE.name} lists {key}, which is no mutant any more")
    _warm_up(paths, options.fresh)
    if options.survivors:
        results = [rerun_survivors(path, equivalents, options.fresh) for path in paths]
    else:
        results = [mutate_module(path, equivalents, options.fresh) for path in paths]
    print_table(results)
    below = [r["path"] for r in results if score(r) < options.fail_under]
    if below:
        print(f"\nunder {options.fail_under:.0f}%: {', '.join(map(str, below))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
