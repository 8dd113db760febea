"""mlmyths: seven myths of machine-learning research, put to the test.

Each myth (O. Chang, "Seven Myths in Machine Learning Research", arXiv 1902.06789)
is tested by reproducing the study that refuted it; each study's method is a
reusable component:

- :mod:`mlmyths.tensorcalc`  tensor calculus for derivatives of any order (Laue et al. 2018)
- :mod:`mlmyths.bias`        dataset bias: Name That Dataset (Torralba & Efros 2011)
- :mod:`mlmyths.reuse`       test-set reuse and new test sets (Recht et al. 2018)
- :mod:`mlmyths.forgetting`  example forgetting (Toneva et al. 2019)
- :mod:`mlmyths.models`      Fixup/SkipInit ResNets (Zhang et al. 2019), LightConv/DynamicConv (Wu et al. 2019)
- :mod:`mlmyths.saliency`    fragile interpretations (Ghorbani et al. 2019)

Experiments live in :mod:`mlmyths.myths`; the command line is ``mlmyths``.
"""
from __future__ import annotations

from mlmyths.errors import ConfigError, DataError, UserError

__version__ = "0.2.0"  # the one place; pyproject.toml reads it (CHANGELOG.md: its entry)

__all__ = ["__version__", "UserError", "ConfigError", "DataError"]
