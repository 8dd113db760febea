"""Optional dependencies: imported by the feature that needs them, with the extra that installs them.

The core install stays small (torch, numpy, scipy, scikit-learn, matplotlib, rich, opt_einsum);
adapters for other people's stacks live behind extras in ``pyproject.toml`` and call
:func:`require` where they first need their package.

>>> require("math", extra="dev", feature="this doctest").sqrt(4.0)
2.0
"""
from __future__ import annotations

import importlib
from types import ModuleType

from mlmyths.errors import MissingDependency


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise :class:`~mlmyths.errors.MissingDependency` naming
    ``pip install mlmyths[extra]`` and the ``feature`` that needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(f"{feature} needs the package {module.split('.')[0]!r}, which does not import here "
                                f"({exc}); install it with: pip install mlmyths[{extra}]") from exc
