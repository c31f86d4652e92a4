"""Aliases (spec §4.6.2): tied tensors stored once and listed under every name, through the
writer, save/load, the lazy reader and the torch calls."""
import io

import numpy as np
import pytest

import dcformat
from dcformat.errors import EncodingError
from dcformat.reader import DCFReader
from dcformat.tensors import CodebookTensor

EMBED = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
TENSORS = {"embed.weight": EMBED, "norm": np.ones(32, np.float16)}


def test_an_alias_is_stored_once():
    untied = dcformat.save({**TENSORS, "lm_head.weight": EMBED.copy()})
    tied = dcformat.save(TENSORS, aliases={"lm_head.weight": "embed.weight"})
    alone = dcformat.save(TENSORS)
    assert len(tied) - len(alone) < 40  # a record of a few bytes, not a second copy
    assert len(untied) - len(alone) > EMBED.nbytes // 2


def test_the_reader_lists_and_decodes_aliases():
    blob = dcformat.save(TENSORS, aliases={"lm_head.weight": "embed.weight", "b": "norm"})
    with DCFReader(blob) as f:
        assert f.keys() == ["embed.weight", "norm", "lm_head.weight", "b"] == list(f)
        assert len(f) == 4 and "lm_head.weight" in f and "nothing" not in f
        assert f.aliases() == {"lm_head.weight": "embed.weight", "b": "norm"}
        assert [t.name for t in f.tensors_info()] == ["embed.weight", "norm"]  # the entries only
        assert f.info("lm_head.weight") == f.info("embed.weight")
        head = f.get_tensor("lm_head.weight")
        assert head.dtype == EMBED.dtype and head.shape == EMBED.shape and np.array_equal(head, EMBED)
        assert np.array_equal(f.get_slice("lm_head.weight")[3:7], EMBED[3:7])
        assert f.get_tensor("b").dtype == np.float16
        some = f.get_tensors(["lm_head.weight", "norm"])
        assert list(some) == ["lm_head.weight", "norm"] and np.array_equal(some["lm_head.weight"], EMBED)


def test_load_returns_one_array_for_an_alias_and_its_target(tmp_path):
    path = tmp_path / "tied.dcf"
    dcformat.save_file(TENSORS, path, aliases={"lm_head.weight": "embed.weight"})
    loaded = dcformat.load_file(path)
    assert list(loaded) == ["embed.weight", "norm", "lm_head.weight"]
    assert loaded["lm_head.weight"] is loaded["embed.weight"]
    assert np.array_equal(loaded["embed.weight"], EMBED)
    with dcformat.open(path) as f:
        both = f.get_tensors(["embed.weight", "lm_head.weight"])
        assert both["embed.weight"] is both["lm_head.weight"]


def test_codebook_tensors_can_be_aliased():
    shared = CodebookTensor(np.array([-0.5, 0.5], np.float32), np.array([[0, 1, -1], [1, 1, 0]], np.int32))
    blob = dcformat.save({"w": shared}, aliases={"v": "w"})
    with DCFReader(blob) as f:
        assert np.array_equal(f.get_codebook_tensor("v").indices, f.get_codebook_tensor("w").indices)


def test_torch_tensors_of_an_alias_share_storage():
    torch = pytest.importorskip("torch")
    import dcformat.torch as dct

    blob = dcformat.save(TENSORS, aliases={"lm_head.weight": "embed.weight"})
    loaded = dct.load(blob)
    assert loaded["lm_head.weight"] is loaded["embed.weight"]
    assert torch.equal(loaded["lm_head.weight"], torch.from_numpy(EMBED))
    with dcformat.open(io.BytesIO(blob), "pt") as f:
        got = f.get_tensors()
        assert got["lm_head.weight"].data_ptr() == got["embed.weight"].data_ptr()


@pytest.mark.parametrize("aliases, words", [
    ({"norm": "embed.weight"}, "already the name of a tensor"),
    ({"x": "missing"}, "not one of the tensors given"),
    ({"": "norm"}, "1..4096"),
    ({"x": "norm", "y": "x"}, "not one of the tensors"),
])
def test_bad_aliases_are_refused(aliases, words):
    with pytest.raises(EncodingError, match=words):
        dcformat.save(TENSORS, aliases=aliases)


def test_writer_alias_rules():
    w = dcformat.DCFWriter(io.BytesIO())
    with pytest.raises(EncodingError, match="not a tensor added"):
        w.add_alias("head", "embed")  # the target must be added first
    w.add("embed", EMBED)
    w.add_alias("head", "embed")
    with pytest.raises(EncodingError, match="already the name of an alias"):
        w.add_alias("head", "embed")
    with pytest.raises(EncodingError, match="is an alias of 'embed'"):
        w.add_alias("head2", "head")
    with pytest.raises(EncodingError, match="already an alias"):
        w.add("head", EMBED)
    assert w.aliases == {"head": "embed"}
    w.close()
    with DCFReader(w._file.getvalue()) as f:
        assert f.keys() == ["embed", "head"]
