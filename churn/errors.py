"""Typed errors that carry a message a user can act on.

The CLI turns every :class:`ChurnError` into one line on stderr and a non-zero exit code, so
bad input never ends in a traceback.
"""


class ChurnError(Exception):
    """Base class of every error the platform raises on purpose."""


class ContractError(ChurnError, ValueError):
    """Input data breaks the data contract (names the file, column and row)."""


class DatasetError(ChurnError, ValueError):
    """A training set folder is missing, malformed or unusable."""


class ModelError(ChurnError, ValueError):
    """A model folder is missing or malformed, or a request does not fit its input spec."""


class OutputError(ChurnError, ValueError):
    """An output path cannot be written, or holds something that must not be replaced."""


class RegistryError(ChurnError):
    """The model registry cannot complete an operation."""


class ServingError(ChurnError):
    """A model server could not be started, reached or deployed to."""


class RolloutError(ServingError):
    """A new version never became Ready on KServe; the previous one was restored where possible.

    Attributes:
        rollout: What happened (storage URIs, reason, message, whether the restore became
            Ready, times), for the registry's rollout record.
    """

    def __init__(self, message: str, rollout: dict) -> None:
        super().__init__(message)
        self.rollout = rollout


class PipelineError(ChurnError):
    """The pipeline cannot be compiled, submitted, scheduled or run as asked."""


class ResourceError(ChurnError):
    """The work would need more memory than the machine, or the configured budget, allows."""


class MonitorError(ChurnError):
    """The drift monitor cannot read its inputs (log, reference, store) or write its outputs."""
