"""Churn prediction platform: the core package.

Subpackages follow the data flow, each one stage (``docs/architecture.md``)::

    data -> features -> dataset -> model -> evaluation -> release

``settings``, ``errors`` and ``io`` sit below every stage. A stage imports only earlier
stages and those three; the core never imports the outer layers (``churn.cli``,
``pipelines``, ``components``, ``serving``, ``monitoring``). ``tests/unit/test_layers.py``
enforces both rules.
"""

__version__ = "0.1.0"
