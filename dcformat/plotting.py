"""matplotlib's pyplot with the Agg backend (PNG files, no display), imported on first use."""
from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend; matplotlib is in the ``tools`` extra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
