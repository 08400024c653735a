"""Stage 2, features: daily activity, sequences at cutoffs, and the Feast repository."""
