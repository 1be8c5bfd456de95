"""Every dashboard page under Streamlit's AppTest on the embedded digits setup with small settings (one
AppTest per page), the sidebar's defaults against the CLI's, Cancel, and one colour per method on every page.
Runs land in a temporary store (AUTOFT_STORE)."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from autoft_core.config import RunConfig
from autoft_core.core.recipe import CORRUPTIONS, Recipe, TaskSpec, field_names
from autoft_core.evaluation import accuracy
from autoft_core.layers import partition
from autoft_core.models.digits_net import DigitsResNet
from autoft_core.setups import get_setup
from autoft_core.setups.digits import FEATURES, PER_CLASS
from autoft_core.store import ResultStore
from ui import colours, engine, jobs

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
FAST = ["full", "linear-probe"]  # no probing: each weight computation is instant
DIGITS_LAYERS = len(partition(DigitsResNet(features=FEATURES)))  # the embedded model at module granularity
TIMEOUT = 240

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store_file(tmp_path_factory):
    """One result store for this module's pages (runs of one test may be reused by the next)."""
    path = tmp_path_factory.mktemp("dashboard") / "results.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(engine.STORE_ENV, str(path))
        yield path


def open_page(page: str, epochs: int = 1, shots: int = 20, methods: list[str] | None = FAST) -> AppTest:
    """The app on `page` with small recipe settings and quick methods."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(f"pages/{page}.py")
    at.run()
    at.number_input(key="recipe.digits.epochs").set_value(epochs)
    at.number_input(key="recipe.digits.shots").set_value(shots)
    if methods:
        at.multiselect(key="task.methods").set_value(methods)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _decoded(value: object) -> object:
    """A plotly JSON value with its typed arrays ({"dtype", "bdata"[, "shape"]}) turned into lists."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return array.reshape([int(n) for n in str(shape).split(",")] if shape else -1).tolist()
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as their JSON specs with plain lists."""
    return [_decoded(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


def traces(at: AppTest, kind: str) -> list[dict]:
    return [t for spec in charts(at) for t in spec["data"] if t["type"] == kind]


def method_colours(at: AppTest) -> dict[str, set[str]]:
    """Every colour each method's bars and lines have on the page (bands, chance and heatmaps aside)."""
    seen: dict[str, set[str]] = {}
    for spec in charts(at):
        for t in spec["data"]:
            hue = (t.get("marker") or {}).get("color") if t["type"] == "bar" else (t.get("line") or {}).get("color")
            if t.get("name") and t.get("showlegend", True) is not False or t["type"] == "bar":
                if isinstance(hue, str) and t.get("name") != "chance":
                    seen.setdefault(t["name"], set()).add(hue)
    return seen


def run_and_wait(at: AppTest, key: str) -> AppTest:
    """Press the panel's Run button (if anything is missing), wait for the job, redraw the page."""
    button = at.button(key=f"run.{key}")
    if not button.disabled:
        button.click().run()
        at.session_state[f"job.{key}"].wait(TIMEOUT)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def urls(at: AppTest) -> list[tuple[str, ...]]:
    """Each image row's media URLs (a hash of the pixels, captions aside)."""
    return [tuple(img.url for img in image.proto.imgs) for image in at.get("image")]


def test_overview_shows_the_same_images_shifted(store_file) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and at.title[0].value == "AutoFT Explorer"
    images = urls(at)
    assert len(images) == 6  # two rows for each of the three shifts
    clean, corrupted, _, _, original, flipped = images
    assert clean == original == flipped and corrupted != clean  # the same target images in every tab
    assert at.dataframe[0].value.set_index("setup").loc["digits", "ready"]
    at.selectbox(key="overview.corruption.digits").set_value("snow").run()
    after = urls(at)
    assert after[0] == clean and after[1] != corrupted  # only the corrupted row changed
    assert any("How to read" in e.label for e in at.main.expander)


def test_overview_measures_the_size_of_each_shift(store_file) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/overview.py").run()
    at.button(key="overview.shifts").click().run()
    assert not at.exception
    table = at.dataframe[0].value.set_index(["shift", "corruption"])
    digits = get_setup("digits")
    assert len(table) == len(digits.corruptions()) + 2
    flip = digits.task(digits.check(TaskSpec("output", seed=0)))  # recomputed here: the label flip's zero-shot
    assert table.loc[("output", "—"), "zero-shot %"] == pytest.approx(100 * accuracy(digits.source_model("output"),
                                                                                     flip.test))
    clean = table.loc[("output", "—"), "zero-shot %"] + table.loc[("output", "—"), "drop from clean (points)"]
    inputs = table.loc["input"]
    assert (inputs["zero-shot %"] + inputs["drop from clean (points)"]).to_numpy() == pytest.approx(clean)
    assert np.isnan(table.loc[("feature", "—"), "drop from clean (points)"])


def test_sidebar_defaults_are_the_cli_defaults(store_file) -> None:
    cli = json.loads(subprocess.run([sys.executable, "-m", "autoft_core", "setups", "--json"], cwd=REPO,
                                    capture_output=True, text=True, check=True).stdout)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/results.py").run()
    for row in cli:  # the setup select box shows each setup's sidebar, ready or not
        at.selectbox(key="task.setup").set_value(row["setup"]).run()
        assert not at.exception
        prefix = f"recipe.{row['setup']}."
        values = {w.key.removeprefix(prefix): w.value for kind in ("number_input", "checkbox", "selectbox")
                  for w in getattr(at.sidebar, kind) if (w.key or "").startswith(prefix)}
        assert set(values) == set(field_names()) and values == row["recipe"], row["setup"]
        assert values == engine.setup(row["setup"]).recipe.to_dict()


def test_layer_weights_one_bar_per_layer(store_file) -> None:
    at = open_page("layer_weights")
    bars = traces(at, "bar")
    assert [b["name"] for b in bars] == FAST
    assert all(len(b["x"]) == len(b["y"]) == DIGITS_LAYERS for b in bars)
    assert bars[0]["y"] == [1.0] * DIGITS_LAYERS
    assert bars[1]["y"] == [0.0] * (DIGITS_LAYERS - 1) + [1.0]  # linear probe: the head only
    assert bars[1]["x"][0] == "stem conv" and bars[1]["x"][-1] == "head"  # input -> output, readable
    (heatmap,) = traces(at, "heatmap")
    assert len(heatmap["z"]) == 2 and len(heatmap["z"][0]) == DIGITS_LAYERS
    at.selectbox(key="task.shift.digits").set_value("input").run()
    at.selectbox(key="task.corruption.digits").set_value("frost").run()
    assert not at.exception and all(len(b["x"]) == DIGITS_LAYERS for b in traces(at, "bar"))
    at.selectbox(key="recipe.digits.granularity").set_value("block").run()
    assert all(len(b["x"]) == 4 for b in traces(at, "bar"))  # Lee et al.'s blocks
    assert not ResultStore(store_file).frame().shape[0]  # weights alone never write runs


@pytest.mark.xdist_group("vit")  # on the worker that pretrains the embedded ViT (tests/test_setup_digits_vit.py)
def test_layer_weights_shows_the_vit_partition(store_file) -> None:
    at = open_page("layer_weights")
    at.selectbox(key="task.setup").set_value("digits-vit").run()
    assert not at.exception, [e.value for e in at.exception]
    bars = traces(at, "bar")
    assert [b["name"] for b in bars] == FAST
    assert bars[1]["x"] == ["embed", "block0 attn", "block0 mlp", "block1 attn", "block1 mlp", "head"]
    assert bars[1]["y"] == [0.0] * 5 + [1.0]  # linear probe: the head only


def test_weights_by_shift_is_a_shift_by_method_grid(store_file) -> None:
    at = open_page("shift_grid")
    bars = traces(at, "bar")
    assert len(bars) == 3 * len(FAST) and all(len(b["x"]) == DIGITS_LAYERS for b in bars)
    assert [b["name"] for b in bars] == FAST * 3  # a row per shift, a column per method
    assert any("never looked at the target" in e.value or "whatever the target" in e.value for e in at.caption)


def test_finetune_runs_land_in_the_store_and_a_second_tab_reads_them(store_file) -> None:
    at = open_page("finetune_compare")
    assert at.button(key="run.finetune").label == "Run 2 missing"
    run_and_wait(at, "finetune")
    runs = ResultStore(store_file).frame(setup="digits", shift="output")
    assert sorted(runs["method"]) == FAST and set(runs["epochs"]) == {1} and set(runs["shots"]) == {20}
    table = at.dataframe[0].value.set_index("method")
    stored = runs.set_index("method")
    for method in FAST:  # percent, one seed: the stored accuracy × 100, std 0
        assert table.loc[method, "final %"] == pytest.approx(100 * stored.loc[method, "test_acc"])
        assert table.loc[method, "final std"] == 0
    assert at.button(key="run.finetune").disabled
    report = at.session_state["report.current"].html()  # the page report: its tables, figures and commands
    for method in FAST:
        assert f"python -m autoft_core finetune --setup digits --shift output --method {method} --seed 0" in report
    assert "Test accuracy" in report and "Validation accuracy" in report and report.count("plotly.js v") == 1
    other_tab = open_page("finetune_compare")  # a new session: straight from the store, no click
    assert other_tab.button(key="run.finetune").label == "All computed"
    assert list(other_tab.dataframe[0].value["method"]) == FAST


def test_cancel_stops_the_run_and_keeps_the_finished_ones(store_file) -> None:
    at = open_page("finetune_compare", epochs=60, methods=["full"])
    at.multiselect(key="settings.seeds").set_value([0, 1, 2]).run()
    at.button(key="run.finetune").click().run()
    job: jobs.Job = at.session_state["job.finetune"]
    deadline = time.monotonic() + TIMEOUT
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    at.button(key="cancel.finetune").click().run()
    job.wait(TIMEOUT)
    at.run()
    assert job.state == jobs.CANCELLED and 1 <= len(job.finished) < 3
    kept = ResultStore(store_file).frame(setup="digits", shift="output", method="full")
    assert len(kept[kept["epochs"] == 60]) == len(job.finished)
    assert any("Cancelled after" in w.value for w in at.warning)
    assert at.dataframe[0].value.set_index("method").loc["full", "seeds"] == len(job.finished)


def test_parameter_change_bars_and_lines(store_file) -> None:
    at = run_and_wait(open_page("param_change"), "param_change")
    bars = traces(at, "bar")
    assert [b["name"] for b in bars] == FAST and all(len(b["x"]) == DIGITS_LAYERS for b in bars)
    assert bars[1]["y"][:-1] == [0.0] * (DIGITS_LAYERS - 1)  # linear probe moves the head only
    at.radio(key="param_change.style").set_value("Lines").run()
    assert not traces(at, "bar") and [t["name"] for t in traces(at, "scatter")] == FAST


def test_shot_scaling_one_line_per_method(store_file) -> None:
    at = open_page("shot_scaling", methods=["full"])
    most = PER_CLASS["standard"][2]  # training candidates per class: K up to it can be balanced
    options = [int(k) for k in at.multiselect(key="shots.k.digits").options]
    assert options and max(options) <= most and options == sorted(options) and 1 in options
    at.multiselect(key="shots.k.digits").set_value([1, 5]).run()
    run_and_wait(at, "shots")
    stored = ResultStore(store_file).frame(method="full", shift="output")
    assert {10, 50} <= set(stored["shots"])  # K × 10 classes
    line = [t for t in traces(at, "scatter") if t["name"] == "full"][0]
    assert line["x"] == [1, 5]
    assert line["y"][0] == pytest.approx(100 * stored[(stored["shots"] == 10) & (stored["epochs"] == 1)]
                                         ["test_acc"].iloc[0])


def test_shot_scaling_on_the_input_level_averages_every_corruption(store_file) -> None:
    at = open_page("shot_scaling", methods=["full"])
    at.selectbox(key="task.shift.digits").set_value("input").run()
    at.checkbox(key="shots.every_corruption").check().run()
    at.multiselect(key="shots.k.digits").set_value([1]).run()
    run_and_wait(at, "shots")
    stored = ResultStore(store_file).frame(method="full", shift="input")
    stored = stored[(stored["shots"] == 10) & (stored["epochs"] == 1)]
    assert sorted(stored["corruption"]) == sorted(CORRUPTIONS)  # one run per corruption for the point
    line = [t for t in traces(at, "scatter") if t["name"] == "full"][0]
    assert line["x"] == [1] and line["y"][0] == pytest.approx(100 * stored["test_acc"].mean())


def test_hyper_parameter_grid_runs_the_declared_grid(store_file) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/hparam_grid.py").run()
    assert at.selectbox(key="hgrid.method").options == [m for m in engine.method_names()
                                                        if engine.method_class(m).grid()]
    at.number_input(key="recipe.digits.epochs").set_value(1)
    at.number_input(key="recipe.digits.shots").set_value(20)
    method = at.selectbox(key="hgrid.method").value
    at.multiselect(key=f"hgrid.{method}.topk").set_value([2, 0])
    at.multiselect(key=f"hgrid.{method}.partial_epochs").set_value([0, 1]).run()
    assert at.button(key="run.hgrid").label == "Run 4 missing"
    run_and_wait(at, "hgrid")
    (heat,) = traces(at, "heatmap")
    assert heat["y"] == ["all", "2"] and heat["x"] == ["0", "1"]
    stored = ResultStore(store_file).frame(method=method)
    topk2_pe1 = [r for r, p in zip(stored["test_acc"], stored["params"]) if p["topk"] == 2 and p["partial_epochs"] == 1]
    assert heat["z"][1][1] == pytest.approx(100 * topk2_pe1[0])


def _fake_run(store: ResultStore, acc: float, **config) -> None:
    """A stored run with made-up numbers (the Results page only reads the store)."""
    cfg = RunConfig(**{"recipe": Recipe(epochs=1, shots=20), **config})
    result = {"layers": ["a", "b"], "scores": [1, 1], "weights": [1, 1], "extras": {}, "zero_shot_acc": 0.1,
              "test_acc": acc, "best_val_epoch": 1, "best_val_acc": acc, "best_val_test_acc": acc,
              "param_change": [0.1, 0.2], "multipliers": [1, 1], "history": [], "seconds": 1.0}
    store.put(cfg.key(), cfg.to_dict(), result)


def test_results_table_from_the_store(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(engine.STORE_ENV, str(tmp_path / "results.sqlite"))
    store = ResultStore(tmp_path / "results.sqlite")
    for seed, accs in enumerate(((0.2, 0.4), (0.4, 0.6))):
        for corruption, acc in zip(("frost", "snow"), accs):
            _fake_run(store, acc, shift="input", corruption=corruption, severity=5, seed=seed)
        _fake_run(store, 0.9, shift="output", seed=seed)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/results.py").run()
    at.number_input(key="recipe.digits.epochs").set_value(1)
    at.number_input(key="recipe.digits.shots").set_value(20).run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("method")
    per_seed = [np.mean([20, 40]), np.mean([40, 60])]  # each seed: the mean over the corruptions
    assert table.loc["full", "input-level"] == f"{np.mean(per_seed):.1f} ± {np.std(per_seed, ddof=1):.1f}"
    assert table.loc["full", "output-level"] == "90.0 ± 0.0"
    at.multiselect(key="results.corruptions.frost|snow").set_value(["snow"]).run()
    assert at.dataframe[0].value.set_index("method").loc["full", "input-level"] == "50.0 ± 14.1"
    at.selectbox(key="results.metric").set_value("zero_shot_acc").run()
    assert at.dataframe[0].value.set_index("method").loc["full", "output-level"] == "10.0 ± 0.0"
    assert at.button(key="run.table").label.startswith("Run ")  # the table's own runs are not stored yet


def test_a_method_has_the_same_colour_on_every_page(store_file) -> None:
    seen: dict[str, set[str]] = {}
    for page, key in (("layer_weights", None), ("shift_grid", None), ("finetune_compare", "finetune"),
                      ("param_change", "param_change"), ("shot_scaling", "shots")):
        at = open_page(page)
        if key:
            run_and_wait(at, key)
        for name, hues in method_colours(at).items():
            seen.setdefault(name, set()).update(hues)
    assert set(FAST) <= set(seen)
    assert {name: hues for name, hues in seen.items()} == {name: {colours.colour(name)} for name in seen}


def test_bad_settings_get_inline_messages(store_file) -> None:
    at = open_page("finetune_compare")
    at.text_input(key="settings.path.cifar10_dir").set_value("/no/such/folder").run()
    assert any("/no/such/folder is not the folder configured for this server" in e.value for e in at.sidebar.error)
    at.selectbox(key="task.setup").set_value("cifar10").run()
    assert not at.exception and any("cannot run here" in e.value for e in at.error)
    at.selectbox(key="task.setup").set_value("digits").run()
    at.multiselect(key="settings.seeds").set_value([]).run()
    assert any("No seed chosen" in e.value for e in at.error) and at.button(key="run.finetune").disabled


def test_only_configured_folders_are_looked_up(monkeypatch) -> None:
    monkeypatch.setenv("AUTOFT_CIFAR10_DIR", "/no/such/folder")
    paths, problems = engine.path_problems({"cifar10_dir": "/no/such/folder", "imagenet_dir": "/etc"})
    assert problems == ["CIFAR-10 folder (holds cifar-10-batches-py/): the configured /no/such/folder does not exist.",
                        ("ImageNet root (train/, val/): /etc is not the folder configured for this server, so it is "
                         "not used; set AUTOFT_IMAGENET_DIR where the dashboard is started.")]
    assert paths == engine.DataPaths()
    monkeypatch.setattr(engine.Path, "exists", lambda self: pytest.fail(f"{self} was looked up"))
    engine.path_problems({"moco_checkpoint": "/root/secret"})


def test_the_server_listens_on_localhost_only() -> None:
    import tomllib

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1" and config["server"]["headless"] is True


def test_a_corrupt_store_is_named_not_called_empty(tmp_path, monkeypatch) -> None:
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"not a database" * 100)
    monkeypatch.setenv(engine.STORE_ENV, str(path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/results.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(str(path) in e.value and "move it away or delete it" in e.value for e in at.error)
    assert not any("empty" in i.value for i in at.info)


def test_a_diverged_run_is_shown_and_the_others_still_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(engine.STORE_ENV, str(tmp_path / "results.sqlite"))
    at = open_page("finetune_compare", epochs=3, shots=50)
    at.number_input(key="recipe.digits.lr").set_value(1e6).run()
    button = at.button(key="run.finetune")
    button.click().run()
    at.session_state["job.finetune"].wait(TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runs = ResultStore(tmp_path / "results.sqlite").frame()
    assert sorted(runs["method"]) == FAST and "diverged" in set(runs["status"])  # both ran and are stored
    diverged = runs[runs["status"] == "diverged"]["method"].tolist()
    assert all(any(m in w.value and "diverged at epoch" in w.value for w in at.warning) for m in diverged)
    table = at.dataframe[0].value.set_index("method")
    assert all(table.loc[m, "status"].startswith("diverged at epoch") for m in diverged)
