"""The engine's core types, at the bottom of the import graph: they import nothing else of autoft_core
but `errors`. `recipe` and `values` stay free of torch (the CLI answers cache hits without it)."""
