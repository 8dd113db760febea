"""Every name a package exports is what it says (issue 17.3): each name in ``__all__`` resolves,
to the same object whether or not the package's submodules were imported first, and a name that
is not documented as a module is not one (a submodule must not shadow a function of its name)."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys

import pytest

import mlmyths

PACKAGES = sorted({"mlmyths", *(m.name for m in pkgutil.walk_packages(mlmyths.__path__, "mlmyths.") if m.ispkg)})


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_resolve_to_the_same_non_module_objects_before_and_after_submodule_imports(package):
    script = f"""
import importlib, pkgutil, types
pkg = importlib.import_module({package!r})
names = list(getattr(pkg, "__all__", []))
before = {{n: getattr(pkg, n) for n in names}}
for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
    try:
        importlib.import_module(m.name)
    except ImportError:  # an optional dependency (lightning, captum): not ours to check here
        pass
after = {{n: getattr(pkg, n) for n in names}}
changed = [n for n in names if before[n] is not after[n]]
modules = [n for n in names if isinstance(after[n], types.ModuleType) and n not in getattr(pkg, "__modules__", ())]
print(repr((changed, modules)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    changed, modules = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert not changed, f"{package}: names that change meaning once submodules are imported: {changed}"
    assert not modules, f"{package}: names in __all__ that are modules (list them in __modules__ if meant): {modules}"
