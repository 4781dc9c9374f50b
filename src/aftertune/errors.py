"""Errors a user can cause. The CLI prints them as one paragraph and exits non-zero, with no traceback."""

from __future__ import annotations


class AftertuneError(Exception):
    """A problem with the user's input or environment; the message says where it is and how to fix it."""

    exit_code = 2


class InputError(AftertuneError):
    """A file, field or argument the user gave is malformed."""


class ModelNotFoundError(AftertuneError):
    """The model named on the command line cannot be found or loaded."""


class EndpointError(AftertuneError):
    """An HTTP model endpoint is unreachable or answers with something unusable."""

    exit_code = 3

    def __init__(self, message: str, kind: str = "endpoint error") -> None:
        super().__init__(message)
        #: the cause in a few words ("HTTP 429", "timeout", "missing logprobs"), for counting failures
        self.kind = kind


class StoreError(AftertuneError):
    """The results store cannot be opened or written (corrupt, foreign, or the disk is full)."""

    exit_code = 4
