"""The one registry: family names → (config class, model class), recipe names → ready configs.

The CLI (`genlab models`, `genlab train`), checkpoint loading and the docs read this module; nothing
else in genlab maps names to classes. Model files register themselves on import
(``@register_family``) and :mod:`genlab.models` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from genlab.errors import unknown

M = TypeVar("M", bound=type)


@dataclass(frozen=True)
class Family:
    name: str
    config_class: type
    model_class: type
    description: str


@dataclass(frozen=True)
class Recipe:
    """A named, ready-to-train setup: family + model config + training config + default dataset."""

    name: str
    family: str
    model: Any  # the family's config instance
    train: Any  # genlab.training.TrainConfig
    dataset: str
    description: str


_FAMILIES: dict[str, Family] = {}
_RECIPES: dict[str, Recipe] = {}


def register_family(name: str, config_class: type, description: str) -> Callable[[M], M]:
    """Class decorator: make ``model_class`` buildable by ``name``."""

    def wrap(model_class: M) -> M:
        if name in _FAMILIES:
            raise ValueError(f"family {name!r} is registered twice")
        model_class.family = name
        _FAMILIES[name] = Family(name, config_class, model_class, description)
        return model_class

    return wrap


def register_recipe(recipe: Recipe) -> Recipe:
    if recipe.name in _RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    if recipe.family not in _FAMILIES:
        raise ValueError(f"recipe {recipe.name!r} names unregistered family {recipe.family!r}")
    _RECIPES[recipe.name] = recipe
    return recipe


def _load_all() -> None:
    import genlab.models
    import genlab.recipes  # noqa: F401  (registers every recipe)


def family(name: str) -> Family:
    _load_all()
    if name not in _FAMILIES:
        raise unknown("model family", name, _FAMILIES)
    return _FAMILIES[name]


def recipe(name: str) -> Recipe:
    _load_all()
    if name not in _RECIPES:
        raise unknown("recipe", name, _RECIPES, hint="List them with `genlab models`.")
    return _RECIPES[name]


def families() -> list[Family]:
    _load_all()
    return list(_FAMILIES.values())


def recipes() -> list[Recipe]:
    _load_all()
    return list(_RECIPES.values())


def build(family_name: str, config: Any) -> Any:
    """Instantiate the model of ``family_name`` from its config."""
    fam = family(family_name)
    if not isinstance(config, fam.config_class):
        raise TypeError(f"{family_name} needs a {fam.config_class.__name__}, got {type(config).__name__}")
    return fam.model_class(config)
