"""The layout: every module's path ends in its import name, and the build says so.

``userstream`` is one namespace package spread over several source roots —
``libs/`` for shared code, ``services/<name>/src/`` for each service — so
``userstream.edge.runtime`` is ``services/edge/src/userstream/edge/runtime.py``.
These tests read only the tree and pyproject.toml (nothing installed): a new
service that is not listed, a stray ``userstream/__init__.py`` that would hide
the other roots, a file the wheel leaves out, or an import that names no file
fails here before a user notices.
"""

from __future__ import annotations

import ast
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
WHEEL_CONFIG = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
# Files the package carries besides modules (policy, assets, typing markers, stubs).
DATA_SUFFIXES = {".toml", ".js", ".html", ".css", ".pyi", ".typed", ".sql"}


def service_roots() -> list[str]:
    """``services/<name>/src`` for every folder under services/ that holds Python code."""
    return sorted(
        f"services/{path.name}/src"
        for path in (ROOT / "services").iterdir()
        if path.is_dir() and any(path.rglob("*.py"))
    )


def source_roots() -> list[str]:
    return ["libs", *service_roots()]


def tree_files() -> Iterator[tuple[Path, str]]:
    """(file, its path inside the installed package) for every file the package must carry."""
    for root in source_roots():
        base = ROOT / root
        for path in sorted((base / "userstream").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and (path.suffix in {".py", *DATA_SUFFIXES}):
                yield path, path.relative_to(base).as_posix()


def test_every_service_follows_the_layout() -> None:
    for root in service_roots():
        name = root.split("/")[1]
        assert (ROOT / root / "userstream" / name / "__init__.py").is_file(), (
            f"services/{name}/ holds code, so it belongs in {root}/userstream/{name}/"
        )
        strays = [p for p in (ROOT / "services" / name).rglob("*.py") if not p.is_relative_to(ROOT / root)]
        assert not strays, f"code outside {root}: {strays}"


def test_every_source_root_is_configured_everywhere() -> None:
    roots = source_roots()
    assert WHEEL_CONFIG["sources"] == roots
    assert WHEEL_CONFIG["dev-mode-dirs"] == roots
    assert WHEEL_CONFIG["only-include"] == [f"{root}/userstream" for root in roots]
    assert PYPROJECT["tool"]["mypy"]["mypy_path"] == roots
    assert PYPROJECT["tool"]["mypy"]["files"] == roots
    assert PYPROJECT["tool"]["pytest"]["ini_options"]["pythonpath"] == roots
    assert PYPROJECT["tool"]["pyright"]["extraPaths"] == roots


def test_userstream_is_a_namespace_package_in_every_root() -> None:
    inits = [root for root in source_roots() if (ROOT / root / "userstream" / "__init__.py").exists()]
    assert not inits, f"userstream/__init__.py would hide the other source roots: {inits}"


def test_every_folder_below_the_namespace_is_a_regular_package() -> None:
    missing = [
        str(folder.relative_to(ROOT))
        for root in source_roots()
        for folder in (ROOT / root / "userstream").rglob("*")
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
        if not (folder / "__init__.py").is_file()
    ]
    assert not missing, f"add __init__.py to: {missing}"


def test_no_service_shadows_a_shared_module() -> None:
    shared = {path.stem for path in (ROOT / "libs" / "userstream").iterdir() if path.name != "__pycache__"}
    services = {root.split("/")[1] for root in service_roots()}
    assert not shared & services


def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    (wheel,) = WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if not name.startswith("userstream-")}
    expected = {inside for _, inside in tree_files()}
    assert expected - packaged == set(), "missing from the wheel"
    assert packaged - expected == set(), "in the wheel but not in the tree"
    for needed in (
        "userstream/py.typed",
        "userstream/default_policy.toml",
        "userstream/proto/activity/v1/activity_pb2.py",
        "userstream/edge/static/client.js",
    ):
        assert needed in packaged


def module_file(module: str) -> Path | None:
    """The file or package folder that a ``userstream.*`` module name names, found by path alone."""
    parts = module.split(".")
    for root in source_roots():
        base = ROOT / root / Path(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        if len(parts) == 1 and base.is_dir():
            return base  # the namespace itself
    return None


def imported_modules(path: Path, module: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names imported from it) for every import of ``path`` (relative ones made absolute)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base, [alias.name for alias in node.names]


def python_files() -> Iterator[tuple[Path, str]]:
    """Every module of the tree with its import name, plus tests and benchmarks (they import it too)."""
    for path, inside in tree_files():
        if path.suffix == ".py":
            yield path, inside.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    for folder in ("tests", "benchmarks", "scripts", "deploy"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_every_userstream_import_resolves_by_path() -> None:
    unresolved = []
    checked = 0
    for path, module in python_files():
        for line, target, names in imported_modules(path, module):
            if target != "userstream" and not target.startswith("userstream."):
                continue
            checked += 1
            if module_file(target) is None:
                unresolved.append(f"{path.relative_to(ROOT)}:{line}: {target}")
                continue
            # `from userstream.x import y`: y is a submodule, or a name the module defines.
            unresolved.extend(
                f"{path.relative_to(ROOT)}:{line}: {target}.{name}"
                for name in names
                if module_file(f"{target}.{name}") is None and not _defines(module_file(target), name)
            )
    assert checked > 300, "the scan found too few imports to be looking at the tree"
    assert not unresolved, "imports that name no file or name:\n" + "\n".join(unresolved)


def _defines(found: Path | None, name: str) -> bool:
    if found is None or found.is_dir():
        return False
    return name == "*" or name in _top_level_names(found)


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level (including inside top-level if/try blocks)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        for child in [node, *ast.walk(node)] if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(child.name)
            elif isinstance(child, ast.Assign):
                names.update(target.id for target in child.targets if isinstance(target, ast.Name))
            elif isinstance(child, ast.AnnAssign) and isinstance(child.target, ast.Name):
                names.add(child.target.id)
            elif isinstance(child, ast.Import | ast.ImportFrom):
                names.update((alias.asname or alias.name).split(".")[0] for alias in child.names)
    return names


@pytest.mark.parametrize("module", ["userstream.edge.runtime", "userstream.cursor", "userstream.acl.servicer"])
def test_a_module_is_found_where_its_name_says(module: str) -> None:
    found = module_file(module)
    assert found is not None
    relative = found.relative_to(ROOT).as_posix()
    assert relative.endswith(module.replace(".", "/") + ".py")
