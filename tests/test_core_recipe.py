"""The one Recipe: every setting bounded, parsed the same way everywhere, and every surface (CLI flags,
store columns, Table 1's recipe columns) derived from its fields, so adding a setting is one edit."""
from __future__ import annotations

import math

import pytest

from autoft_core.cli import build_parser
from autoft_core.cli_args import recipe_from
from autoft_core.config import RunConfig
from autoft_core.core.recipe import Recipe, field_info, field_names
from autoft_core.core.values import Bounds
from autoft_core.errors import AutoFTError, BadArgumentError
from autoft_core.experiments.tables import RECIPE_FIELDS
from autoft_core.setups import get_setup, setup_names


@pytest.mark.parametrize("raw, expected", [("3", 3), (" 7 ", 7), (2.0, 2), ("all", 0)])
def test_whole_numbers_parse_and_all_maps_to_its_value(raw, expected):
    assert Bounds(int, 0, 10, all_means=0).parse("k", raw) == expected


@pytest.mark.parametrize("raw", ["-1", "11", "2.5", "x", "", "nan", True, float("inf")])
def test_out_of_range_or_malformed_whole_numbers_are_refused(raw):
    with pytest.raises(BadArgumentError, match="'k'|k "):
        Bounds(int, 0, 10).parse("k", raw)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e300", "-0.5"])
def test_non_finite_and_out_of_range_floats_are_refused(raw):
    with pytest.raises(BadArgumentError):
        Bounds(float, 0.0, 10.0).parse("lr", raw)


def _flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # noqa: SLF001
    return {opt for action in sub._actions for opt in action.option_strings}  # noqa: SLF001


def test_every_setting_has_bounds_its_default_satisfies_and_a_cli_flag():
    flags = {command: _flags(command) for command in ("weights", "finetune", "sweep", "grid", "table")}
    for name, default, help_text, bounds in field_info():
        assert bounds.parse(name, default) == default and help_text
        for command, given in flags.items():
            assert f"--{name.replace('_', '-')}" in given, (command, name)


def test_store_columns_and_table_recipe_columns_are_the_recipe_fields():
    row = RunConfig(recipe=Recipe()).to_dict()
    assert set(field_names()) <= set(row) and RECIPE_FIELDS == field_names()
    assert all(row[name] == getattr(Recipe(), name) for name in field_names())


def test_setups_declare_valid_recipes_and_the_cli_starts_from_them():
    parser = build_parser()
    for name in setup_names():
        recipe = get_setup(name).recipe
        assert isinstance(recipe, Recipe) and all(math.isfinite(v) for v in (recipe.lr, recipe.weight_decay))
        args = parser.parse_args(["finetune", "--setup", name])
        assert recipe_from(args, name) == recipe


def test_given_settings_override_and_unknown_ones_are_named():
    recipe = Recipe().with_values(lr="3e-3", epochs=None, train_bn_stats="true")
    assert recipe.lr == 3e-3 and recipe.epochs == Recipe().epochs and recipe.train_bn_stats is True
    with pytest.raises(BadArgumentError, match="recipe setting 'epochz'"):
        Recipe().with_values(epochz=2)


def test_a_momentum_given_for_an_optimizer_that_ignores_it_is_refused_where_every_recipe_is_built():
    assert Recipe().with_values(epochs=2).momentum == Recipe().momentum  # the default momentum is not "given"
    assert Recipe().with_values(optimizer="sgd", momentum="0.5").momentum == 0.5
    assert Recipe(optimizer="sgd").with_values(momentum=0.0).momentum == 0.0
    with pytest.raises(AutoFTError, match="momentum applies to optimizer sgd only, not adam"):
        Recipe().with_values(momentum=0.5)
    with pytest.raises(AutoFTError, match="momentum applies to optimizer sgd only"):
        Recipe(optimizer="sgd").with_values(optimizer="adam", momentum=0.5)
