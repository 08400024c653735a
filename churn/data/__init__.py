"""Stage 1, the log: the data contract, the real and synthetic logs, cutoffs and sources."""
