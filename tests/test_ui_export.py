"""Labelled exports, the page report, chart margins and the reproducing CLI commands (no Streamlit)."""
from __future__ import annotations

import io
import math
import shlex

import pandas as pd
import plotly.graph_objects as go
import pytest

from autoft_core import cli, cli_args
from autoft_core.config import RunConfig, code_version
from autoft_core.core.recipe import Recipe
from autoft_core.experiment import resolve
from autoft_core.experiments.plan import sweep_configs
from autoft_core.setups import get_setup
from ui import charts, commands, frames
from ui.export import Meta, Report, csv_text, figure_html

LAYERS = ["stem conv", "stage1 0 conv1", "stage3 0 shortcut conv", "head"]
META = Meta("Layer weights · full", "digits", "input", "frost", 3, Recipe(epochs=2).to_dict(), (0, 1))


def test_meta_names_the_file_and_lists_every_fact() -> None:
    name = META.filename("csv")
    for part in ("Layer-weights", "digits", "input-frost-s3", "e2", "n1000", "seeds0-1"):
        assert part in name
    assert name.endswith(".csv") and "/" not in name and " " not in name
    facts = META.facts()
    assert facts["corruption"] == "frost" and facts["severity"] == "3" and facts["seeds"] == "0, 1"
    assert "epochs 2" in facts["recipe"] and facts["engine code version"] == code_version()
    assert Meta("Other shift", "digits", "output").filename("png") != META.filename("png")


def test_csv_has_metadata_lines_then_numeric_columns() -> None:
    frame = pd.DataFrame({"method": ["full", "lp"], "final %": [81.25, 40.0], "final std": [1.5, 0.0]})
    text = csv_text(frame, META)
    header = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# "))
    assert header["setup"] == "digits" and header["shift"] == "input" and header["title"] == META.title
    back = pd.read_csv(io.StringIO(text), comment="#")
    pd.testing.assert_frame_equal(back, frame)


def test_figure_html_is_self_contained_with_every_layer_name() -> None:
    frame = frames.weights_frame({"full": {"layers": [n.replace(" ", ".") for n in LAYERS],
                                           "scores": [1, 2, 3, 4], "weights": [1, 0.5, 0.2, 1]}})
    fig = charts.weights_bar(frame, "full", META)
    page = figure_html(fig, META)
    assert page.count("<html") == 1 and "<script src=" not in page and "stage3 0 shortcut conv" in page
    assert META.title in page and "frost" in page and code_version() in page
    assert fig.layout.title.text.startswith(META.title)


def test_margins_hold_the_longest_slanted_name() -> None:
    short, long = charts.layer_margins(["a", "b"]), charts.layer_margins(LAYERS)
    slant = math.sin(math.radians(charts.LAYER_ANGLE))
    assert long["b"] >= charts.CHAR_PX * len("stage3 0 shortcut conv") * slant > short["b"] - 60
    assert long["l"] >= charts.CHAR_PX * len(LAYERS[0]) * slant
    assert charts.layer_margins(["x"], ["criticality-random"])["l"] >= charts.CHAR_PX * len("criticality-random")


def test_report_holds_figures_tables_and_commands_with_plotly_once() -> None:
    report = Report("Fine-tune & compare")
    report.add(META, go.Figure(go.Bar(x=[1], y=[2])))
    report.add(Meta("Accuracy", "digits"), pd.DataFrame({"method": ["full"], "final %": [81.25]}))
    report.add(Meta("Second chart", "digits"), go.Figure(go.Bar(x=[1], y=[3])))
    report.add_commands(["python -m autoft_core finetune --method full"] * 2)
    page = report.html()
    assert page.count("Plotly.newPlot") == 2 and page.count("plotly.js v") == 1  # the library inlined once
    assert "81.2" in page and "Second chart" in page and page.count("finetune --method full") == 1


def _parse(line: str):
    words = shlex.split(line)
    assert words[:3] == ["python", "-m", "autoft_core"]
    return cli.build_parser().parse_args(words[3:])


@pytest.mark.parametrize("cfg", [
    RunConfig(method="criticality-random", params={"topk": 2}, recipe=Recipe(epochs=2, shots=40, lr=0.01), seed=3),
    RunConfig(shift="input", corruption="frost", severity=2, method="full",
              recipe=Recipe(optimizer="sgd", momentum=0.5, train_bn_stats=True, granularity="block")),
])
def test_run_command_asks_the_cli_for_the_same_config(cfg) -> None:
    args = _parse(commands.run_command(cfg))
    assert resolve(cli_args.run_config(args)) == resolve(cfg)  # the CLI's strings parsed as the engine does


def test_sweep_command_plans_the_same_runs() -> None:
    recipe = Recipe(epochs=1, shots=20)
    line = commands.sweep_command("digits", ["input", "output"], ["frost"], 4, ["full", "lp-ft"], [0, 2], recipe)
    args = _parse(line)
    planned = sweep_configs(args.setup, args.shifts, args.corruptions, args.severity, args.methods, args.seeds,
                            cli_args.recipe_from(args, args.setup))
    assert planned == sweep_configs("digits", "input,output", "frost", 4, "full,lp-ft", "0,2", recipe)
    assert get_setup("digits").recipe.epochs != 1 and "--epochs 1" in line
