"""genlab.config: type validation, JSON round trips and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import pytest

from genlab.config import apply_overrides, from_dict, parse_overrides, parse_value, to_dict, validate
from genlab.errors import ConfigError, GenlabError, UnknownNameError
from genlab.models.autoencoder import AutoencoderConfig
from genlab.models.vae import VAEConfig
from genlab.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class Toy:
    """Every kind of field a genlab config may hold."""

    count: int = 1
    rate: float = 0.5
    flag: bool = False
    name: str = "a"
    mode: Literal["fast", "slow"] = "fast"
    dims: tuple[int, ...] = ()
    limit: float | None = None

    def __post_init__(self) -> None:
        validate(self)


# --- validate --------------------------------------------------------------------------------
def test_literal_rejects_value_outside_choices_and_lists_them():
    with pytest.raises(ConfigError, match=r"mode='medium' is not allowed; choose one of 'fast', 'slow'"):
        Toy(mode="medium")
    with pytest.raises(ConfigError, match=r"architecture='transformer'.*'mlp', 'conv'"):
        VAEConfig(architecture="transformer")


def test_int_field_rejects_float_bool_and_string():
    for bad in (3.0, True, "3"):
        with pytest.raises(ConfigError, match=r"count=.* must be an integer"):
            Toy(count=bad)


def test_float_field_accepts_int_as_float_and_rejects_bool():
    toy = Toy(rate=2)
    assert toy.rate == 2.0 and type(toy.rate) is float
    assert type(VAEConfig(beta=4).beta) is float
    with pytest.raises(ConfigError, match="rate=True must be a number"):
        Toy(rate=True)
    with pytest.raises(ConfigError, match="must be a number"):
        Toy(rate="0.1")


def test_bool_field_accepts_only_bools():
    assert Toy(flag=True).flag is True
    for bad in (1, 0, "true"):
        with pytest.raises(ConfigError, match=r"flag=.* must be true or false"):
            Toy(flag=bad)


def test_str_field_rejects_non_strings():
    with pytest.raises(ConfigError, match="name=3 must be a string"):
        Toy(name=3)


def test_list_becomes_tuple_and_items_are_checked():
    toy = Toy(dims=[64, 32])
    assert toy.dims == (64, 32) and type(toy.dims) is tuple
    assert VAEConfig(hidden_dims=[8, 4]).hidden_dims == (8, 4)
    with pytest.raises(ConfigError, match=r"dims\[1\]='x' must be an integer"):
        Toy(dims=[64, "x"])
    with pytest.raises(ConfigError, match=r"dims=64 must be a list, e.g. dims=\[64,32\]"):
        Toy(dims=64)


def test_optional_field_takes_none_or_its_type():
    assert Toy(limit=None).limit is None
    limit = Toy(limit=3).limit
    assert limit == 3.0 and type(limit) is float
    with pytest.raises(ConfigError, match="limit='soon' must be a number"):
        Toy(limit="soon")


def test_config_errors_are_genlab_and_value_errors():
    with pytest.raises(GenlabError):
        Toy(count="x")
    with pytest.raises(ValueError):
        Toy(count="x")


# --- from_dict / to_dict -----------------------------------------------------------------------
def test_from_dict_unknown_key_suggests_and_lists_valid_keys():
    with pytest.raises(UnknownNameError, match="Did you mean 'latent_dim'") as info:
        from_dict(VAEConfig, {"latnt_dim": 3})
    message = str(info.value)
    assert "'latnt_dim'" in message
    for key in ("latent_dim", "hidden_dims", "beta", "num_classes"):
        assert key in message


def test_from_dict_validates_values():
    with pytest.raises(ConfigError, match="likelihood='poisson'"):
        from_dict(VAEConfig, {"likelihood": "poisson"})


@pytest.mark.parametrize(
    "config",
    [
        AutoencoderConfig(),
        AutoencoderConfig(height=8, width=8, architecture="conv", conv_channels=(4, 8), reconstruction="mse",
                          noise_std=0.2, mask_prob=0.1, hidden_dims=(16,)),
        VAEConfig(),
        VAEConfig(channels=3, height=16, width=16, latent_dim=4, architecture="conv", hidden_dims=(64, 32),
                  likelihood="gaussian", beta=4, num_classes=10, activation="silu"),
        TrainConfig(),
        TrainConfig(steps=7, max_minutes=1.5, lr=1, lr_schedule="linear", precision="bf16", ema_decay=0.99),
    ],
    ids=["ae-default", "ae-custom", "vae-default", "vae-custom", "train-default", "train-custom"],
)  # fmt: skip
def test_json_round_trip_is_exact(config):
    text = json.dumps(to_dict(config))
    again = from_dict(type(config), json.loads(text))
    assert again == config
    for field in dataclasses.fields(config):  # same canonical types, not just equal values
        assert type(getattr(again, field.name)) is type(getattr(config, field.name)), field.name


def test_to_dict_gives_json_types():
    data = to_dict(VAEConfig(hidden_dims=(64, 32)))
    assert data["hidden_dims"] == [64, 32]
    assert data["latent_dim"] == 16 and data["architecture"] == "mlp"


# --- parse_value / parse_overrides -------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("16", int, 16),
        ("3e-4", float, 3e-4),
        ("true", bool, True),
        ("False", bool, False),
        ("mlp", Literal["mlp", "conv"], "mlp"),
        ("none", float | None, None),
        ("null", float | None, None),
        ("2.5", float | None, 2.5),
        ("123", str, "123"),
        ("true", str, "true"),
        ("[64,32]", tuple[int, ...], [64, 32]),
        ("64,32", tuple[int, ...], [64, 32]),
        ("64", tuple[int, ...], [64]),
        ("[]", tuple[int, ...], []),
    ],
)
def test_parse_value(text, hint, expected):
    value = parse_value(text, hint)
    assert value == expected and type(value) is type(expected)


def test_parse_overrides_splits_on_first_equals_and_strips():
    assert parse_overrides(["a=1", " b = x ", "c=d=e"]) == {"a": "1", "b": "x", "c": "d=e"}
    assert parse_overrides([]) == {}


@pytest.mark.parametrize("item", ["latent_dim", "=16", ""])
def test_parse_overrides_rejects_malformed_item(item):
    with pytest.raises(ConfigError, match=r"is not of the form key=value \(e.g. latent_dim=16\)"):
        parse_overrides(["lr=1e-3", item])


# --- apply_overrides ---------------------------------------------------------------------------
def _configs():
    return {"model": VAEConfig(height=8, width=8), "train": TrainConfig()}


def test_apply_overrides_bare_and_qualified_keys():
    configs = _configs()
    out = apply_overrides(configs, {"latent_dim": "8", "train.lr": "3e-4", "model.beta": "2", "steps": "10"})
    assert out["model"] == dataclasses.replace(configs["model"], latent_dim=8, beta=2.0)
    assert out["train"] == dataclasses.replace(configs["train"], lr=3e-4, steps=10)
    assert configs["model"].latent_dim == 16  # the inputs are left as they were


@pytest.mark.parametrize("text", ["[64,32]", "64,32", "[64, 32]"])
def test_apply_overrides_parses_tuples(text):
    out = apply_overrides(_configs(), {"hidden_dims": text})
    assert out["model"].hidden_dims == (64, 32)


def test_apply_overrides_single_tuple_item_and_optional():
    out = apply_overrides(_configs(), {"hidden_dims": "64", "max_minutes": "none"})
    assert out["model"].hidden_dims == (64,) and out["train"].max_minutes is None
    out = apply_overrides(_configs(), {"max_minutes": "0.5", "architecture": "conv", "conv_channels": "4"})
    assert out["train"].max_minutes == 0.5 and out["model"].architecture == "conv"


def test_apply_overrides_unknown_key_lists_valid_keys():
    with pytest.raises(UnknownNameError, match="Did you mean 'latent_dim'") as info:
        apply_overrides(_configs(), {"latentdim": "8"})
    message = str(info.value)
    assert "latent_dim" in message and "lr" in message and "batch_size" in message
    assert "key=value" in message


def test_apply_overrides_qualified_key_must_belong_to_that_config():
    with pytest.raises(UnknownNameError, match=r"'train\.latent_dim'"):
        apply_overrides(_configs(), {"train.latent_dim": "8"})


def test_apply_overrides_validates_the_value():
    with pytest.raises(ConfigError, match="'mlp', 'conv'"):
        apply_overrides(_configs(), {"architecture": "transformer"})
    with pytest.raises(ConfigError, match=r"steps=.* must be an integer"):
        apply_overrides(_configs(), {"steps": "ten"})
