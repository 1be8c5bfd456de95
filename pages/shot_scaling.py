"""Shot scaling: test accuracy against the number of target examples per class, one line per method with
a ± std band over seeds; every point is an ordinary run, so it lands in the store."""
from __future__ import annotations

from collections import Counter
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
- On the input-level shift, tick **Mean over every corruption** for the input level's curve (one run per
  corruption for each point), as Table 1 and the paper report it.
"""
LEVELS = (1, 5, 10, 25, 50, 100)

with layout.page("Shot scaling", HOW):
    task = pickers.task()
    every = task.shift == "input" and st.checkbox(
        "Mean over every corruption (the input level, as in Table 1)", key="shots.every_corruption", **PERSIST,
        help="Each point averages the runs on all corruptions at this severity (one run per corruption, "
             "method, K and seed), as the paper's shot analysis on CIFAR-10-C does; the band is over seeds.")
    tasks = [replace(task, corruption=c) for c in engine.setup(task.setup).corruptions()] if every else [task]
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
    shots = [k * classes for k in sorted(ks)]
    plan = [run for t in tasks for run in engine.plan_runs(t, methods, settings, shots=shots)]
    output.report().add_commands([commands.shots_command(plan[0].cfg, list(methods), sorted(ks), settings.seeds,
                                                         engine.store_path(), settings.device,
                                                         "all" if every else None)])
    runs = run_panel.runs(plan, settings, problems, key="shots")
    if every:  # a point is the mean over all corruptions: a method, seed and K with runs missing waits
        complete = Counter((r.label, r.seed, r.shots) for r in runs)
        runs = [r for r in runs if complete[(r.label, r.seed, r.shots)] == len(tasks)]
    frame = frames.shots_frame(runs, classes, metric)
    shown = replace(task, corruption="all") if every else task
    meta = task_meta(f"Shot scaling ({frames.METRICS[metric]} accuracy)", shown, settings.recipe,
                     sorted({r.seed for r in runs}), K=", ".join(map(str, sorted(ks))))
    meta = replace(meta, recipe={k: v for k, v in (meta.recipe or {}).items() if k != "shots"})  # shots vary: K
    output.show_figure(charts.scaling_chart(frame, f"{frames.METRICS[metric]} test accuracy", meta, 100 / classes),
                       meta)
    output.show_table(frame, meta)
