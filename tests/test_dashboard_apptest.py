"""Every dashboard page under Streamlit's AppTest on the embedded digits setup with small settings: it
renders without exception, widgets change what is shown, runs land in the store (a temporary one, via
AUTOFT_STORE), charts carry one bar per layer, and bad settings give inline messages, not tracebacks."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from autoft_core import dashboard_api as api
from autoft_core.config import RunConfig
from autoft_core.errors import BadArgumentError
from autoft_core.store import ResultStore

APP = str(Path(__file__).resolve().parent.parent / "app.py")
FAST = ["full", "linear-probe"]  # no probing: each weight computation is instant
DIGITS_LAYERS = 10  # DigitsResNet at module granularity: 3 stages of convs (+ shortcuts), stem and head
TIMEOUT = 180


@pytest.fixture(scope="module")
def store_file(tmp_path_factory):
    """One result store for this module's pages (runs of one test may be reused by the next)."""
    path = tmp_path_factory.mktemp("dashboard") / "results.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(api.STORE_ENV, str(path))
        yield path


def open_page(page: str | None = None, epochs: int = 1, shots: int = 20, methods: list[str] | None = FAST) -> AppTest:
    """The app on `page` (None: the landing page) with small sidebar settings and quick methods."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if page:
        at.switch_page(f"pages/{page}.py")
    at.run()
    at.number_input(key="settings.epochs").set_value(epochs)
    at.number_input(key="settings.shots").set_value(shots)
    if page and methods:
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


def bar_traces(at: AppTest) -> list[dict]:
    return [trace for spec in charts(at) for trace in spec["data"] if trace["type"] == "bar"]


def click_run(at: AppTest, key: str) -> AppTest:
    button = at.button(key=f"run.{key}")
    if not button.disabled:
        button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_landing_shows_shifts_setups_and_device(store_file) -> None:
    at = open_page()
    assert at.title[0].value == "AutoFT Explorer"
    images = at.get("image")
    assert len(images) == 6  # source and target rows for each of the three shifts
    setups = at.dataframe[0].value
    assert setups.set_index("setup").loc["digits", "ready"]
    assert "CPU" in at.markdown[-1].value or "GPU" in at.markdown[-1].value
    assert {"How to get **cifar10**", "How to get **breeds-living17**"} <= {e.label for e in at.main.expander}
    source, target = (image.proto.SerializeToString() for image in images[:2])
    at.selectbox(key="landing.corruption").set_value("frost").run()
    assert not at.exception
    after = [image.proto.SerializeToString() for image in at.get("image")[:2]]
    assert after[0] == source and after[1] != target  # only the corrupted target row changed


def test_layer_weights_one_bar_per_layer(store_file) -> None:
    at = open_page("layer_weights")
    bars = bar_traces(at)
    assert [b["name"] for b in bars] == FAST
    assert all(len(b["x"]) == len(b["y"]) == DIGITS_LAYERS for b in bars)
    assert bars[0]["y"] == [1.0] * DIGITS_LAYERS
    assert bars[1]["y"] == [0.0] * (DIGITS_LAYERS - 1) + [1.0]  # linear probe: the head only
    assert bars[1]["x"][0] == "stem conv" and bars[1]["x"][-1] == "head"  # input -> output, readable
    assert "customdata" in bars[0]  # raw scores on hover
    heatmap = next(t for spec in charts(at) for t in spec["data"] if t["type"] == "heatmap")
    assert len(heatmap["z"]) == 2 and len(heatmap["z"][0]) == DIGITS_LAYERS

    at.selectbox(key="task.shift.digits").set_value("input").run()
    at.selectbox(key="task.corruption.digits").set_value("frost")
    at.select_slider(key="task.severity").set_value(3).run()
    assert not at.exception and all(len(b["x"]) == DIGITS_LAYERS for b in bar_traces(at))
    at.radio(key="task.granularity").set_value("block").run()
    assert all(len(b["x"]) == 4 for b in bar_traces(at))  # Lee et al.'s blocks: stem+stage1, stage2, stage3, head
    at.multiselect(key="task.methods").set_value(["full"]).run()
    assert len(bar_traces(at)) == 1
    assert not ResultStore(store_file).frame().shape[0]  # weights alone never write runs


def test_finetune_run_lands_rows_and_second_tab_reads_them(store_file) -> None:
    at = open_page("finetune_compare")
    assert at.button(key="run.finetune").label == "Run 2 missing"
    click_run(at, "finetune")
    runs = ResultStore(store_file).frame(setup="digits", shift="output")
    assert sorted(runs["method"]) == FAST and set(runs["epochs"]) == {1} and set(runs["shots"]) == {20}
    table = at.dataframe[0].value
    assert list(table["method"]) == FAST and {"zero-shot %", "final %", "best-val %"} <= set(table.columns)
    assert {t["name"] for t in charts(at)[0]["data"]} == {"full · train loss", "linear-probe · train loss"}
    assert at.button(key="run.finetune").disabled

    other_tab = open_page("finetune_compare")  # a new session: straight from the store, no click
    assert other_tab.button(key="run.finetune").label == "All computed"
    assert list(other_tab.dataframe[0].value["method"]) == FAST


def test_parameter_change_bars_and_lines(store_file) -> None:
    at = click_run(open_page("param_change"), "param_change")
    bars = bar_traces(at)
    assert [b["name"] for b in bars] == FAST and all(len(b["x"]) == DIGITS_LAYERS for b in bars)
    assert bars[1]["y"][:-1] == [0.0] * (DIGITS_LAYERS - 1)  # linear probe moves the head only
    at.radio(key="param_change.style").set_value("Lines").run()
    assert not bar_traces(at) and [t["type"] for t in charts(at)[0]["data"]] == ["scatter", "scatter"]


def test_shot_scaling_one_line_per_method(store_file) -> None:
    at = open_page("shot_scaling", methods=["full"])
    assert at.multiselect(key="shots.k.digits").options == ["1", "5", "10", "25", "50", "100"]  # digits: 100 per class
    at.multiselect(key="shots.k.digits").set_value([1, 5]).run()
    click_run(at, "shots")
    assert {10, 50} <= set(ResultStore(store_file).frame(method="full", shift="output")["shots"])  # K × 10 classes
    (line,) = charts(at)[0]["data"]
    assert line["name"] == "full" and line["x"] == [1, 5]


def _fake_run(store: ResultStore, acc: float, **config) -> None:
    """A stored run with made-up numbers (the Results page only reads the store)."""
    cfg = RunConfig(**{"epochs": 1, "shots": 20, "lr": 1e-3, "batch_size": 64, **config})
    result = {"layers": ["a", "b"], "scores": [1, 1], "weights": [1, 1], "extras": {}, "zero_shot_acc": 0.1,
              "test_acc": acc, "best_val_epoch": 1, "best_val_acc": acc, "best_val_test_acc": acc,
              "param_change": [0.1, 0.2], "multipliers": [1, 1], "history": [], "seconds": 1.0}
    store.put(cfg.key(), cfg.to_dict(), result)


def test_results_table_and_criticality_grid(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(api.STORE_ENV, str(tmp_path / "results.sqlite"))
    store = ResultStore(tmp_path / "results.sqlite")
    for seed, accs in enumerate(((0.2, 0.4), (0.4, 0.6))):
        for corruption, acc in zip(("frost", "snow"), accs):
            _fake_run(store, acc, shift="input", corruption=corruption, severity=5, seed=seed)
        _fake_run(store, 0.9, shift="output", corruption=None, severity=0, seed=seed)
    for topk in (0, 2):
        for epochs in (0, 1, 2):
            _fake_run(store, 0.5 + topk / 10 + epochs / 100, method="criticality-random", corruption=None,
                      severity=0, params={"topk": topk, "partial_epochs": epochs, "samples": 512})
    at = open_page("results", methods=None)
    table = at.dataframe[0].value.set_index("method")
    assert table.loc["full", "input-level"] == "40.0 ± 14.1"  # per seed: mean over corruptions (30, 50)
    assert table.loc["full", "output-level"] == "90.0 ± 0.0"
    grid = next(t for spec in charts(at) for t in spec["data"] if t["type"] == "heatmap")
    assert grid["y"] == ["all", "2"] and grid["x"] == ["0", "1", "2"]
    assert grid["z"][1][2] == pytest.approx(0.72)

    at.multiselect(key="results.corruptions").set_value(["snow"]).run()
    assert at.dataframe[0].value.set_index("method").loc["full", "input-level"] == "50.0 ± 14.1"
    at.selectbox(key="results.metric").set_value("zero_shot_acc").run()
    assert at.dataframe[0].value.set_index("method").loc["full", "output-level"] == "10.0 ± 0.0"


def _engine_refuses(*args: object, **kwargs: object) -> dict:
    raise BadArgumentError("lr", -1, "a positive number")


def _engine_crashes(*args: object, **kwargs: object) -> dict:
    return {"test_acc": 1 / 0}


def test_bad_settings_get_inline_messages(store_file, monkeypatch) -> None:
    at = open_page("finetune_compare", epochs=0)
    assert any("Epochs is 0" in e.value for e in at.error)
    assert at.button(key="run.finetune").disabled

    at.number_input(key="settings.epochs").set_value(1)
    at.text_input(key="settings.path.cifar10_dir").set_value("/no/such/folder").run()
    assert any("/no/such/folder does not exist" in e.value for e in at.sidebar.error)
    at.selectbox(key="task.setup").set_value("cifar10").run()
    assert not at.exception and any("cannot run here" in e.value for e in at.error)
    at.selectbox(key="task.setup").set_value("digits").run()

    at.multiselect(key="task.methods").set_value(["full"])
    at.number_input(key="settings.shots").set_value(30).run()  # a config not in the store yet
    monkeypatch.setattr(api, "run", _engine_refuses)
    at.button(key="run.finetune").click().run()
    assert not at.exception and any("invalid lr -1" in e.value for e in at.error)
    monkeypatch.setattr(api, "run", _engine_crashes)
    at.button(key="run.finetune").click().run()
    assert not at.exception and any("failed unexpectedly (ZeroDivisionError" in e.value for e in at.error)


def test_shot_levels_and_labels() -> None:
    assert api.shot_levels(api.Task("digits", "feature"), api.DataPaths()) == (5, [1, 5, 10, 25])
    assert api.method_label("full", {}) == "full"
    assert api.readable_layers(["stage1.conv1", "stage1 conv1"]) == ["stage1 conv1", "stage1 conv1 #2"]
