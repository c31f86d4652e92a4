"""The README's quick start runs as written."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_quick_start_runs(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    w, w_hat = namespace["w"], namespace["w_hat"]
    kept = w_hat != 0
    assert 0.07 < kept.mean() < 0.09  # the 8% kept
    assert len(np.unique(w_hat[kept])) <= 64  # 6-bit codebook
    assert (tmp_path / "lenet.dcf").stat().st_size < w.nbytes / 20
