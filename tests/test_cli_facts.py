"""One place states each number (dcformat.pack.facts): the README, --help and the docstrings say the
same; the README's recipe example is a recipe that loads."""
import json
import pathlib
import re

import pytest

from dcformat.cli import dcpack
from dcformat.pack import budget, facts, recipe
from dcformat.pack.recipe import Recipe

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start:end if end != -1 else None]


def _row(table_text: str, first_cell: str) -> str:
    return next(line for line in table_text.splitlines() if line.startswith(f"| {first_cell}"))


def test_the_search_uses_the_stated_ranges():
    assert budget.SPARSITIES == facts.SEARCH_SPARSITIES
    assert budget.BITS == facts.PRUNED_BITS and budget.UNPRUNED_BITS == facts.UNPRUNED_BITS
    assert recipe.SAFE_MAX_ERROR == facts.SAFE_MAX_ERROR


def test_readme_preset_table_states_the_facts():
    presets = _section("### Presets and error budgets")
    assert facts.times(facts.LOSSLESS_RATIO) in _row(presets, "`lossless`")
    safe = _row(presets, "`safe`")
    assert facts.times(facts.SAFE_RATIO) in safe and f"≤ {facts.SAFE_MAX_ERROR:g}" in safe
    assert str(facts.SAFE_COSINE) in safe and f"≤ {facts.SAFE_EMBEDDING_ERROR:g}" in safe
    same = _row(presets, "`indistinguishable`")
    assert facts.times(facts.INDISTINGUISHABLE_RATIO) in same and str(facts.INDISTINGUISHABLE_COSINE) in same
    assert facts.times(facts.AGGRESSIVE_RATIO) in _row(presets, "`aggressive`")


def test_readme_states_the_search_ranges_and_the_warning():
    text = " ".join(README.split())
    pruned = "{" + ", ".join(str(round(100 * s)) for s in facts.SEARCH_SPARSITIES if s) + "}%"
    assert (f"pruning {pruned} × {facts.bit_range(facts.PRUNED_BITS)}-bit codebooks and unpruned "
            f"{facts.bit_range(facts.UNPRUNED_BITS)}-bit codebooks") in text
    assert f"warn when a tensor's passes {facts.WARN_ERROR:g}" in text
    assert f"within {facts.SAFE_MAX_ERROR:g}" in text


def test_help_states_the_facts(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        dcpack.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for ratio in (facts.LOSSLESS_RATIO, facts.SAFE_RATIO, facts.INDISTINGUISHABLE_RATIO, facts.AGGRESSIVE_RATIO):
        assert text.count(facts.times(ratio, ascii=True)) >= 2, ratio  # the --preset help and the epilog
    assert f"k-means bits ({facts.bit_range(facts.UNPRUNED_BITS, '..')})" in text
    assert f"pruning {facts.percents(facts.SEARCH_SPARSITIES)} with {facts.bit_range(facts.PRUNED_BITS, '..')}" in text
    # no other ratio is claimed for a preset
    claimed = set(re.findall(r"(?<![\d.])(\d+(?:\.\d+)?)x\b", text))
    assert claimed <= {f"{r:g}" for r in (facts.LOSSLESS_RATIO, facts.SAFE_RATIO, facts.INDISTINGUISHABLE_RATIO, facts.AGGRESSIVE_RATIO)}, claimed


def test_recipe_docstrings_state_the_facts():
    doc = " ".join(recipe.__doc__.split())
    for ratio in (facts.LOSSLESS_RATIO, facts.SAFE_RATIO, facts.INDISTINGUISHABLE_RATIO, facts.AGGRESSIVE_RATIO):
        assert facts.times(ratio) in doc
    assert f"cosine {facts.SAFE_COSINE}" in doc and f"cosine {facts.INDISTINGUISHABLE_COSINE}" in doc
    claimed = set(re.findall(r"(\d+(?:\.\d+)?)×", doc)) | set(re.findall(r"(\d+)–(\d+)×", doc))
    assert claimed <= {f"{r:g}" for r in (facts.LOSSLESS_RATIO, facts.SAFE_RATIO, facts.INDISTINGUISHABLE_RATIO, facts.AGGRESSIVE_RATIO)}, claimed
    assert f"{facts.bit_range(facts.UNPRUNED_BITS, '..')} bits" in doc


def test_readme_recipe_example_loads_and_means_what_it_says():
    match = re.search(r"```json\n(.*?)```", _section("### Recipes"), re.S)
    spec = json.loads(match.group(1))
    parsed = Recipe.from_dict(spec)
    assert [r.name for r in parsed.rules] == [r["name"] for r in spec["rules"]]
    assert parsed.rules[0].policy.lossless and parsed.rules[1].policy.max_error == 0.03
    assert (parsed.rules[3].policy.sparsity, parsed.rules[3].policy.bits) == (0.9, 5)
    assert Recipe.from_json(parsed.to_json()).to_dict() == parsed.to_dict()


def test_readme_dcinfo_example_is_what_dcinfo_prints(tmp_path):
    """The "Reading dcinfo" section: its Python makes the file, its block is dcinfo's output."""
    import os
    import subprocess
    import sys

    section = _section("## Reading `dcinfo`")
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    block = re.search(r"```\n\$ (dcinfo [^\n]*)\n(.*?)```", section, re.S)
    command, expected = block.group(1).split(), block.group(2)
    setup = ("import numpy as np\nimport dcformat\n"
             "from dcformat.compress import magnitude_mask, share_weights\n")
    subprocess.run([sys.executable, "-c", setup + code], cwd=tmp_path, check=True)
    result = subprocess.run([sys.executable, "-m", "dcformat.cli.dcinfo", *command[1:]], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "80",
                                                                 "PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected

