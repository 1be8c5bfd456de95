"""The dashboard's pure-pandas tables (ui.frames), colours and engine glue, without Streamlit: every number
checked against an independent computation (numpy on the same inputs, or the engine's own task)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from autoft_core.config import RunConfig
from autoft_core.core.recipe import Recipe
from autoft_core.data.corruptions import corrupt
from autoft_core.experiments.tables import cell_text, per_corruption, table1
from autoft_core.paths import DataPaths
from autoft_core.store import ResultStore
from ui import colours, engine, frames

ACC = {("full", 0): 0.50, ("full", 1): 0.70, ("lp", 0): 0.20, ("lp", 1): 0.20, ("lp", 2): 0.50}


def _result(acc: float, seed: int, layers: int = 3) -> dict:
    history = [{"epoch": e, "train_loss": 1.0 / e + seed, "train_acc": acc * e / 2, "val_acc": acc - 0.1 * seed,
                "phase": "lp" if e == 1 else "ft"} for e in (1, 2)]
    return {"layers": [f"stage{i}.conv" for i in range(layers)], "scores": [float(i) for i in range(layers)],
            "weights": [1.0] * layers, "multipliers": [0.0] * (layers - 1) + [1.0], "extras": {},
            "zero_shot_acc": acc / 2, "test_acc": acc, "best_val_test_acc": acc + 0.01, "best_val_epoch": 1 + seed,
            "param_change": [0.1 * (seed + 1) * (i + 1) for i in range(layers)], "history": history,
            "seconds": 2.0 + seed}


def _runs() -> list[frames.RunRef]:
    return [frames.RunRef(m, s, 20, _result(a, s)) for (m, s), a in ACC.items()]


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def test_accuracy_table_is_percent_mean_and_std_over_seeds() -> None:
    table = frames.accuracy_table(_runs()).set_index("method")
    for method in ("full", "lp"):
        accs = [a * 100 for (m, _), a in ACC.items() if m == method]
        assert table.loc[method, "final %"] == pytest.approx(np.mean(accs))
        assert table.loc[method, "final std"] == pytest.approx(_std(accs))
        assert table.loc[method, "zero-shot %"] == pytest.approx(np.mean(accs) / 2)
        assert table.loc[method, "best-val %"] == pytest.approx(np.mean(accs) + 1)
        assert table.loc[method, "seeds"] == len(accs)
    assert list(table.index) == ["full", "lp"]  # the order the runs came in
    assert all(pd.api.types.is_float_dtype(table[c]) for c in table.columns if c.endswith(("%", "std")))


def test_history_frame_averages_each_epoch_over_seeds_and_keeps_the_phase() -> None:
    history = frames.history_frame(_runs())
    row = history[(history["method"] == "lp") & (history["epoch"] == 2)].iloc[0]
    vals = [(ACC["lp", s] - 0.1 * s) * 100 for s in (0, 1, 2)]
    assert row["val_acc mean"] == pytest.approx(np.mean(vals)) and row["val_acc std"] == pytest.approx(_std(vals))
    assert row["train_loss mean"] == pytest.approx(np.mean([0.5 + s for s in (0, 1, 2)]))
    assert history.groupby("method")["phase"].apply(list).to_dict() == {"full": ["lp", "ft"], "lp": ["lp", "ft"]}


def test_param_change_and_weights_frames_run_input_to_output() -> None:
    change = frames.param_change_frame(_runs())
    full = change[change["method"] == "full"]
    assert full["layer"].tolist() == ["stage0 conv", "stage1 conv", "stage2 conv"]
    assert full["change"].tolist() == pytest.approx([np.mean([0.1 * (s + 1) * (i + 1) for s in (0, 1)])
                                                     for i in range(3)])
    assert full["std"].tolist() == pytest.approx([_std([0.1 * (s + 1) * (i + 1) for s in (0, 1)]) for i in range(3)])
    weights = frames.weights_frame({"a": _result(0.5, 0), "b": _result(0.5, 0, layers=2)})
    assert weights.groupby("method").size().to_dict() == {"a": 3, "b": 2}
    assert weights["index"].tolist() == [0, 1, 2, 0, 1]
    assert frames.readable_layers(["stage1.conv1", "stage1 conv1"]) == ["stage1 conv1", "stage1 conv1 #2"]


def test_shots_frame_orders_k_and_converts_total_shots() -> None:
    runs = [frames.RunRef("full", s, k * 10, _result(0.1 * k + 0.01 * s, s)) for k in (5, 1) for s in (0, 1)]
    out = frames.shots_frame(runs, num_classes=10)
    assert out["K"].tolist() == [1, 5] and out["shots"].tolist() == [10, 50]
    assert out["mean %"].tolist() == pytest.approx([np.mean([10.0, 11.0]), np.mean([50.0, 51.0])])


def test_shots_frame_averages_a_seeds_corruptions_before_the_spread_over_seeds() -> None:
    accs = {(0, "frost"): 0.2, (0, "snow"): 0.6, (1, "frost"): 0.3, (1, "snow"): 0.9}
    runs = [frames.RunRef("full", seed, 10, _result(acc, seed)) for (seed, _), acc in accs.items()]
    out = frames.shots_frame(runs, num_classes=10)
    assert out["seeds"].tolist() == [2]  # two seeds, each the mean of its two corruptions
    assert out["mean %"].tolist() == pytest.approx([np.mean([40.0, 60.0])])
    assert out["std"].tolist() == pytest.approx([_std([40.0, 60.0])])


def _store_rows(tmp_path) -> pd.DataFrame:
    """A store with made-up input/output runs of two methods (seeds 0, 1) and a criticality grid."""
    store = ResultStore(tmp_path / "results.sqlite")
    recipe = Recipe(epochs=1, shots=20)

    def put(acc: float, **config) -> None:
        cfg = RunConfig(**{"recipe": recipe, **config})
        store.put(cfg.key(), cfg.to_dict(), {**_result(acc, cfg.seed), "test_acc": acc})

    for seed in (0, 1):
        for method, base in (("full", 0.4), ("linear-probe", 0.2)):
            for corruption, step in (("frost", 0.0), ("snow", 0.2)):
                put(base + step + 0.1 * seed, shift="input", corruption=corruption, severity=5, method=method,
                    seed=seed)
            put(base + 0.5, shift="output", method=method, seed=seed)
    for topk in (0, 2):
        for partial in (0, 1):
            for seed in (0, 1):
                put(0.5 + topk / 10 + partial / 100 + seed / 1000, method="criticality-random", seed=seed,
                    params={"topk": topk, "partial_epochs": partial, "samples": 512})
    put(0.99, method="criticality-random", params={"topk": 2, "partial_epochs": 0, "samples": 8})  # not default
    return frames.runs_frame(store.frame(), engine.method_label)


def test_table_frames_match_the_engine_table(tmp_path) -> None:
    rows = _store_rows(tmp_path)
    recipe = Recipe(epochs=1, shots=20).to_dict()
    sel = engine.selection("digits", recipe, 5, ["frost", "snow"], methods=["full", "linear-probe"])
    table = table1(rows, sel)
    built = frames.table_frames(table)
    display = built["display"].set_index("method")
    numeric = built["numeric"].set_index("method")
    for (method, shift), cell in table.cells.items():
        level = {"input": "input-level", "output": "output-level"}[shift]
        assert display.loc[method, level] == cell_text(cell)
        assert numeric.loc[method, f"{level} mean %"] == pytest.approx(cell.mean)
        assert numeric.loc[method, f"{level} seeds"] == cell.seeds
    # full, input-level: per seed the mean over frost and snow, then mean and std over the seeds
    per_seed = [np.mean([0.4 + 0.1 * s, 0.6 + 0.1 * s]) * 100 for s in (0, 1)]
    assert numeric.loc["full", "input-level mean %"] == pytest.approx(np.mean(per_seed))
    assert numeric.loc["full", "input-level std"] == pytest.approx(_std(per_seed))
    assert display.loc["full", "feature-level"] == "—"

    per = frames.corruption_frames(rows, sel, "test_acc")["numeric"].set_index("method")
    assert per.loc["linear-probe", "snow mean %"] == pytest.approx(np.mean([40.0, 50.0]))
    assert per.loc["linear-probe", "snow std"] == pytest.approx(_std([40.0, 50.0]))
    engine_per = per_corruption(rows, sel)  # the CLI's `table --per-corruption`: the same cells
    assert list(engine_per.selection.shifts) == ["frost", "snow"] and engine_per.methods == ["full", "linear-probe"]
    for (method, corruption), cell in engine_per.cells.items():
        assert per.loc[method, f"{corruption} mean %"] == pytest.approx(cell.mean)
    assert engine_per.cells["full", "snow"].mean == pytest.approx(np.mean([60.0, 70.0]))
    assert engine_per.best == {("full", "frost"), ("full", "snow")}


def test_grid_frame_averages_seeds_per_grid_point_at_default_other_params(tmp_path) -> None:
    rows = _store_rows(tmp_path)
    sel = engine.selection("digits", Recipe(epochs=1, shots=20).to_dict(), 5, [""], shifts=["output"])
    defaults = engine.method_class("criticality-random").resolve_params({})
    grid = frames.grid_frame(rows, sel, "criticality-random", defaults, ["topk", "partial_epochs"], "test_acc")
    assert len(grid) == 4  # the samples=8 run is not at the default of the other parameter
    for _, row in grid.iterrows():
        accs = [(0.5 + row["topk"] / 10 + row["partial_epochs"] / 100 + s / 1000) * 100 for s in (0, 1)]
        assert row["mean %"] == pytest.approx(np.mean(accs)) and row["std"] == pytest.approx(_std(accs))
        assert row["seeds"] == 2


def test_estimate_scales_the_nearest_stored_runs_by_epochs() -> None:
    stored = pd.DataFrame({"setup": ["digits"] * 4 + ["other"], "method": ["full", "full", "full", "auto-rgn", "full"],
                           "epochs": [1, 3, 1, 1, 1], "shots": [20, 20, 1000, 20, 20],
                           "seconds": [4.0, 8.0, 100.0, 40.0, 999.0]})
    cfg = RunConfig(method="full", recipe=Recipe(epochs=9, shots=30))
    guess = frames.estimate(stored, [cfg])
    assert guess.seconds == pytest.approx(np.median([4.0 / 2, 8.0 / 4]) * 10)  # the two 20-shot full runs
    assert guess.basis == 2 and guess.estimated == guess.total == 1
    new_method = RunConfig(method="lp-ft", recipe=Recipe(epochs=1, shots=20))  # falls back to the setup's runs
    assert frames.estimate(stored, [new_method]).seconds == pytest.approx(np.median([2.0, 2.0, 20.0]) * 2)
    unknown = RunConfig(setup="cifar10", recipe=Recipe())
    assert frames.estimate(stored, [unknown]).estimated == 0


@pytest.mark.parametrize("shots", [10, 200, 1000, 100_000])
def test_effective_shots_is_the_size_of_the_training_split(shots) -> None:
    task = engine.Task("digits", "output")
    (counts,) = engine.pool_counts(task, [0], DataPaths())
    data = engine._task_data(task, 0, DataPaths(), shots=shots)
    assert frames.effective_shots(shots, counts) == len(data.train)
    assert frames.effective_shots(shots, counts) <= sum(counts)


def test_sample_rows_show_the_same_images_shifted() -> None:
    """The pairing `engine.shift_samples` relies on: digits' input task is the output task's images corrupted."""
    plain = engine._task_data(engine.Task("digits", "output"), 0, DataPaths())
    shifted = engine._task_data(engine.Task("digits", "input", "pixelate", 5), 0, DataPaths())  # no randomness
    assert torch.equal(corrupt(plain.test.x, "pixelate", 5), shifted.test.x)
    assert torch.equal(plain.test.y, 9 - shifted.test.y)  # flipped labels of the same images
    (_, original, labels), (_, flipped, new_labels) = engine.shift_samples(engine.Task("digits", "output"),
                                                                           DataPaths(), n=4)
    assert all(np.array_equal(a, b) for a, b in zip(original, flipped)) and new_labels == [9 - y for y in labels]
    (_, clean, _), (_, noisy, _) = engine.shift_samples(engine.Task("digits", "input", "pixelate", 5), DataPaths(), n=4)
    assert all(np.array_equal(a, b) for a, b in zip(clean, original))
    assert not any(np.array_equal(a, b) for a, b in zip(clean, noisy))


def test_one_colour_per_method_from_a_large_colour_blind_safe_palette() -> None:
    assert len(set(colours.PALETTE)) == len(colours.PALETTE) >= 16
    names = engine.method_names()
    assert len({colours.colour(n) for n in names}) == len(names)
    assert set(map(colours.colour, names)) <= set(colours.PALETTE)
    assert colours.colour("criticality-random (topk=2)") == colours.colour("criticality-random")
    assert colours.colour("a-new-method") in set(colours.PALETTE) - set(colours.METHOD_COLOURS.values())
