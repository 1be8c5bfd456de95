"""Shot scaling: test accuracy against the number of target examples per class, one line per method with
a ± std band over seeds; every point is an ordinary run, so it lands in the store."""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

from ui import charts, commands, engine, frames, layout, output, pickers, run_panel
from ui.export import task_meta
from ui.widgets import PERSIST

HOW = """
- The x axis is **K, labelled target examples per class** (a run's shots = K × classes; the sidebar's shots
  setting is replaced here). Only the K the target pool can supply for every class are offered.
- The y axis is test accuracy in percent: the line is the mean over seeds, the band ± one std, the
  dashed line chance level.
- Few shots favour methods that train few layers; with more data, training more layers catches up.
"""
LEVELS = (1, 5, 10, 25, 50, 100)

with layout.page("Shot scaling", HOW):
    task = pickers.task()
    methods = pickers.methods()
    settings, problems = pickers.settings_for(task)
    counts = pickers.pool_counts(task, settings.seeds, settings.paths)
    classes, smallest = len(counts[0]), min(min(c) for c in counts)
    allowed = [k for k in LEVELS if k <= smallest]
    left, right = st.columns([2, 1])
    ks = left.multiselect("K (examples per class)", allowed, default=allowed, key=f"shots.k.{task.setup}",
                          help=f"Only the K every one of the {classes} classes can supply (the smallest holds "
                               f"{smallest}).")
    metric = right.radio("Accuracy", ["test_acc", "best_val_test_acc"], format_func=frames.METRICS.get,
                         horizontal=True, key="shots.metric", **PERSIST)
    if not ks:
        st.info("Pick at least one K.")
        st.stop()
    plan = engine.plan_runs(task, methods, settings, shots=[k * classes for k in sorted(ks)])
    output.report().add_commands([commands.shots_command(plan[0].cfg, list(methods), sorted(ks), settings.seeds,
                                                         engine.store_path(), settings.device)])
    runs = run_panel.runs(plan, settings, problems, key="shots")
    frame = frames.shots_frame(runs, classes, metric)
    meta = task_meta(f"Shot scaling ({frames.METRICS[metric]} accuracy)", task, settings.recipe,
                     sorted({r.seed for r in runs}), K=", ".join(map(str, sorted(ks))))
    meta = replace(meta, recipe={k: v for k, v in (meta.recipe or {}).items() if k != "shots"})  # shots vary: K
    output.show_figure(charts.scaling_chart(frame, f"{frames.METRICS[metric]} test accuracy", meta, 100 / classes),
                       meta)
    output.show_table(frame, meta)
