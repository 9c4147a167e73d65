"""Status codes shared with firmware_lib/modelota/status.h (same numbers, same names)."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """0 is success; every failure is negative. Never renumber: only append."""

    Ok = 0
    BadMagic = -1
    UnsupportedVersion = -2
    BadHeaderCrc = -3
    Unsupported = -4
    WrongModel = -5
    WrongSize = -6
    Rollback = -7
    AlreadyCurrent = -8
    WrongBase = -9
    TooLarge = -10
    BadChunk = -11
    BadSequence = -12
    OutOfBounds = -13
    ChunkCrc = -14
    LayoutMismatch = -15
    DigestMismatch = -16
    Truncated = -17
    TrailingData = -18
    Aborted = -19
    Timeout = -20
    StorageIo = -21
    BadState = -22
    InvalidArgument = -23
    BadSignature = -24
    Unsigned = -25


class ModelOTAError(Exception):
    """An operation failed with a ModelOTA status."""

    def __init__(self, status: Status, message: str = "") -> None:
        self.status = Status(status)
        text = f"{self.status.name} ({int(self.status)})"
        super().__init__(f"{text}: {message}" if message else text)


class CliError(Exception):
    """A user-facing failure: one line, which the ``modelota`` command prints
    as ``modelota: error: ...`` (exit code 1). Library code raises it for
    mistakes in what the user gave (a missing file, a port that cannot be
    opened); it lives here so the library never imports the CLI."""
