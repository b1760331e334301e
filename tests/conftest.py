"""Shared test set-up: isolated caches and an explicit Ray auth mode."""

import os

# Ray 2.60 turns token authentication on for a fresh local ray.init(); the local test clusters
# run without it so tests never touch the user's ~/.ray token. The Slurm tests turn it on
# explicitly and check that a wrong token is refused.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
