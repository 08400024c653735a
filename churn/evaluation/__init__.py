"""Stage 5, evaluation: the test-split report beside baselines and the Bayes ceiling."""
