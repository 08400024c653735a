"""Drift monitoring of served traffic (layer 2): Evidently reports, decisions and metrics."""
