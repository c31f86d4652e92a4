"""dctable --budgets: every budget's file from one search — the same picks as --max-error, the
same file sizes as really packed files, a table, a per-tensor table and a plot."""
import os

import pytest
from pack_fixtures import minilm_checkpoint, small_model

from dcformat.cli import dctable
from dcformat.pack import load_checkpoint, pack, preset_recipe, save_checkpoint
from dcformat.pack.budget import choose, sweep
from dcformat.pack.recipe import budget_recipe
from dcformat.pack.sweep import allocation_table, budget_sweep, sweep_table

BUDGETS = [0.0, 0.004, 0.01, 0.03, 0.07, 0.15, 0.4]


def test_sweep_picks_what_choose_picks_for_every_budget():
    tensors, _ = load_checkpoint(minilm_checkpoint())
    w = tensors["encoder.layer.2.attention.self.value.weight"]
    for outcome, budget in zip(sweep(w, BUDGETS), BUDGETS):
        choice = choose(w, budget)
        assert (outcome.policy, outcome.error, outcome.bytes) == (choice.policy, choice.error, choice.bytes), budget
    assert [o.bytes for o in sweep(w, BUDGETS)] == sorted((o.bytes for o in sweep(w, BUDGETS)), reverse=True)


@pytest.mark.parametrize("search", ["sparsity+bits", "bits"])
def test_predicted_file_sizes_are_the_packed_file_sizes(tmp_path, search):
    tensors = small_model()
    budgets = [0.0, 0.02, 0.1, 0.3]
    result = budget_sweep(tensors, budgets, search=search, threads=2)
    assert result.budgets == budgets and set(result.searched) == {"emb.weight", "conv.weight", "fc1.weight", "half.weight"}
    for budget, predicted in zip(budgets, result.file_bytes):
        recipe = budget_recipe(budget) if search == "sparsity+bits" else preset_recipe("safe", max_error=budget)
        packed = pack(tensors, tmp_path / f"{budget}.dcf", recipe)
        assert os.path.getsize(tmp_path / f"{budget}.dcf") == predicted, budget
        picked = {r.name: r.relative_error for r in packed.tensors}
        i = budgets.index(budget)
        for name in result.searched:
            assert result.outcomes[name][i].error == pytest.approx(picked[name], rel=1e-9, abs=1e-12)
    # a looser budget never stores more (the file also holds the budget's own digits)
    tensor_bytes = [sum(result.outcomes[n][i].bytes for n in result.names) for i in range(len(budgets))]
    assert tensor_bytes == sorted(tensor_bytes, reverse=True) and tensor_bytes[-1] < tensor_bytes[0] / 3
    table = sweep_table(result)
    assert [row["file_bytes"] for row in table.rows] == result.file_bytes
    assert all(row["largest_error"] <= row["budget"] for row in table.rows)
    settings = allocation_table(result).rows
    assert [row["name"] for row in settings] == result.searched and settings[0]["b0"] == "raw"


def test_dctable_budgets_prints_tables_and_draws_the_plot(tmp_path, capsys):
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path)
    plot = tmp_path / "sweep.png"
    assert dctable.main(["--budgets", "0.05,0,0.02", str(path), "--layers", "--plot", str(plot), "-q"]) == 0
    out = capsys.readouterr().out
    assert "Error budgets: model.safetensors" in out and "Setting per tensor and budget" in out
    assert "| 0.02 |" in out and "| emb.weight |" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert dctable.main(["--budgets", "0.05", str(path), "--no-pruning", "--format", "json", "-q"]) == 0
    assert '"search": "bits"' in capsys.readouterr().out


def test_sweep_input_errors():
    from dcformat.pack import PackError

    for budgets, message in [([], "at least one budget"), ([float("nan")], "finite number"), ([True], "finite")]:
        with pytest.raises(PackError, match=message):
            budget_sweep(small_model(), budgets)
    with pytest.raises(PackError, match="no tensors"):
        budget_sweep({}, [0.1])
    with pytest.raises(PackError, match="search must be"):
        budget_sweep(small_model(), [0.1], search="pruning")


@pytest.mark.parametrize("args, message", [
    (["--budgets", "0.1,x"], "budgets must be comma-separated numbers"),
    (["--budgets", "-1"], "budgets must be finite numbers >= 0"),
    (["--plot", "p.png"], "--plot needs --budgets"),
    (["--budgets", "0.1", "--stages", "-d", "out"], "--budgets and --stages"),
])
def test_dctable_budget_errors_are_one_line(tmp_path, capsys, args, message):
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path)
    try:
        status = dctable.main(args + [str(path)])
    except SystemExit as exit:  # argparse's own usage errors
        status = exit.code
    assert status == 2  # usage errors, whether argparse or dctable finds them
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
