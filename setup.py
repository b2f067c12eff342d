"""Package discovery for the one ``userstream`` import namespace (see pyproject.toml).

Shared code lives in libs/userstream, each service in services/<name>; both map
into ``userstream``. Discovering the packages here means a new module or
service needs no edit to the build configuration.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
packages = find_packages("libs")
package_dir = {"userstream": "libs/userstream"}
for service in sorted(path for path in (ROOT / "services").iterdir() if (path / "__init__.py").is_file()):
    name = f"userstream.{service.name}"
    package_dir[name] = f"services/{service.name}"
    packages += [name, *(f"{name}.{sub}" for sub in find_packages(str(service.relative_to(ROOT))))]

setup(packages=packages, package_dir=package_dir)
