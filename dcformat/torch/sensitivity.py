"""``python -m dcformat.torch.sensitivity --model FOLDER --texts FILE -o SENS.safetensors``: per-weight
sensitivities of a Hugging Face model folder from a few calibration texts, for ``dcpack --sensitivity``.

See :func:`dcformat.torch.calibrate.main` (the command) and :mod:`dcformat.pack.sensitivity` (the file).
"""
import sys

from .calibrate import main

if __name__ == "__main__":
    sys.exit(main())
