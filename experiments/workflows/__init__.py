"""Multi-experiment workflows: the two-stage seed search and the batch-size probe."""
