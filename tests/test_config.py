from dataclasses import dataclass
from typing import Literal

import pytest

from mlmyths import config as configs
from mlmyths.errors import ConfigError, UserError


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    epochs: int = 3
    name: str = "a"
    flag: bool = False
    depths: tuple[int, ...] = (8, 20)
    pair: tuple[int, float] = (1, 2.0)
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None


PRESETS = {"smoke": Cfg(epochs=1), "small": Cfg(), "paper": Cfg(epochs=200)}


def test_select_applies_scale_and_typed_string_overrides():
    cfg = configs.select(PRESETS, "paper", {"lr": "0.05", "depths": "8, 32,110", "flag": "yes", "mode": "slow",
                                            "limit": "none", "pair": "3,0.5"})
    assert cfg == Cfg(lr=0.05, epochs=200, depths=(8, 32, 110), flag=True, mode="slow", limit=None, pair=(3, 0.5))


def test_python_values_are_checked_too():
    assert configs.override(Cfg(), {"epochs": 5, "lr": 1, "limit": 7}) == Cfg(epochs=5, lr=1.0, limit=7)
    with pytest.raises(ConfigError, match=r"'epochs' expects a whole number, got 2.5"):
        configs.override(Cfg(), {"epochs": 2.5})
    with pytest.raises(ConfigError, match="'flag' expects bool"):
        configs.override(Cfg(), {"flag": 1})


@pytest.mark.parametrize("key,value,message", [
    ("epochs", "three", "'epochs' expects a whole number, got 'three'"),
    ("lr", "fast", "'lr' expects a finite number"),
    ("mode", "medium", "'mode' expects one of 'fast', 'slow', got 'medium'"),
    ("depths", "8,x", "'depths' expects a comma-separated list of whole numbers"),
    ("pair", "1,2,3", "'pair' expects"),
    ("flag", "maybe", "'flag' expects bool"),
])
def test_bad_values_name_key_value_and_expected_type(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        configs.select(PRESETS, "small", {key: value})


def test_unknown_key_and_scale_are_user_errors():
    with pytest.raises(ConfigError, match="unknown config key 'lrr' for Cfg; valid keys: lr, epochs"):
        configs.select(PRESETS, "small", {"lrr": "1"})
    with pytest.raises(UserError, match="unknown scale 'huge': choose one of smoke, small, paper"):
        configs.select(PRESETS, "huge")


def test_parse_assignments_and_round_trip():
    assert configs.parse_assignments(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError, match="expected key=value, got 'oops'"):
        configs.parse_assignments(["oops"])
    cfg = Cfg(depths=(1, 2, 3), limit=4)
    assert configs.to_dict(cfg)["depths"] == [1, 2, 3]
    assert configs.from_dict(Cfg, configs.to_dict(cfg)) == cfg
