"""The library's exceptions. Every failure to read a file raises a subclass of DCFormatError."""
from __future__ import annotations


class DCFormatError(Exception):
    """Base class of every error dcformat raises for a file or for bad input to a writer.

    ``path``: the file the error concerns, when it was opened by path (or from a named file
    object); its message then starts with that path, as ``PATH: what is wrong``.
    """

    path: str | None = None


def name_path(exc: DCFormatError, path: str | None) -> DCFormatError:
    """Lead ``exc``'s message with ``path`` (once; kept as ``exc.path``) and return it."""
    if path is not None and exc.path is None and not isinstance(exc, ClosedFileError):
        exc.path = path
        exc.args = (f"{path}: {exc}", *exc.args[1:])
    return exc


class CorruptFileError(DCFormatError):
    """The bytes break a rule of the spec (spec §1: 'the data is corrupted')."""


class TruncatedFileError(CorruptFileError):
    """The file or a structure inside it ends early."""


class BadMagicError(CorruptFileError):
    """The file does not start (or end) with the dcf magic."""


class UnsupportedVersionError(DCFormatError):
    """The file's major version is not one this library implements."""


class ChecksumError(CorruptFileError):
    """A CRC-32 stored in the file does not match the bytes it covers."""


class OffsetError(CorruptFileError):
    """A stream lies outside the data section, overlaps another, or leaves a hole."""


class LimitExceededError(CorruptFileError):
    """A declared size is over a limit of the spec or of this reader."""


class HuffmanTableError(CorruptFileError):
    """A Huffman table is invalid: Kraft's equality broken, a code too long, no symbol."""


class CountMismatchError(CorruptFileError):
    """Declared counts do not add up (chunks, row counts, entries, decoded lengths)."""


class EncodingError(DCFormatError, ValueError):
    """A writer was given something it cannot encode (bad array, bad option, misuse)."""


class EncodingTypeError(EncodingError, TypeError):
    """A writer was given an object of the wrong type: a name that is not a str, a value that is
    not an array (or is one of a dtype the format lacks)."""


class ClosedFileError(DCFormatError, ValueError):
    """A reader (or a slice of one) was used after it was closed, as when its ``with`` block ends."""
