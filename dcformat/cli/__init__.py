"""The commands: dcinfo, dcpack, dcunpack, dctable (one module each; :mod:`._common` is shared).

In a command's own process a Ctrl-C during the imports ends it quietly (:mod:`._startup`).
"""
from ._startup import install as _install

_install()
