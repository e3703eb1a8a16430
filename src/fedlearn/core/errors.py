"""One error tree for the whole package.

Every error fedlearn raises on purpose descends from :class:`FedlearnError`, and each also
subclasses the builtin it resembles, so ``except ValueError`` keeps working for callers who
do not know about us. The CLI turns any ``FedlearnError`` into one line and ``exit_code``.

::

    FedlearnError
    ├── ConfigError(ValueError)          a config, argument or TOML file is wrong
    ├── ValidationError(ValueError)      a received update breaks the expected spec
    ├── SchemaError(ValueError)          input rows do not match a model's or dataset's declared columns
    ├── LimitExceeded(ValueError)        a request is over one of its bounds (bytes, rows)
    ├── CodecError(ValueError)           bytes on the wire cannot be decoded
    ├── TrainerError(RuntimeError)       a node's local training or evaluation failed
    ├── PrivacyError(PermissionError)    a node refuses: a privacy threshold is not met
    │   └── BudgetExhausted              a DP run stopped: its next round would exceed the ε budget
    ├── SecureAggregationError(ValueError)
    │                                    a secure-aggregation message fails a cryptographic check
    │                                    (bad signature, tampered ciphertext, too few shares)
    ├── QuorumError(RuntimeError)        too few nodes were available or replied
    ├── RunStopped                       an operator stopped a run between two rounds
    ├── StoreError(RuntimeError)         the state store is unreachable, corrupt or refuses an operation
    ├── NotFoundError(LookupError)       a named run, node or blob does not exist
    ├── CoordinatorUnavailable(ConnectionError)
    │                                    the coordinator's HTTP API cannot be reached or failed
    └── DeadlineExceeded(TimeoutError)   a wait ran past its deadline
        └── FleetBusy                    the nodes stayed busy with another user for too long
"""

from __future__ import annotations


class FedlearnError(Exception):
    """Root of every error fedlearn raises on purpose."""

    exit_code: int = 1


class ConfigError(FedlearnError, ValueError):
    """A configuration value, argument or file is invalid; the message names it."""

    exit_code = 2


class ValidationError(FedlearnError, ValueError):
    """A received update does not match what the coordinator expects."""


class SchemaError(FedlearnError, ValueError):
    """Input rows do not fit the declared columns; ``column`` names the first that does not.

    A serving endpoint turns it into a 422 that names the column, a scoring job into one line.
    """

    exit_code = 2

    def __init__(self, message: str, *, column: str = "") -> None:
        super().__init__(message)
        self.column = column


class LimitExceeded(FedlearnError, ValueError):
    """A request is over one of its bounds, such as the rows one scoring request may hold; HTTP answers 413."""

    exit_code = 2


class CodecError(FedlearnError, ValueError):
    """Bytes could not be decoded into parameters or a message."""


class TrainerError(FedlearnError, RuntimeError):
    """A node's trainer failed while fitting or evaluating."""


class PrivacyError(FedlearnError, PermissionError):
    """A node refuses to share something because a privacy guard forbids it."""

    exit_code = 3


class BudgetExhausted(PrivacyError):
    """A differentially private run stopped before a round whose charge would take ε past the budget.

    No such round ran: ``state`` (when the engine raises it) is the run as it stood, ledger included,
    the same state its last checkpoint holds.
    """

    def __init__(self, message: str, *, state: object = None) -> None:
        super().__init__(message)
        self.state = state


class SecureAggregationError(FedlearnError, ValueError):
    """A secure-aggregation message fails a check: a bad signature, a substituted key, a ciphertext
    that does not authenticate, too few or duplicate shares, or a request an honest node must refuse.

    Upstream, the peer or coordinator that sent it is treated as having dropped out of the round.
    """


class QuorumError(FedlearnError, RuntimeError):
    """Fewer nodes were available or replied than the run requires."""

    exit_code = 4


class RunStopped(FedlearnError):
    """Raised between rounds when an operator asked a run to stop."""


class DeadlineExceeded(FedlearnError, TimeoutError):
    """A wait ran past its deadline."""

    exit_code = 4


class FleetBusy(DeadlineExceeded):
    """The nodes stayed busy for longer than a caller was willing to wait for them."""


class StoreError(FedlearnError, RuntimeError):
    """The state store cannot be reached, holds corrupt data, or refuses an operation."""

    exit_code = 5


class NotFoundError(FedlearnError, LookupError):
    """A run, node or other named thing does not exist; the message says how to find valid names."""

    exit_code = 6


class CoordinatorUnavailable(FedlearnError, ConnectionError):
    """The coordinator's HTTP API could not be reached or answered with a server error."""

    exit_code = 7
