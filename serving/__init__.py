"""TorchServe serving code that ships inside the model archive (see ``handler.py``)."""
