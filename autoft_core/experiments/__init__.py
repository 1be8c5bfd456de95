"""Experiments at scale: sweeps, shot scaling and hyper-parameter grids through the result store, and Table 1."""
