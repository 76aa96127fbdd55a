"""The benchmark (`make bench`): bench.py, with loops.py (engine-free) and runs.py (through the engine)."""
