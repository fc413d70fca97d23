"""Application functions: what each command does, built from the engine, the reports,
profiling and calibration. The CLI parses and prints; this layer orchestrates (grids, resume,
executors, tuning, report writing). Nothing below it imports it.
"""
