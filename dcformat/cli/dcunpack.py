"""dcunpack: decode a dcf file back to a dense checkpoint.

    dcunpack model.dcf                             model.safetensors (streamed: one tensor in memory at a time)
    dcunpack a.dcf b.dcf                           a.safetensors and b.safetensors
    dcunpack model.dcf -o - | other-tool           safetensors to stdout; - as input reads stdin
    dcunpack model.dcf -o restored.safetensors
    dcunpack model.dcf -o restored.pt              (torch.save: a training checkpoint comes back whole)
    dcunpack model.dcf -o restored.npz             (numpy, no pickles)
    dcunpack model.dcf -o restored/                a model folder: the source's shards and index
    dcunpack model.dcf -o restored/ --max-shard-size 2GB    shards split as save_pretrained splits them
    dcunpack model.dcf -o restored.onnx            an ONNX model (packed from one): graph and initializers
    dcunpack model.dcf -o restored.onnx --external-data     tensors of 1 KiB or more in restored.onnx.data

Every tensor comes back with its name, shape and dtype: raw tensors bit-exact,
weight-shared ones as their codebook values. A .safetensors output is decoded
and written tensor by tensor (the header comes from the dcf index), so memory
holds about one tensor; the file is the one the safetensors package writes. .pt
and .npz outputs hold every tensor in memory before writing. Outputs appear
atomically (temporary file, fsync, rename). A safetensors output carries the
dcf file's metadata (the recipe, the source name) and the source's own
metadata. A directory output (an existing directory, a name ending in /, or one
without a suffix) gets the weights of a model folder: model.safetensors, or
model-00001-of-0000N.safetensors shards and model.safetensors.index.json
(pytorch_model*.bin with --format torch or for a torch source), shaped as the
packed source was unless --max-shard-size splits them anew. A training
checkpoint's nesting, non-tensor entries and DataParallel "module." prefix come
back in a .pt output (--flat: the tensors under their stored names only). A
file packed from an ONNX model comes back as one with -o X.onnx: its graph
(stored as an attachment) with every initializer decoded (--external-data: the
large ones in X.onnx.data, one file beside it, replaced if there). An existing
output is kept unless -f/--force is given. Errors print one line naming the
file and exit with status 1 (2 for bad usage).
"""
from __future__ import annotations

import argparse
import contextlib
import sys

from ..report import sanitize
from ._common import (ERROR_LIMIT, OneLineParser, UsageError, check_overwrite, each, note_first_compile, plural,
                      replace_suffix, run, say)


def default_output(source: str) -> str:
    """``model.dcf`` -> ``model.safetensors`` (beside the input)."""
    return replace_suffix(source, (".dcf",), ".safetensors")


def output_names(inputs, output) -> list[tuple[str, str]]:
    if output is not None and len(inputs) > 1:
        raise UsageError("-o names one output: give one input, or leave -o out (each IN.dcf gets IN.safetensors)")
    if "-" in inputs and output is None:
        raise UsageError("reading stdin (-) needs -o OUT (- for stdout)")
    if output == "-" and sys.stdout.isatty():
        raise UsageError("-o - would write binary safetensors to the terminal; redirect stdout or give -o FILE")
    return [(source, output if output is not None else default_output(source)) for source in inputs]


def check_target(target: str, args) -> None:
    """What :func:`dcformat.pack.unpack` would refuse about an output, as a usage error found before
    any decoding: an unknown suffix (not ``-``, a folder, ``.onnx`` or a checkpoint's), and flags
    that do not apply to it (``--max-shard-size``/``--format`` beside a file, ``--external-data``
    beside anything but ``.onnx``)."""
    from ..pack.checkpoints import output_format
    from ..pack.errors import CheckpointError
    from ..pack.restore import is_folder_output

    folder_flags = args.max_shard_size is not None or args.weights_format is not None
    if target == "-":
        if folder_flags or args.external_data:
            raise UsageError("-o - writes one safetensors file to stdout: --max-shard-size, --format and "
                             "--external-data do not apply")
        return
    onnx, folder = target.lower().endswith(".onnx"), is_folder_output(target)
    if not onnx and not folder:
        try:
            output_format(target)
        except CheckpointError as exc:
            raise UsageError(str(exc)) from None
    if args.external_data and not onnx and not folder:
        raise UsageError("--external-data applies to an .onnx output")
    if onnx and (folder_flags or args.flat):
        raise UsageError("--max-shard-size, --format and --flat do not apply to an .onnx output")
    if not onnx and not folder and folder_flags:
        raise UsageError("--max-shard-size and --format apply to a folder output (-o DIR/)")


def write_safetensors(reader, stream) -> int:
    """The safetensors file of every tensor of ``reader``, written to ``stream`` in order (no seeking,
    one tensor in memory): the bytes :func:`dcformat.pack.unpack` writes to a file. Returns its size."""
    import json
    import struct

    import numpy as np

    from ..pack.safetensors_stream import _RANK, SAFETENSORS_DTYPES
    from ..structures import numpy_dtype

    from ..pack.packer import source_metadata

    metadata = dict(reader.metadata())
    metadata.update(source_metadata(metadata))  # spec §4.1.1, as dcformat.pack.unpack does
    layout = []
    for name in reader.keys():  # format 1.1 aliases too, each as a full tensor (spec §4.6.2)
        info = reader.info(name)._replace(name=name)
        dtype = numpy_dtype(info.dtype)
        code = SAFETENSORS_DTYPES.get(dtype.name)
        if code is None:
            from ..pack.errors import CheckpointError

            raise CheckpointError(f"tensor {info.name!r} has dtype {dtype}, which safetensors cannot hold")
        layout.append((info.name, code, dtype, tuple(info.shape), info.numel * dtype.itemsize))
    layout.sort(key=lambda e: (-_RANK[e[1]], e[0]))
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, code, _, shape, nbytes in layout:
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    stream.write(struct.pack("<Q", len(raw)) + raw)
    for name, _, dtype, _, _ in layout:
        array = np.ascontiguousarray(reader.get_tensor(name))
        stream.write(array.reshape(-1).view(np.uint8).data)
        del array
    stream.flush()
    return 8 + len(raw) + offset


def main(argv=None) -> int:
    parser = OneLineParser(prog="dcunpack", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=__doc__[__doc__.index("Every tensor"):].rstrip())
    parser.add_argument("inputs", nargs="+", metavar="IN.dcf", help="dcf files; - reads one from stdin (with -o)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="a .safetensors (streamed, one tensor in memory at a time), .pt, .pth, .npz or .onnx file "
                             "(these hold every tensor in memory); - writes safetensors to stdout; one input only "
                             "(default: each IN.dcf gives IN.safetensors)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--max-shard-size", metavar="SIZE",
                        help="a folder output's shard size, e.g. 5GB or 500MB (decimal, as save_pretrained; "
                             "GiB binary); default: the source's shards")
    parser.add_argument("--format", dest="weights_format", choices=("safetensors", "torch"),
                        help="a folder output's weights format (default: the source's)")
    parser.add_argument("--flat", action="store_true",
                        help="the tensors under their stored names: no nesting, no non-tensor entries, "
                             "no 'module.' prefix put back")
    parser.add_argument("--external-data", action="store_true",
                        help="an .onnx output's initializers of 1 KiB or more go to OUT.onnx.data beside it "
                             "(for models over 2 GiB)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    args = parser.parse_args(argv)

    def body() -> int:
        from ..pack.restore import unpack

        jobs = output_names(args.inputs, args.output)
        for _, target in jobs:
            check_target(target, args)
        note_first_compile("dcunpack", quiet=args.quiet)

        def one(source, output):
            check_overwrite(output, args.force, [source])
            with _input_path(source) as path:
                if output == "-":
                    from .. import open as open_dcf

                    with open_dcf(path) as reader:
                        write_safetensors(reader, sys.stdout.buffer)
                    return
                done = unpack(path, output, progress=not args.quiet, max_shard_size=args.max_shard_size,
                              weights_format=args.weights_format, flat=args.flat,
                              external_data=args.external_data)
            for line in [] if args.quiet else done.get("notes", ()):
                say("dcunpack", f"note: {sanitize(line, ERROR_LIMIT)}")
            if not args.quiet:  # paths whole, whatever their length
                shown = "<stdin>" if source == "-" else source
                say("dcunpack", f"{sanitize(shown, 10**6)} -> {sanitize(output, 10**6)}: "
                    f"{plural(done['tensors'], 'tensor')}, {plural(done['parameters'], 'parameter')}, "
                    f"{plural(done['bytes'], 'byte')}, {done['seconds']:.1f}\xa0s")

        return each("dcunpack", jobs, one)

    return run("dcunpack", body)


@contextlib.contextmanager
def _input_path(source: str):
    """The path to read: ``source``, or for ``-`` a temporary copy of stdin (removed afterwards)."""
    if source != "-":
        yield source
        return
    import shutil
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="dcunpack-stdin-", suffix=".dcf") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        spool.flush()
        yield spool.name


if __name__ == "__main__":
    sys.exit(main())
