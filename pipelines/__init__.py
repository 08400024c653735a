"""Kubeflow pipeline definitions (see ``pipelines.training_pipeline``)."""
