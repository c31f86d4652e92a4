"""What the packer stores beside the tensors (format 1.1, spec §4.6): a model folder's other files
as attachments, and tied tensors once, with aliases; and how ``dcunpack`` writes them back.

- :func:`folder_attachments` picks the files of a Hugging Face model folder that travel inside
  the .dcf (configuration, tokenizer, generation config: ``*.json``, ``*.txt``, ``*.model`` and
  the other tokenizer formats), by name; the rest are listed for a note (``--attach`` adds any).
- :class:`TieFinder` recognises a tensor already packed: the same storage (torch inputs), or the
  same bits with the same dtype and shape, so that it is compressed and stored once.
- :func:`write_attachments` writes a file's attachments into a folder, each name checked again by
  the spec's rules and the path checked to stay inside the folder.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ..errors import CorruptFileError, DCFormatError
from ..extensions import attachment_name_problem, attachment_path

ATTACH_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".vocab", ".spm", ".bpe", ".merges", ".py", ".md",
                   ".jinja", ".yaml", ".yml")
"""Suffixes of the files of a model folder that are packed as attachments without being named:
configuration and tokenizer files (``config.json``, ``tokenizer.json``, ``vocab.txt``,
``sentencepiece.bpe.model``, ``tokenizer.model``, ``merges.txt``, chat templates), the model card
and custom code. Weights and their indexes are never attachments (they are the tensors)."""
MAX_AUTO_ATTACHMENT_BYTES = 64 * 2**20
"""A folder file larger than this is not attached unless it is named (``--attach``): a large
unknown file is more likely data than configuration."""


def folder_attachments(folder: str, files: list[str]) -> tuple[list[str], list[str]]:
    """Of ``files`` (paths relative to ``folder``, ``/``-separated: a source's other files), the
    ones packed as attachments and the ones left out (by suffix or size, or a name no dcf file can
    hold)."""
    chosen, left = [], []
    for rel in files:
        path = os.path.join(folder, *rel.split("/"))
        ok = (rel.lower().endswith(ATTACH_SUFFIXES) and not rel.endswith(".index.json")
              and attachment_name_problem(rel) is None and os.path.getsize(path) <= MAX_AUTO_ATTACHMENT_BYTES)
        (chosen if ok else left).append(rel)
    return chosen, left


def attach_name(path: str) -> str:
    """The attachment name of a file the user names (``--attach FILE``): its base name."""
    name = os.path.basename(os.path.normpath(path))
    problem = attachment_name_problem(name)
    if problem is not None:
        raise DCFormatError(f"--attach {path!r}: the name {name!r} {problem}")
    return name


class TieFinder:
    """Remembers the tensors packed so far, to find a tensor that is one of them again.

    A tensor is *tied* to an earlier one when both have the same dtype and shape and the same
    bits (SHA-256 of the little-endian bytes; a torch input's tensors that share storage always
    are). ``target(name, array)`` returns the earlier tensor's name, or None (and remembers it).
    """

    def __init__(self) -> None:
        self._seen: dict[tuple, str] = {}

    @staticmethod
    def key(array: np.ndarray) -> tuple:
        array = np.asarray(array)  # (ascontiguousarray would make a scalar 1-d)
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        digest = hashlib.sha256(array.reshape(-1).view(np.uint8)).digest() if array.size else b""
        return (array.dtype.str, tuple(array.shape), digest)

    def target(self, name: str, array: np.ndarray, key: tuple | None = None) -> str | None:
        key = self.key(array) if key is None else key
        if not key[1] or np.prod(key[1]) == 0:  # scalars and empty tensors: nothing to save
            return None
        earlier = self._seen.get(key)
        if earlier is None:
            self._seen[key] = name
        return earlier


def write_attachments(reader, folder: str, *, force: bool = False, names=None, taken=()) -> list[str]:
    """Write the attachments of ``reader`` (a :class:`~dcformat.reader.DCFReader`) into ``folder``
    (created if needed): each decoded and CRC-checked before a byte is written, its name checked
    (:func:`dcformat.extensions.attachment_path`: never outside ``folder``). An existing file is
    replaced only with ``force``, and never one written a moment ago: ``taken`` (paths already
    written, the weights) or an earlier attachment under a name that is the same file on this file
    system (``Config.json`` and ``config.json`` where case is ignored: macOS, Windows), which is
    refused with :class:`~dcformat.errors.CorruptFileError` naming both. Returns the names written."""
    os.makedirs(folder, exist_ok=True)
    written = []
    identities: dict[tuple[int, int], str] = {}
    for path in taken:
        if os.path.exists(path):
            st = os.stat(path)
            identities[(st.st_dev, st.st_ino)] = os.path.basename(path)
    for name in (reader.attachments() if names is None else names):
        path = attachment_path(folder, name)
        data = reader.get_attachment(name)
        if os.path.lexists(path):
            if os.path.exists(path):
                st = os.stat(path)
                earlier = identities.get((st.st_dev, st.st_ino))
                if earlier is not None:
                    raise CorruptFileError(f"{earlier!r} and the attachment {name!r} are one file in {folder!r} (a "
                                           f"file system that ignores case?): {name!r} would replace {earlier!r}")
            if not force:
                raise FileExistsError(f"{path!r} exists (attachment {name!r}); --force replaces it")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        attachment_path(folder, name)  # again, now that its folders exist (a link made meanwhile)
        with open(path, "wb") as handle:
            handle.write(data)
            st = os.fstat(handle.fileno())
        identities[(st.st_dev, st.st_ino)] = name
        written.append(name)
    return written


def name_collision(names) -> str | None:
    """Why two of ``names`` (attachment names) cannot both be written into a folder, naming both, or
    None: they would be one file on a file system that ignores case or normalizes Unicode (macOS,
    Windows): equal after NFD normalization and case folding; or one is a file where the other
    needs a folder (``a`` and ``A/b``, or ``a`` and ``a/b``)."""
    import unicodedata

    def fold(text):
        return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).casefold())

    files: dict[str, str] = {}
    folders: dict[str, str] = {}
    for name in names:
        key = fold(name)
        if key in files:
            return (f"attachments {files[key]!r} and {name!r} differ only in case (or Unicode form): on a file "
                    "system that ignores case (macOS, Windows) they would be one file; rename one")
        if key in folders:
            return f"attachment {name!r} would be a file where {folders[key]!r} needs a folder; rename one"
        parts = key.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in files:
                return f"attachment {files[prefix]!r} would be a file where {name!r} needs a folder; rename one"
            folders.setdefault(prefix, name)
        files[key] = name
    return None


def pack_attachments(src, attach=()) -> tuple[list[tuple[str, bytes]], list[str]]:
    """What :func:`dcformat.pack.packer.pack` stores as attachments for the source ``src``: a model
    folder's configuration and tokenizer files (:func:`folder_attachments`), the attachments the
    source makes itself (``src.attachments``, name -> bytes: an ONNX model's graph), a dcf
    source's own attachments, and the files named in ``attach`` (under their base names). Returns
    ``([(name, bytes)], notes)``; a name given twice, or a file that cannot be read, is an error."""
    from .errors import PackError

    items: dict[str, bytes] = {}
    notes: list[str] = []
    files = list(getattr(src, "files", None) or [])
    if files and src.path:
        folder = src.path if os.path.isdir(src.path) else os.path.dirname(src.path)
        chosen, left = folder_attachments(folder, files)
        for rel in chosen:
            with open(os.path.join(folder, *rel.split("/")), "rb") as handle:
                items[rel] = handle.read()
        if chosen:
            notes.append(f"{len(chosen)} other files of the folder are stored inside the .dcf, byte-exact "
                         f"({_summary(chosen)}); dcunpack to a folder writes them back")
        if left:
            notes.append(f"{len(left)} files of the folder are not stored ({_summary(left)}): not configuration "
                         "or tokenizer files by their names, or larger than 64 MiB; --attach FILE stores one")
    made = getattr(src, "attachments", None)  # attachments a source makes itself (an ONNX graph)
    if isinstance(made, dict):
        items.update(made)
    reader = getattr(src, "_reader", None)
    if reader is not None and hasattr(reader, "attachments"):  # a dcf source packed again
        for name in reader.attachments():
            items[name] = reader.get_attachment(name)
    for path in attach or ():
        name = attach_name(path)
        if name in items:
            raise PackError(f"--attach {path!r}: the file holds an attachment named {name!r} already")
        try:
            with open(path, "rb") as handle:
                items[name] = handle.read()
        except OSError as exc:
            raise PackError(f"--attach {path!r}: {exc.strerror or exc}") from None
    clash = name_collision(items)
    if clash is not None:
        raise PackError(clash)
    return list(items.items()), notes


def _summary(names: list[str], shown: int = 4) -> str:
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")
