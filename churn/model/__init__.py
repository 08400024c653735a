"""Stage 4, the model: the temporal CNN, its training loop and the metrics it uses."""
