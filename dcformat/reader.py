"""Decode tensors from a dcf file: ``DCFReader`` (lazy, memory-mapped) and ``decode_tensor``.

Every value read from the file is checked before a kernel indexes with it: stream bounds and
checksums here, payload lengths in each codec, element bounds right after decoding.

Decoding is planned, then run: :func:`plan_tensor` allocates a tensor's output and makes one job
per chunk, each of which decodes its streams straight into its own slice of the output (codebook
lookup fused into the CSR scatter or done in one pass for dense chunks). The jobs of one tensor,
or of a whole file (:meth:`DCFReader.get_tensors`), run on several threads
(:mod:`dcformat.parallel`).
"""
from __future__ import annotations

import bisect
import io
import mmap
import os
import stat
from collections.abc import Iterator
from functools import partial, wraps
from typing import IO, Union, cast

import numpy as np

from .checksum import crc32
from .codecs import get_codec
from .constants import DEFAULT_MAX_ATTACHMENT_BYTES, DEFAULT_MAX_TENSOR_BYTES, DEFAULT_MAX_TOTAL_BYTES, DTYPE_SIZE, ELEMENT_DTYPE, CodebookDType, Codec, DType, Layout, Role, ValueCoding
from .errors import ChecksumError, ClosedFileError, CorruptFileError, CountMismatchError, DCFormatError, LimitExceededError, name_path
from .extensions import AttachmentInfo, decode_attachment
from .index_reader import Header, read_header
from .kernels import plan_for
from .parallel import resolve_threads, run_jobs
from .slices import TensorSlice
from .structures import StreamInfo, TensorInfo, element_bound, element_size, numpy_dtype
from .tensors import CodebookTensor


def decode_stream(buffer, stream: StreamInfo, tensor: TensorInfo, *, verify: bool = True,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Decode one stream of ``tensor`` to its elements, checked against the role's bound.

    ``out``: where to write them (see the codecs' ``decode``); returned."""
    payload = memoryview(buffer)[stream.offset:stream.offset + stream.length]
    if verify and crc32(payload) != stream.crc32:
        raise ChecksumError(f"{tensor.name!r}: {stream.role.value} stream checksum mismatch")
    size = element_size(stream.role, tensor)
    bound = element_bound(stream.role, tensor)
    if stream.count == 0:
        return np.zeros(0, ELEMENT_DTYPE[size]) if out is None else out
    elements = get_codec(stream.codec).decode(payload, stream.count, size, stream.param, bound, out=out)
    if elements.shape != (stream.count,) or elements.dtype != ELEMENT_DTYPE[size]:
        raise CountMismatchError(f"{tensor.name!r}: {stream.role.value} stream decoded to a wrong size")
    if bound is not None and stream.codec != Codec.HUFFMAN and elements.max() >= bound:
        raise CorruptFileError(
            f"{tensor.name!r}: {stream.role.value} element {int(elements.max())} exceeds its bound {bound - 1}"
        )
    return elements


def _codebook_bits(buffer, tensor: TensorInfo, verify: bool) -> np.ndarray:
    """The codebook converted to the tensor's dtype, as unsigned bit patterns (spec §7.2)."""
    from .conversion import convert_codebook  # NaNs by the spec's bit rules, whatever the CPU

    raw = decode_stream(buffer, tensor.codebook, tensor, verify=verify)
    return convert_codebook(raw, tensor.codebook_dtype, tensor.dtype)


def check_tensor_size(tensor: TensorInfo, max_tensor_bytes: int) -> None:
    size = tensor.numel * DTYPE_SIZE[tensor.dtype]
    if size > max_tensor_bytes:
        raise LimitExceededError(
            f"{tensor.name!r} decodes to {size} bytes, over this reader's limit of {max_tensor_bytes}"
        )


def plan_tensor(buffer, tensor: TensorInfo, *, verify: bool = True,
                max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES, memory: np.ndarray | None = None):
    """Allocate ``tensor``'s output and the jobs that fill it: returns ``(array, jobs)``.

    ``jobs`` is a list of ``(cost, callable)``, one per chunk, for :func:`dcformat.parallel.run_jobs`;
    each writes every element of its own slice of ``array`` (so ``array`` need not be zeroed), and
    ``array`` holds the tensor once all have run without error. The codebook is decoded here.
    ``memory``: optional uint8 array of exactly the tensor's bytes, aligned for its dtype, to
    decode into (else a new array).
    """
    check_tensor_size(tensor, max_tensor_bytes)
    bits_dtype = ELEMENT_DTYPE[DTYPE_SIZE[tensor.dtype]]
    out_bits = np.empty(tensor.numel, bits_dtype) if memory is None else memory.view(bits_dtype)
    table = _codebook_bits(buffer, tensor, verify) if tensor.value_coding == ValueCoding.CODEBOOK else None
    cols = tensor.cols if tensor.layout == Layout.CSR else 1
    jobs = []
    for chunk in tensor.chunks:
        cost = chunk.extent * cols * out_bits.itemsize + 4 * sum(s.length for s in chunk.streams)
        jobs.append((cost, partial(_decode_chunk, buffer, tensor, chunk, table, out_bits, verify)))
    return out_bits.view(numpy_dtype(tensor.dtype)).reshape(tensor.shape), jobs


def decode_tensor(buffer, tensor: TensorInfo, *, verify: bool = True,
                  max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES, threads: int | None = None) -> np.ndarray:
    """Decode ``tensor`` (an index entry of the file held in ``buffer``) to a numpy array.

    Its chunks decode on ``threads`` threads (None: :func:`dcformat.parallel.default_threads`)."""
    array, jobs = plan_tensor(buffer, tensor, verify=verify, max_tensor_bytes=max_tensor_bytes)
    plan_for(tensor.numel)
    run_jobs(jobs, threads)
    return array


def plan_region(buffer, tensor: TensorInfo, low: int, high: int, *, verify: bool = True,
                max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES):
    """Plan the decoding of only the chunks of ``tensor`` that hold its C-order element positions
    ``low`` to ``high - 1``: returns ``(values, base, jobs)``, where ``values`` (flat, the tensor's
    dtype) will hold the elements from position ``base`` on, once ``jobs`` have run (as
    :func:`plan_tensor`'s). The chunks are consecutive (spec §4.4): element ranges of a DENSE
    tensor, row ranges of a CSR one. ``max_tensor_bytes`` bounds what they decode to."""
    if not 0 <= low < high <= tensor.numel:
        raise ValueError(f"{tensor.name!r}: no elements {low}..{high - 1} in a tensor of {tensor.numel}")
    unit = tensor.cols if tensor.layout == Layout.CSR else 1  # elements per row (CSR) or 1 (DENSE)
    first_unit, last_unit = low // unit, (high - 1) // unit
    starts = [chunk.start for chunk in tensor.chunks]
    chunks = tensor.chunks[bisect.bisect_right(starts, first_unit) - 1:bisect.bisect_right(starts, last_unit)]
    base_unit = chunks[0].start
    count = (chunks[-1].start + chunks[-1].extent - base_unit) * unit
    itemsize = DTYPE_SIZE[tensor.dtype]
    if count * itemsize > max_tensor_bytes:
        raise LimitExceededError(f"{tensor.name!r}: the chunks holding this slice decode to {count * itemsize} "
                                 f"bytes, over this reader's limit of {max_tensor_bytes}")
    out_bits = np.empty(count, ELEMENT_DTYPE[itemsize])
    table = _codebook_bits(buffer, tensor, verify) if tensor.value_coding == ValueCoding.CODEBOOK else None
    jobs = []
    for chunk in chunks:
        cost = chunk.extent * unit * itemsize + 4 * sum(s.length for s in chunk.streams)
        moved = chunk._replace(start=chunk.start - base_unit)  # its place in out_bits
        jobs.append((cost, partial(_decode_chunk, buffer, tensor, moved, table, out_bits, verify)))
    return out_bits.view(numpy_dtype(tensor.dtype)), base_unit * unit, jobs


ARENA_ALIGNMENT = 64
"""Alignment of each tensor in the memory :func:`decode_tensors` shares between them."""


def decode_tensors(buffer, tensors, *, verify: bool = True, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
                   threads: int | None = None,
                   max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> dict[str, np.ndarray]:
    """Decode several tensors at once, the chunks of all of them sharing the threads.

    The arrays are views of one allocation (each 64-byte aligned), which the operating system can
    back with huge pages: first-touch page faults cost as much as decoding otherwise. That memory
    is freed when the last of the arrays is.
    """
    tensors = list(tensors)
    for tensor in tensors:
        check_tensor_size(tensor, max_tensor_bytes)
    sizes = [tensor.numel * DTYPE_SIZE[tensor.dtype] for tensor in tensors]
    if sum(sizes) > max_total_bytes:
        raise LimitExceededError(
            f"the tensors decode to {sum(sizes)} bytes together, over this reader's limit of {max_total_bytes} "
            "(max_total_bytes)"
        )
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    arena = np.empty(total + ARENA_ALIGNMENT, np.uint8)
    skip = -arena.ctypes.data % ARENA_ALIGNMENT
    arrays, jobs = {}, []
    for tensor, offset, size in zip(tensors, offsets, sizes):
        memory = arena[skip + offset:skip + offset + size]
        arrays[tensor.name], tensor_jobs = plan_tensor(buffer, tensor, verify=verify,
                                                      max_tensor_bytes=max_tensor_bytes, memory=memory)
        jobs.extend(tensor_jobs)
    plan_for(sum(tensor.numel for tensor in tensors))
    run_jobs(jobs, threads)
    return arrays


def _decode_chunk(buffer, tensor, chunk, table, out_bits, verify) -> None:
    if tensor.layout == Layout.DENSE:
        region = out_bits[chunk.start:chunk.start + chunk.extent]
        if table is None:
            decode_stream(buffer, chunk.streams[0], tensor, verify=verify, out=region)
            return
        from .kernels import for_count

        symbols = decode_stream(buffer, chunk.streams[0], tensor, verify=verify)
        bad = for_count("elements", len(symbols)).take(table, symbols, region)
        if bad >= 0:
            raise CorruptFileError(f"{tensor.name!r}: symbol {int(symbols[bad])} is outside the codebook")
        return
    from .csr import csr_decode

    counts_stream, gaps_stream, values_stream = chunk.streams
    row_counts = decode_stream(buffer, counts_stream, tensor, verify=verify)
    if int(row_counts.sum(dtype=np.uint64)) != gaps_stream.count:
        raise CountMismatchError(
            f"{tensor.name!r}: row counts add up to {int(row_counts.sum(dtype=np.uint64))}, "
            f"but the chunk has {gaps_stream.count} entries"
        )
    gaps = decode_stream(buffer, gaps_stream, tensor, verify=verify)
    values = decode_stream(buffer, values_stream, tensor, verify=verify)
    cols = tensor.cols
    start = chunk.start * cols
    region = out_bits[start:start + chunk.extent * cols]
    csr_decode(row_counts, gaps, values, chunk.extent, cols, out=region, table=table)


def decode_codebook_tensor(buffer, tensor: TensorInfo, *, verify: bool = True,
                           max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> CodebookTensor:
    """Decode a CODEBOOK tensor to its codebook and per-element indices (-1 for a zero element).

    Elements that a file stores with a symbol whose codebook value is zero (fillers, or a dense
    zero symbol) come back as that symbol's index, not -1; positions with no entry come back -1.
    """
    if tensor.value_coding != ValueCoding.CODEBOOK:
        raise DCFormatError(f"{tensor.name!r} is not stored with a codebook")
    if tensor.numel * 4 > max_tensor_bytes:  # what is allocated: int32 indices, whatever the dtype
        raise LimitExceededError(f"{tensor.name!r} decodes to {tensor.numel * 4} bytes of indices, over "
                                 f"this reader's limit of {max_tensor_bytes}")
    raw = decode_stream(buffer, tensor.codebook, tensor, verify=verify)
    codebook = raw.view(numpy_dtype(DType(tensor.codebook_dtype))).copy()  # codebook dtypes have DType ids
    index_dtype = np.int32
    indices = np.full(tensor.numel, -1, index_dtype)
    symbols_plus_one = np.arange(1, tensor.codebook_size + 1, dtype=np.uint32)
    for chunk in tensor.chunks:
        if tensor.layout == Layout.DENSE:
            values = decode_stream(buffer, chunk.streams[0], tensor, verify=verify)
            indices[chunk.start:chunk.start + chunk.extent] = values
            continue
        from .csr import csr_decode

        counts_stream, gaps_stream, values_stream = chunk.streams
        row_counts = decode_stream(buffer, counts_stream, tensor, verify=verify)
        if int(row_counts.sum(dtype=np.uint64)) != gaps_stream.count:
            raise CountMismatchError(f"{tensor.name!r}: row counts do not add up to the entries")
        gaps = decode_stream(buffer, gaps_stream, tensor, verify=verify)
        symbols = decode_stream(buffer, values_stream, tensor, verify=verify)
        cols = tensor.cols
        region = np.zeros(chunk.extent * cols, np.uint32)
        csr_decode(row_counts, gaps, symbols_plus_one[symbols], chunk.extent, cols, out=region)
        indices[chunk.start * cols:(chunk.start + chunk.extent) * cols] = region.astype(np.int64) - 1
    return CodebookTensor(codebook, indices.reshape(tensor.shape), numpy_dtype(tensor.dtype))


Source = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]", IO[bytes], bytearray, memoryview]
"""What :func:`dcformat.open` reads: a path, a binary file object, or a buffer holding the file."""


def _naming_file(method):
    """A reader method whose errors (a corrupted stream, a limit) lead with the file's path."""
    @wraps(method)
    def named(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except DCFormatError as exc:
            name_path(exc, self.path)
            raise
    return named


class DCFReader:
    """A dcf file opened lazily: the index is parsed at once, tensors are decoded on request.

    Use as a context manager (``with dcformat.open(path) as f: f.get_tensor(name)``); after
    :meth:`close` every call raises :class:`~dcformat.errors.ClosedFileError`. ``source``: a path
    (str or ``os.PathLike``: the file is memory-mapped, and a tensor's streams are read only when
    that tensor is asked for), a binary file object (a regular file is memory-mapped from its
    current position, anything else read to its end; it stays open, the caller's), or a buffer
    (``bytes``, ``bytearray``, ``memoryview``) holding the file's contents. ``verify``: check
    every CRC-32. ``max_tensor_bytes``, ``max_total_bytes``: what one tensor, and one eager load,
    may decode to. ``threads``: decoding threads (None: every CPU, or ``DCFORMAT_THREADS``).
    ``max_attachment_bytes``: the largest attachment :meth:`get_attachment` decodes (1 GiB).

    A file of version 1.1 may hold aliases (spec §4.6.2: tied tensors stored once), listed among
    the tensors: :meth:`keys` gives the tensor entries' names, then the aliases', and
    ``get_tensor(alias)`` decodes its target; and attachments (spec §4.6.1: files such as a
    model's ``config.json``), listed by :meth:`attachments` and read by :meth:`get_attachment`.
    """

    def __init__(self, source: Source, *, verify: bool = True, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
                 threads: int | None = None, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                 max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> None:
        self._file: IO[bytes] | None = None
        self._mmap: mmap.mmap | None = None
        self._views: list[memoryview] = []
        self._closed = False
        self.path: str | None = None
        """The file's path (None for a buffer, or a file object without a name)."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._buffer = memoryview(source)
        elif hasattr(source, "read"):
            handle = cast(IO[bytes], source)
            name = getattr(handle, "name", None)
            self.path = name if isinstance(name, str) else None
            self._buffer = self._from_file_object(handle)
        else:
            try:
                path = os.fspath(cast("os.PathLike[str]", source))
            except TypeError:
                raise TypeError(f"a dcf file is read from a path (str, bytes, os.PathLike), a binary file object "
                                f"or a buffer, not {type(source).__name__}") from None
            self.path = os.fsdecode(path)
            self._file = file = open(self.path, "rb")
            try:
                self._buffer = self._from_file_object(file)  # mapped; a pipe or a device is read
            except BaseException:
                file.close()
                raise
        self.verify = verify
        self.max_tensor_bytes = max_tensor_bytes
        self.max_total_bytes = max_total_bytes
        self.max_attachment_bytes = max_attachment_bytes
        try:
            self.threads = resolve_threads(threads)
            self.header: Header = read_header(self._buffer, check_crc=verify)
        except BaseException as exc:
            self.close()
            if isinstance(exc, DCFormatError):
                name_path(exc, self.path)
            raise

    def _map(self, fd: int, position: int) -> memoryview:
        if os.fstat(fd).st_size <= position:
            return memoryview(b"")
        self._mmap = mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        whole = memoryview(mapping)
        if position == 0:
            return whole
        self._views.append(whole)
        return whole[position:]

    def _from_file_object(self, handle: IO[bytes]) -> memoryview:
        if isinstance(handle, io.TextIOBase) or isinstance(handle.read(0), str):
            raise TypeError("a dcf file is read from a binary file (opened with 'rb'), not a text file")
        try:
            fd = handle.fileno()
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            regular = False
        if regular:
            return self._map(fd, handle.tell())
        data = handle.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"the file object's read() gave {type(data).__name__}, not bytes")
        return memoryview(data)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the ``with`` block ended)."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            where = f" {self.path!r}" if self.path else ""
            raise ClosedFileError(f"the dcf file{where} is closed: read its tensors inside the 'with' block "
                                  "(or before close())")

    # -- the safetensors-like surface -------------------------------------------------------
    def keys(self) -> list[str]:
        """The tensors' names, in file order, then the aliases' (spec §4.6.2), in record order."""
        self._check_open()
        return [*self.header.tensors, *self.header.aliases]

    def aliases(self) -> dict[str, str]:
        """Each alias (a second name of a tensor entry, spec §4.6.2) and its target's name."""
        self._check_open()
        return dict(self.header.aliases)

    def attachments(self) -> list[str]:
        """The names of the file's attachments (spec §4.6.1), in record order."""
        self._check_open()
        return list(self.header.attachments)

    def attachment_info(self, name: str) -> AttachmentInfo:
        """The record of attachment ``name``: its size and its stream (no data is read)."""
        self._check_open()
        try:
            return self.header.attachments[name]
        except KeyError:
            raise KeyError(f"no attachment named {name!r} in this file") from None

    @_naming_file
    def get_attachment(self, name: str) -> bytes:
        """The bytes of attachment ``name``, exactly as they were stored (CRC-32 checked unless
        ``verify=False``; at most ``max_attachment_bytes``)."""
        return decode_attachment(self._buffer, self.attachment_info(name), verify=self.verify,
                                 max_bytes=self.max_attachment_bytes)

    def metadata(self) -> dict[str, str]:
        """The file's metadata (str -> str), as given to the writer."""
        self._check_open()
        return dict(self.header.metadata)

    def info(self, name: str) -> TensorInfo:
        """The index entry of tensor ``name``: dtype, shape, layout, chunks and streams (no data is
        read). For an alias, its target's entry (whose ``name`` is the target's)."""
        self._check_open()
        try:
            return self.header.tensors[self.header.aliases.get(name, name)]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in this file") from None

    def tensors_info(self) -> list[TensorInfo]:
        """The index entries of every tensor, in file order."""
        self._check_open()
        return list(self.header.tensors.values())

    @_naming_file
    def get_tensor(self, name: str) -> np.ndarray:
        """Decode tensor ``name`` to a new numpy array (its chunks on the reader's threads)."""
        return decode_tensor(self._buffer, self.info(name), verify=self.verify, max_tensor_bytes=self.max_tensor_bytes,
                             threads=self.threads)

    @_naming_file
    def get_tensors(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Decode the tensors ``names`` (default: all, in file order, aliases included) at once,
        on all threads.

        The arrays are views of one allocation, freed with the last of them. An alias and its
        target are decoded once: both names map to the same array object."""
        names = self.keys() if names is None else list(names)
        infos = {}
        for name in names:
            info = self.info(name)
            infos.setdefault(info.name, info)
        arrays = decode_tensors(self._buffer, infos.values(), verify=self.verify,
                                max_tensor_bytes=self.max_tensor_bytes, threads=self.threads,
                                max_total_bytes=self.max_total_bytes)
        return {name: arrays[self.header.aliases.get(name, name)] for name in names}

    def get_slice(self, name: str) -> TensorSlice:
        """Tensor ``name``, to be read in parts as in ``safetensors``: ``f.get_slice(name)[a:b]``
        decodes only the chunks holding rows ``a`` to ``b - 1`` (:mod:`dcformat.slices`)."""
        return TensorSlice(self, self.info(name))

    @_naming_file
    def get_codebook_tensor(self, name: str) -> CodebookTensor:
        """Tensor ``name`` as its codebook and per-element indices (it must be stored with a codebook)."""
        return decode_codebook_tensor(
            self._buffer, self.info(name), verify=self.verify, max_tensor_bytes=self.max_tensor_bytes
        )

    @_naming_file
    def _decode_range(self, info: TensorInfo, low: int, high: int) -> tuple[np.ndarray, int]:
        """Decode the chunks of ``info`` that hold positions ``low..high - 1`` (:func:`plan_region`)."""
        self._check_open()
        values, base, jobs = plan_region(self._buffer, info, low, high, verify=self.verify,
                                         max_tensor_bytes=self.max_tensor_bytes)
        plan_for(len(values))
        run_jobs(jobs, self.threads)
        return values, base

    def __contains__(self, name: object) -> bool:
        self._check_open()
        return name in self.header.tensors or name in self.header.aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        self._check_open()
        return len(self.header.tensors) + len(self.header.aliases)

    @_naming_file
    def verify_all(self) -> None:
        """Decode every tensor and every attachment, checking every checksum and every rule; raise
        on the first fault."""
        self._check_open()
        for tensor in self.header.tensors.values():
            decode_tensor(self._buffer, tensor, verify=True, max_tensor_bytes=self.max_tensor_bytes,
                          threads=self.threads)
        for attachment in self.header.attachments.values():
            decode_attachment(self._buffer, attachment, verify=True, max_bytes=self.max_attachment_bytes)

    def release_pages(self) -> None:
        """Let the operating system unmap the file's pages from this process (they stay in the page
        cache, and are mapped again when read). A reader streaming through a file larger than
        memory calls this after each tensor, so its resident memory stays what it decodes."""
        if self._mmap is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._mmap.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Release the file (its mapping, and the file this reader opened); calls after it raise
        :class:`~dcformat.errors.ClosedFileError`. Closing twice does nothing."""
        self._closed = True
        closed = memoryview(b"")
        closed.release()  # decoding after close raises ValueError, as a closed file does (not a bad CRC)
        buffer, self._buffer = getattr(self, "_buffer", None), closed
        for view in [buffer, *self._views]:
            if view is not None:
                view.release()
        self._views = []
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # a view is still alive (in a traceback, say): the mapping closes when it goes
            self._mmap = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> DCFReader:
        """The reader itself; the ``with`` block's end closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
