"""Run mypy --strict over the one ``userstream`` namespace that libs/ and services/ form.

mypy cannot follow the import hook of an editable install, so this mirrors the
installed layout with symlinks under build/typecheck/ and maps reported paths
back to the source folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def build_tree() -> dict[str, str]:
    """Create the symlink tree; returns {tree prefix: source prefix} for path mapping."""
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "userstream"
    package.mkdir(parents=True)
    mapping = {}
    for entry in (ROOT / "libs" / "userstream").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    mapping[str(package.relative_to(ROOT)) + "/"] = "libs/userstream/"
    for service in sorted((ROOT / "services").iterdir()):
        if (service / "__init__.py").is_file():
            (package / service.name).symlink_to(service)
            mapping[f"{package.relative_to(ROOT)}/{service.name}/"] = f"services/{service.name}/"
    return mapping


def main() -> int:
    mapping = build_tree()
    env = {**os.environ, "MYPYPATH": str(TREE)}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "userstream", *sys.argv[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    # Service prefixes are longer than the package prefix, so map them first.
    for tree_prefix, source_prefix in sorted(mapping.items(), key=lambda item: -len(item[0])):
        output = output.replace(tree_prefix, source_prefix)
    print(output, end="")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
