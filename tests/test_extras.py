"""Optional dependencies: a missing extra is a one-line UserError that names what to install."""
from __future__ import annotations

import doctest
import importlib
import sys

import pytest

from mlmyths import extras
from mlmyths.errors import MissingDependency, UserError


def test_require_imports_or_names_the_extra() -> None:
    assert extras.require("json", extra="dev", feature="x").dumps([1]) == "[1]"
    with pytest.raises(MissingDependency, match=r"the Frobnicator needs the package 'no_such_pkg', which does not "
                                                r"import here .*; install it with: pip install mlmyths\[frob\]"):
        extras.require("no_such_pkg.sub", extra="frob", feature="the Frobnicator")
    assert issubclass(MissingDependency, UserError) and issubclass(MissingDependency, ImportError)
    failures, attempted = doctest.testmod(extras)
    assert attempted > 0 and failures == 0


def test_the_lightning_adapter_without_lightning_says_pip_install_mlmyths_lightning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlmyths.integrations  # imports nothing optional

    for name in ("lightning", "lightning.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import lightning` sees when it is not installed
    monkeypatch.delitem(sys.modules, "mlmyths.integrations.lightning", raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module("mlmyths.integrations.lightning")
    assert isinstance(info.value, MissingDependency)
    message = str(info.value)
    assert "ForgettingCallback" in message and "pip install mlmyths[lightning]" in message
    assert "mlmyths.integrations.lightning" not in sys.modules
    assert mlmyths.integrations.__doc__
