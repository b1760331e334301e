"""The library every run script composes: config, strategies, runner and summary."""
