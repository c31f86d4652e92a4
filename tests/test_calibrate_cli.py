"""python -m dcformat.torch.sensitivity: a model folder and a few texts -> a sensitivity file that
dcpack --target-size --sensitivity uses (a tiny BERT here; MiniLM in the slow test)."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from dcformat.pack.sensitivity import load_sensitivities  # noqa: E402
from dcformat.torch.calibrate import _TextModel, calibrate, calibrate_texts, main, read_texts  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "the bird sang on a tree"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for t in TEXTS for w in t.split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=128, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(folder)
    texts = folder / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    return folder


@pytest.mark.slow  # transformers and a tiny BERT: about 20 s
def test_the_command_writes_sensitivities_dcpack_uses(tiny_bert, tmp_path, capsys):
    from safetensors.numpy import load_file

    out = tmp_path / "sens.safetensors"
    assert main(["--model", str(tiny_bert), "--texts", str(tiny_bert / "texts.txt"), "-o", str(out)]) == 0
    assert "3 texts x 4 probes" in capsys.readouterr().err
    sens = load_sensitivities(out)
    weights = load_file(str(tiny_bert / "model.safetensors"))
    common = set(sens) & set(weights)
    assert "encoder.layer.0.intermediate.dense.weight" in common and len(common) >= len(weights) - 1
    for name in common:
        assert sens[name].shape == weights[name].shape and (sens[name] >= 0).all()
    assert float(sens["encoder.layer.0.attention.self.query.weight"].sum()) > 0
    # the same numbers as calibrate() on the same model and inputs
    model = transformers.AutoModel.from_pretrained(str(tiny_bert), local_files_only=True).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_bert), local_files_only=True)
    direct = calibrate(_TextModel(model, "pooled"), [torch.as_tensor(tok(t)["input_ids"]) for t in TEXTS])
    np.testing.assert_allclose(sens["encoder.layer.0.output.dense.weight"],
                               direct["model.encoder.layer.0.output.dense.weight"], rtol=1e-5, atol=1e-12)
    # one number per tensor: each tensor's mean
    per = tmp_path / "per.safetensors"
    assert main(["--model", str(tiny_bert), "--texts", str(tiny_bert / "texts.txt"), "-o", str(per),
                 "--per-tensor"]) == 0
    means = load_sensitivities(per)
    name = "encoder.layer.0.output.dense.weight"
    assert means[name].shape == () and means[name] == pytest.approx(float(sens[name].mean()), rel=1e-5)
    # dcpack weighs its target by the file
    from dcformat.cli.dcpack import main as dcpack

    dcf = tmp_path / "m.dcf"
    assert dcpack([str(tiny_bert), "-o", str(dcf), "--target-size", "8x", "--sensitivity", str(out), "-q"]) == 0
    assert os.path.getsize(dcf) <= sum(a.nbytes for a in weights.values()) / 8


def test_bad_inputs_are_one_line(tiny_bert, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    out = tmp_path / "s.safetensors"
    assert main(["--model", str(tiny_bert), "--texts", str(empty), "-o", str(out)]) == 1
    assert "no text in it" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--texts", str(tiny_bert / "texts.txt"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not a model folder" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(ValueError, match="no such file"):
        read_texts(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="output must be"):
        calibrate_texts(str(tiny_bert), TEXTS, output="logits")


@pytest.mark.slow  # a new interpreter importing transformers
def test_python_dash_m_runs_without_a_warning(tiny_bert, tmp_path):
    out = tmp_path / "s.safetensors"
    done = subprocess.run([sys.executable, "-m", "dcformat.torch.sensitivity", "--model", str(tiny_bert), "--texts",
                           str(tiny_bert / "texts.txt"), "-o", str(out), "--per-tensor"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert out.exists()
