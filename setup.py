"""Only what pyproject.toml cannot say: the wheel ships no test modules.

The brief puts test_coordination.py inside step 03's folder, which is also the cluster_sim
package, so setuptools would copy it into every node's install; this filter leaves it out.
"""

from __future__ import annotations

from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithoutTests(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> Any:
        modules = super().find_package_modules(package, package_dir)
        return [(pkg, name, path) for pkg, name, path in modules if not name.startswith("test_")]


setup(cmdclass={"build_py": BuildPyWithoutTests})
