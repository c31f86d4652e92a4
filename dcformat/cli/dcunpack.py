"""dcunpack: decode a dcf file back to a dense checkpoint.

    dcunpack model.dcf -o restored.safetensors     (streamed: one tensor in memory at a time)
    dcunpack model.dcf -o restored.pt              (torch.save of a dict of plain tensors)
    dcunpack model.dcf -o restored.npz             (numpy, no pickles)

Every tensor comes back with its name, shape and dtype: raw tensors bit-exact, weight-shared ones
as their codebook values. A .safetensors output is decoded and written tensor by tensor (the header
comes from the dcf index), so memory holds about one tensor; the file is the one the safetensors
package writes. .pt and .npz outputs hold every tensor in memory before writing. Outputs appear
atomically (temporary file, fsync, rename). A safetensors output carries the dcf file's metadata
(the recipe, the source name) and the source's own metadata. Errors print one line and exit with
status 1.
"""
from __future__ import annotations

import sys

from ..report import sanitize
from ._common import OneLineParser, run


def main(argv=None) -> int:
    parser = OneLineParser(prog="dcunpack", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", metavar="IN.dcf")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="a .safetensors (streamed, one tensor in memory at a time), .pt, .pth or .npz file "
                             "(these hold every tensor in memory)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    args = parser.parse_args(argv)

    def body() -> int:
        from ..pack.packer import unpack

        done = unpack(args.input, args.output, progress=not args.quiet)
        if not args.quiet:
            print(f"dcunpack: {sanitize(args.input)} -> {sanitize(args.output)}: {done['tensors']} tensors, "
                  f"{done['parameters']:,} parameters, {done['bytes']:,} bytes, {done['seconds']:.1f} s",
                  file=sys.stderr)
        return 0

    return run("dcunpack", body)


if __name__ == "__main__":
    sys.exit(main())
