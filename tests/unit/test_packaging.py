"""Packaging: setup.py maps every package folder of libs/ and services/ into ``userstream``.

find_packages silently skips a folder without ``__init__.py``; its modules would
then be missing from a non-editable install (``pip install .``) while every
editable checkout still imports them. These tests catch that before a user does.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup_arguments() -> dict[str, Any]:
    captured: dict[str, Any] = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    return captured


def python_folders() -> dict[str, Path]:
    """Every folder holding Python code, by the package name it must have."""
    folders: dict[str, Path] = {}
    roots = [("userstream", ROOT / "libs" / "userstream")]
    roots += [
        (f"userstream.{path.name}", path)
        for path in sorted((ROOT / "services").iterdir())
        if path.is_dir() and any(path.rglob("*.py"))
    ]
    for name, root in roots:
        for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(folder.glob("*.py*")):
                continue
            relative = folder.relative_to(root).parts
            folders[".".join((name, *relative))] = folder
    return folders


def test_every_folder_with_python_code_is_a_package() -> None:
    missing = [
        str(path.relative_to(ROOT)) for path in python_folders().values() if not (path / "__init__.py").is_file()
    ]
    assert not missing, f"add __init__.py to: {missing}"


def test_setup_py_finds_every_package(setup_arguments: dict[str, Any]) -> None:
    assert sorted(setup_arguments["packages"]) == sorted(python_folders())


def test_package_dirs_map_services_into_the_one_namespace(setup_arguments: dict[str, Any]) -> None:
    package_dir = setup_arguments["package_dir"]
    assert package_dir["userstream"] == "libs/userstream"
    services = [path.name for path in (ROOT / "services").iterdir() if (path / "__init__.py").is_file()]
    assert "activity" in services
    for service in services:
        assert package_dir[f"userstream.{service}"] == f"services/{service}"


def test_no_service_shadows_a_shared_module() -> None:
    shared = {path.stem for path in (ROOT / "libs" / "userstream").iterdir() if path.name != "__pycache__"}
    services = {path.name for path in (ROOT / "services").iterdir() if path.is_dir()}
    assert not shared & services


def test_generated_code_and_data_files_are_in_the_packages() -> None:
    proto = ROOT / "libs" / "userstream" / "proto"
    assert (proto / "activity" / "v1" / "activity_pb2.py").is_file()
    assert (proto / "acl" / "v1" / "acl_pb2_grpc.py").is_file()
    assert (ROOT / "libs" / "userstream" / "default_policy.toml").is_file()
    assert (ROOT / "libs" / "userstream" / "py.typed").is_file()
