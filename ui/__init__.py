"""The dashboard's shared pieces. Streamlit-free (unit-tested without a browser): `engine` (what pages need
from autoft_core), `frames` (tables as pandas), `charts` (plotly figures), `colours`, `export` (labelled
files and the page report), `commands` (the CLI lines that reproduce a page), `notes` (learner cues), `jobs`
(runs in a background thread through the sweep engine, with progress and cancel). Streamlit: `layout`,
`sidebar`, `pickers`, `run_panel`, `output`."""
