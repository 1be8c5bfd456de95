"""Labelled exports: every chart and table file says what it shows (title, setup, shift, corruption,
severity, recipe, seeds, engine code version), and its file name is built from the same facts.

CSV files start with '# key: value' lines (read them with `pandas.read_csv(path, comment="#")`), then
plain numeric columns. HTML files are self-contained (plotly.js inlined), as is the page report, which
gathers a page's figures and tables with the exact CLI commands that reproduce them.
"""
from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from autoft_core.config import code_version
from autoft_core.core.recipe import Recipe

MAIN_RECIPE = ("shots", "epochs", "lr", "granularity")


def slug(text: str) -> str:
    """A file- and key-safe version of `text`."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-")


@dataclass(frozen=True)
class Meta:
    """What a chart or table shows; None fields are left out (e.g. no recipe for raw layer weights)."""

    title: str
    setup: str | None = None
    shift: str | None = None  # one shift, or a comma list
    corruption: str | None = None  # one corruption, or a comma list
    severity: int | None = None
    recipe: dict[str, Any] | None = None
    seeds: Sequence[int] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. methods, metric
    version: str = field(default_factory=code_version)

    def facts(self) -> dict[str, str]:
        """Every non-empty fact as text, in a fixed order (the CSV header lines and the HTML list)."""
        facts = {"title": self.title, "setup": self.setup, "shift": self.shift, "corruption": self.corruption,
                 "severity": self.severity,
                 "recipe": ", ".join(f"{k} {v}" for k, v in self.recipe.items()) if self.recipe else None,
                 "seeds": ", ".join(map(str, self.seeds)) if self.seeds else None, **self.extra,
                 "engine code version": self.version}
        return {k: str(v) for k, v in facts.items() if v is not None and v != ""}

    def subtitle(self) -> str:
        """Two short lines for a figure: the task and seeds, then the recipe (main and non-default settings)
        and the code version."""
        task = " · ".join(str(v) for v in (self.setup, self.shift, self.corruption) if v)
        if self.severity is not None and self.corruption:
            task += f" @ severity {self.severity}"
        if self.seeds:
            task += f" · seed{'s' if len(self.seeds) > 1 else ''} {', '.join(map(str, self.seeds))}"
        defaults = Recipe().to_dict()
        shown = {k: v for k, v in (self.recipe or {}).items() if k in MAIN_RECIPE or defaults.get(k) != v}
        recipe = ", ".join(f"{k} {v}" for k, v in shown.items())
        return "<br>".join(line for line in (task, "; ".join(p for p in (recipe, f"code {self.version}") if p)) if line)

    def filename(self, extension: str) -> str:
        """'<title>_<setup>_<shift>[-<corruption>-s<severity>]_e<epochs>-n<shots>-lr<lr>_seeds<..>.<ext>'."""
        parts = [self.title, self.setup or ""]
        task = "-".join(p for p in (self.shift, self.corruption) if p)
        if task:
            parts.append(task + (f"-s{self.severity}" if self.corruption and self.severity is not None else ""))
        if self.recipe:
            parts.append("-".join(f"{short}{self.recipe[k]}" for k, short in (("epochs", "e"), ("shots", "n"),
                                                                              ("lr", "lr")) if k in self.recipe))
        if self.seeds:
            parts.append("seeds" + "-".join(map(str, self.seeds)))
        name = "_".join(slug(p.replace(",", "+")) for p in parts if p)
        return f"{name}.{extension}" if extension else name


def task_meta(title: str, task: Any, recipe: Recipe | None, seeds: Sequence[int], **extra: Any) -> Meta:
    """The facts of a chart or table about one task (`engine.Task`): its title, task, recipe and seeds."""
    is_input = task.shift == "input"
    return Meta(title, task.setup, task.shift, task.corruption if is_input else None,
                task.severity if is_input else None, recipe.to_dict() if recipe else None, tuple(seeds),
                {k: v for k, v in extra.items() if v is not None})


def csv_text(frame: pd.DataFrame, meta: Meta) -> str:
    """'# key: value' lines, then the frame as CSV (numbers stay numbers)."""
    header = "".join(f"# {k}: {v}\n" for k, v in meta.facts().items())
    return header + frame.to_csv(index=False)


def _facts_html(meta: Meta) -> str:
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in meta.facts().items()
                    if k != "title")
    return f"<ul class='facts'>{items}</ul>"


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:1.5em;max-width:1400px}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
            "pre{background:#f4f4f4;padding:.8em;overflow-x:auto}.facts{color:#444}</style></head>"
            f"<body>{body}</body></html>")


def figure_div(fig: go.Figure, include_plotlyjs: bool) -> str:
    """The figure as an HTML fragment (plotly.js inlined once per file, never from a CDN)."""
    return fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs, config={"displaylogo": False})


def figure_html(fig: go.Figure, meta: Meta) -> str:
    """One self-contained HTML file: the title, its facts and the interactive figure."""
    return _page(meta.title, f"<h2>{html.escape(meta.title)}</h2>{_facts_html(meta)}{figure_div(fig, True)}")


def table_html(frame: pd.DataFrame) -> str:
    """A table as HTML with one decimal place for floats."""
    return frame.to_html(index=False, float_format=lambda v: f"{v:.1f}" if abs(v) >= 0.1 or v == 0 else f"{v:.3g}",
                         na_rep="—", border=0)


@dataclass
class Report:
    """What a page showed: its figures and tables (with their facts) and the CLI commands behind them."""

    title: str
    items: list[tuple[Meta, go.Figure | pd.DataFrame]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def add(self, meta: Meta, item: go.Figure | pd.DataFrame) -> None:
        self.items.append((meta, item))

    def add_commands(self, commands: Sequence[str]) -> None:
        self.commands = list(dict.fromkeys([*self.commands, *commands]))

    def html(self) -> str:
        """One self-contained HTML file: every figure and table in page order, then the commands."""
        parts, plotly_included = [f"<h1>{html.escape(self.title)}</h1>",
                                  f"<p>AutoFT Explorer report; engine code version {code_version()}.</p>"], False
        for meta, item in self.items:
            parts.append(f"<h2>{html.escape(meta.title)}</h2>{_facts_html(meta)}")
            if isinstance(item, go.Figure):
                parts.append(figure_div(item, include_plotlyjs=not plotly_included))
                plotly_included = True
            else:
                parts.append(table_html(item))
        if self.commands:
            parts.append("<h2>Reproduce on the command line</h2><pre>"
                         + html.escape("\n".join(self.commands)) + "</pre>")
        return _page(self.title, "".join(parts))
