"""AutoFT Explorer's engine: setups and shifts, per-layer weighting methods, fine-tuning, result store.

No Streamlit here: the dashboard (app.py, pages/) and the command line (`python -m autoft_core`) call it.
"""
