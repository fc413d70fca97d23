"""Reports: pure functions from results to markdown, YAML-ready dicts and plots (no heavy imports here)."""
