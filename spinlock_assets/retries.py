"""Retries for transient failures only.

``RETRY`` is the ``RetryPolicy`` of the steps that hold a device for long (``simulate``, the
tokenizer's ``feature_matrix`` and ``tokenizer``): an out-of-memory error on a device or a lost
worker is worth another try after a pause. Bad input is not: :func:`bad_input_fails_once` turns
the library's input errors into a ``dg.Failure(allow_retries=False)``, so a missing file or an
invalid config fails at once with its message instead of being retried three times.
"""

from contextlib import contextmanager

import dagster as dg

from spinlock_core.config import ConfigError
from spinlock_core.storage.shards import StorageError
from spinlock_core.tokenizer.checkpoint import CheckpointError
from spinlock_core.tokenizer.data import TokenizerDataError

__all__ = ["RETRY", "BAD_INPUT", "bad_input_fails_once"]

#: 2 more tries, 10 s then 20 s later (with jitter), for what may pass: device OOM, lost worker
RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

#: the library's errors about its input: retrying cannot help
BAD_INPUT = (StorageError, ConfigError, TokenizerDataError, CheckpointError)


@contextmanager
def bad_input_fails_once():
    """Re-raise the library's input errors as a non-retryable ``dg.Failure`` with their type and message."""
    try:
        yield
    except BAD_INPUT as e:
        raise dg.Failure(description=f"{type(e).__name__}: {e}", allow_retries=False) from None
