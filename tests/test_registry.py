"""genlab.registry: family and recipe names → configs and models."""

from __future__ import annotations

import dataclasses

import pytest

from genlab import registry
from genlab.data import DATASETS
from genlab.errors import ConfigError, GenlabError, UnknownNameError
from genlab.models.base import GenerativeModel
from genlab.models.vae import VAEConfig
from genlab.training import TrainConfig

#: recipes for tests and smoke checks, named by size rather than by dataset
TEST_RECIPES = {"vae-tiny", "ae-tiny", "ddpm-tiny", "gan-tiny", "gpt-tiny", "lstm-tiny"}


def test_families_are_registered():
    names = {fam.name for fam in registry.families()}
    assert {"ae", "vae"} <= names
    for fam in registry.families():
        assert fam.model_class.family == fam.name
        assert issubclass(fam.model_class, GenerativeModel)
        assert fam.description


@pytest.mark.parametrize("name", [r.name for r in registry.recipes()])
def test_every_recipe_builds_a_model_of_its_family(name):
    recipe = registry.recipe(name)
    fam = registry.family(recipe.family)
    assert isinstance(recipe.model, fam.config_class)
    assert isinstance(recipe.train, TrainConfig)
    assert recipe.dataset in DATASETS
    config = recipe.model
    if getattr(config, "vocab_size", None) == 0:  # token models take their vocabulary from the tokenizer
        with pytest.raises(ConfigError, match="vocab_size=0: it is set from the tokenizer"):
            registry.build(recipe.family, config)
        config = dataclasses.replace(config, vocab_size=65)
    model = registry.build(recipe.family, config)
    assert isinstance(model, fam.model_class)
    assert model.family == recipe.family and model.config is config
    assert model.num_parameters() > 0


def test_recipe_names_follow_family_dataset():
    for recipe in registry.recipes():
        assert recipe.description, recipe.name
        if recipe.name in TEST_RECIPES:
            assert recipe.name.endswith("-tiny") and "test" in recipe.description
            continue
        suffix = f"-{recipe.dataset}"
        assert recipe.name.endswith(suffix), f"{recipe.name} does not end with {suffix}"
        model_words = {"diffusion": ("ddpm",), "gan": ("gan",), "rnn": ("lstm", "gru")}.get(
            recipe.family, (recipe.family,)
        )
        assert any(word in recipe.name.removesuffix(suffix) for word in model_words), recipe.name


def test_unknown_recipe_suggests_close_name_and_lists_all():
    with pytest.raises(UnknownNameError, match=r"unknown recipe 'vae-mnst'\. Did you mean 'vae-mnist'") as info:
        registry.recipe("vae-mnst")
    message = str(info.value)
    assert all(r.name in message for r in registry.recipes())
    assert "genlab models" in message


def test_unknown_family_suggests_close_name():
    with pytest.raises(UnknownNameError, match=r"unknown model family 'vea'\. Did you mean 'vae'"):
        registry.family("vea")
    listed = ", ".join(sorted(f.name for f in registry.families()))
    with pytest.raises(UnknownNameError, match=rf"unknown model family 'zzz'.*: {listed}\."):
        registry.build("zzz", VAEConfig())


def test_unknown_name_error_is_a_genlab_and_key_error():
    with pytest.raises(GenlabError):
        registry.recipe("nope")
    with pytest.raises(KeyError):
        registry.recipe("nope")


def test_build_rejects_config_of_another_family():
    ae_config = registry.recipe("ae-tiny").model
    with pytest.raises(TypeError, match="vae needs a VAEConfig, got AutoencoderConfig"):
        registry.build("vae", ae_config)


def test_registering_a_recipe_twice_raises():
    existing = registry.recipe("vae-tiny")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_recipe(existing)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_recipe(dataclasses.replace(existing, description="another"))
    assert registry.recipe("vae-tiny") is existing


def test_registering_a_family_twice_raises():
    class Impostor(GenerativeModel):
        pass

    with pytest.raises(ValueError, match="family 'vae' is registered twice"):
        registry.register_family("vae", VAEConfig, "again")(Impostor)
    assert registry.family("vae").model_class is not Impostor
    assert Impostor.family == ""


def test_recipe_with_unregistered_family_raises():
    recipe = dataclasses.replace(registry.recipe("vae-tiny"), name="flow-tiny", family="flow")
    with pytest.raises(ValueError, match="unregistered family 'flow'"):
        registry.register_recipe(recipe)
    with pytest.raises(UnknownNameError):
        registry.recipe("flow-tiny")
