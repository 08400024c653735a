"""Stage 3, the training set: labels at cutoffs joined point-in-time through Feast."""
