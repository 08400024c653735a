"""Serving processes: the KServe predictor (``predictor``), the second runtime beside TorchServe."""
