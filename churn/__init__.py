"""Churn prediction platform: the code every part shares.

Modules are flat and named after what they hold; ``docs/architecture.md`` shows how data flows
between them.
"""

__version__ = "0.1.0"
