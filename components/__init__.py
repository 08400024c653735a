"""Kubeflow components of the training pipeline.

Each step is a plain function in ``components.data``, ``components.training`` or
``components.release`` whose body imports the ``churn`` package;
``components.factory.make_components`` binds them to the configured images.
"""
