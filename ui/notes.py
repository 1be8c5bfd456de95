"""Cues for learners: what each shift should do to the layer weights, measured numbers from the store
beside them, notes where a method never looks at the target, and what the chance level means."""
from __future__ import annotations

from typing import Any

from autoft_core.experiments.tables import LEVELS, Table

SHIFT_STORIES = {
    "input": "The same classes, but the images are corrupted (noise, blur, weather, compression…). The first "
             "layers, which read pixels, are the ones that should move: expect methods to give the early layers "
             "the larger multipliers, and surgical fine-tuning of the first block to do well.",
    "feature": "The same superclasses, made of subclasses the model never saw (digits: the source knows 0–4, the "
               "target asks for 5–9 under the labels 0–4). Mid-level features must change: expect the middle "
               "layers to matter most.",
    "output": "The same images, but the labels are permuted (here y → 9 − y). Every feature still works; only the "
              "head must change: expect the last layer to get the large multiplier, and zero-shot accuracy near "
              "0% (the source model predicts the original label, which the flip makes always wrong).",
}
FIXED_WEIGHTS = {
    "full": "full fine-tuning sets α = 1 for every layer whatever the target: it is the reference, not a choice.",
    "linear-probe": "the linear probe trains the head only, whatever the target.",
    "lp-ft": "LP-FT's multipliers are fixed (head first, then every layer): it never looks at the target to "
             "choose them.",
}


def target_note(label: str, method: str, extras: dict[str, Any] | None) -> str | None:
    """A note when a method's multipliers do not depend on the target data, else None."""
    if method in FIXED_WEIGHTS:
        return f"**{label}**: {FIXED_WEIGHTS[method]}"
    if (extras or {}).get("probe_data") == "source":
        return (f"**{label}** probed the **source** data only (partial_epochs = 0, Algorithm 3): its weights "
                "never look at the target, so they are the same for every shift that shares the source model.")
    return None


def chance_note(classes: int) -> str:
    """What the dashed chance line means."""
    return (f"Dashed line: chance level, {100 / classes:.0f}% ({classes} classes). Accuracy below it is not "
            "noise: on the label flip the source model confidently predicts the original label, which is "
            "always wrong there.")


def measured(table: Table, shift: str) -> str | None:
    """'Measured (…): best X at Y%; full fine-tuning Z%' for one shift of a Table 1, None without runs."""
    cells = {m: c for (m, s), c in table.cells.items() if s == shift}
    if not cells:
        return None
    best = max(cells, key=lambda m: cells[m].mean)
    seeds = max(c.seeds for c in cells.values())
    parts = [f"best **{best}** {cells[best].mean:.1f}%"]
    parts += [f"{m} {cells[m].mean:.1f}%" for m in ("full", "linear-probe") if m in cells and m != best]
    return (f"Measured in the store ({LEVELS.get(shift, shift)}, {len(cells)} methods, up to {seeds} seed"
            f"{'s' if seeds > 1 else ''}): " + "; ".join(parts) + ".")
