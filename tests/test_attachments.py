"""Attachments (spec §4.6.1): a model's other files stored byte-exact in the dcf file, through
the writer, save/save_file and the reader; names, codecs, profiles, limits and faults."""
import io
import os
import struct

import numpy as np
import pytest

import dcformat
from dcformat.constants import DEFAULT_MAX_ATTACHMENT_BYTES, Codec
from dcformat.errors import ChecksumError, CorruptFileError, EncodingError, EncodingTypeError, LimitExceededError
from dcformat.extensions import attachment_name_problem, attachment_path
from dcformat.reader import DCFReader

TENSORS = {"w": np.linspace(-1, 1, 40, dtype=np.float32).reshape(5, 8)}


def _text(size, seed=0):
    rng = np.random.default_rng(seed)
    words = [b"the", b"model", b"token", b"embedding", b'"hidden_size"', b"\n", b" ", b"{", b"}", b"1024"]
    return b"".join(rng.choice(words, size=size))[:size]


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 5, _text(5000), os.urandom(3000),
                                  b"\0" * 100_000])
def test_bytes_come_back_exactly(data):
    blob = dcformat.save(TENSORS, attachments={"file.bin": data})
    with DCFReader(blob) as f:
        assert f.attachments() == ["file.bin"]
        assert f.get_attachment("file.bin") == data
        assert type(f.get_attachment("file.bin")) is bytes
        assert f.attachment_info("file.bin").size == len(data)
        f.verify_all()
    assert dcformat.load(blob).keys() == TENSORS.keys()  # attachments are not tensors


def test_the_smallest_codec_is_chosen():
    random_bytes = os.urandom(2000)
    blob = dcformat.save(TENSORS, attachments={"random": random_bytes, "zeros": b"\0" * 50_000,
                                               "text": _text(20_000)})
    with DCFReader(blob) as f:
        codecs = {n: f.attachment_info(n).stream for n in f.attachments()}
    assert codecs["random"].codec == Codec.PLAIN and codecs["random"].length == 2000
    assert codecs["zeros"].codec == Codec.ZSTD and codecs["zeros"].length < 100
    assert codecs["text"].length < 20_000 // 3


def test_codecs_can_be_restricted_and_mobile_never_uses_zstd():
    text = _text(20_000)
    buffer = io.BytesIO()
    with dcformat.DCFWriter(buffer) as w:
        w.add_attachment("huffman.txt", text, codecs=("huffman",))
        w.add_attachment("plain.txt", text, codecs=("plain",))
    with DCFReader(buffer.getvalue()) as f:
        assert f.attachment_info("huffman.txt").stream.codec == Codec.HUFFMAN
        assert f.attachment_info("plain.txt").stream.codec == Codec.PLAIN
        assert f.get_attachment("huffman.txt") == f.get_attachment("plain.txt") == text
    mobile = dcformat.save(TENSORS, attachments={"zeros": b"\0" * 50_000, "text": text}, profile="mobile")
    with DCFReader(mobile) as f:
        assert {f.attachment_info(n).stream.codec for n in f.attachments()} <= {Codec.PLAIN, Codec.HUFFMAN}
        assert all(f.attachment_info(n).stream.offset % 64 == 0 for n in f.attachments())
        assert f.get_attachment("zeros") == b"\0" * 50_000


def test_bytes_like_inputs():
    data = b"abcdef" * 10
    blob = dcformat.save(TENSORS, attachments={"a": bytearray(data), "b": memoryview(data),
                                               "c": np.frombuffer(data, np.uint8)})
    with DCFReader(blob) as f:
        assert [f.get_attachment(n) for n in "abc"] == [data] * 3


def test_save_file_and_load_back(tmp_path):
    path = tmp_path / "m.dcf"
    config = b'{"model_type": "bert"}\n'
    dcformat.save_file(TENSORS, path, metadata={"k": "v"}, attachments={"config.json": config})
    with dcformat.open(path) as f:
        assert f.metadata() == {"k": "v"} and f.get_attachment("config.json") == config
        assert f.header.version == (1, 1)
    with dcformat.open(path, "pt") as f:  # the torch reader opens the same file
        assert list(f.keys()) == ["w"]


@pytest.mark.parametrize("name, words", [("/abs", "absolute"), ("../x", "'..'"), ("a//b", "empty"),
                                         ("a\\b", "separator"), ("C:x", "separator"), ("a\nb", r"U\+000A"),
                                         ("", "1..4096"), ("x" * 4097, "1..4096"), ("a/./b", "'.'"),
                                         ("\ud800", "UTF-8")])
def test_bad_names_are_refused_by_the_writer(name, words):
    with pytest.raises(EncodingError, match=words):
        dcformat.save(TENSORS, attachments={name: b"x"})
    assert attachment_name_problem(name) is not None


def test_writer_misuse():
    with pytest.raises(EncodingTypeError):
        dcformat.save(TENSORS, attachments={1: b"x"})
    with pytest.raises(EncodingTypeError, match="bytes-like"):
        dcformat.save(TENSORS, attachments={"a": "text, not bytes"})
    with pytest.raises(EncodingTypeError, match="dict"):
        dcformat.save(TENSORS, attachments=[("a", b"x")])
    w = dcformat.DCFWriter(io.BytesIO())
    w.add_attachment("a", b"1")
    with pytest.raises(EncodingError, match="already"):
        w.add_attachment("a", b"2")
    w.close()
    with pytest.raises(EncodingError, match="closed"):
        w.add_attachment("b", b"x")


def test_a_failed_save_file_leaves_no_file(tmp_path):
    path = tmp_path / "m.dcf"
    with pytest.raises(EncodingError):
        dcformat.save_file(TENSORS, path, attachments={"ok": b"1", "../bad": b"2"})
    assert not path.exists() and os.listdir(tmp_path) == []


def _stream_bytes(blob, name):
    with DCFReader(blob) as f:
        s = f.attachment_info(name).stream
    return s.offset, s.length


def test_a_damaged_attachment_fails_alone():
    blob = bytearray(dcformat.save(TENSORS, attachments={"a": b"A" * 100, "b": os.urandom(64)}))
    offset, length = _stream_bytes(bytes(blob), "b")
    blob[offset + length // 2] ^= 0x40
    with DCFReader(bytes(blob)) as f:  # the index is intact: the file opens
        with pytest.raises(ChecksumError, match="attachment 'b'"):
            f.get_attachment("b")
        assert f.get_attachment("a") == b"A" * 100
        assert np.array_equal(f.get_tensor("w"), TENSORS["w"])
        with pytest.raises(ChecksumError):
            f.verify_all()
    with DCFReader(bytes(blob), verify=False) as f:  # unchecked, the damaged byte comes out as stored
        assert len(f.get_attachment("b")) == 64


def test_a_damaged_zstd_frame_is_corrupted_even_unchecked():
    blob = bytearray(dcformat.save(TENSORS, attachments={"z": b"\0" * 40_000}))
    offset, length = _stream_bytes(bytes(blob), "z")
    blob[offset:offset + 4] = b"XXXX"  # the frame magic
    with DCFReader(bytes(blob), verify=False) as f:
        with pytest.raises(CorruptFileError):
            f.get_attachment("z")


def test_the_reader_limit_is_checked_before_decoding():
    data = b"\0" * 200_000  # a small ZSTD stream that expands a lot
    blob = dcformat.save(TENSORS, attachments={"bomb": data})
    assert len(blob) < 1000
    with DCFReader(blob, max_attachment_bytes=100_000) as f:
        with pytest.raises(LimitExceededError, match="max_attachment_bytes"):
            f.get_attachment("bomb")
        with pytest.raises(LimitExceededError):
            f.verify_all()
    with DCFReader(blob) as f:
        assert f.max_attachment_bytes == DEFAULT_MAX_ATTACHMENT_BYTES
        assert f.get_attachment("bomb") == data


def test_a_size_the_zstd_stream_cannot_hold_is_refused_at_open():
    """The expansion bound of §8.4 is checked from the index: a record claiming 2 GiB from a few bytes."""
    blob = bytearray(dcformat.save(TENSORS, attachments={"z": b"\0" * 1000}))
    with DCFReader(bytes(blob)) as f:
        info = f.attachment_info("z")
        index_offset = f.header.index_offset
    index = bytes(blob[index_offset:-16])
    at = index.index(b"\x01\x00z") + 3  # name_length, name: then size, then the descriptor
    fake = struct.pack("<Q", 2**31)
    new_index = index[:at] + fake + index[at + 8:at + 8 + 8] + struct.pack("<Q", 2**31) + index[at + 24:]
    assert len(new_index) == len(index) and info.stream.length < 100
    import zlib

    blob[index_offset:-16] = new_index
    blob[-8:-4] = struct.pack("<I", zlib.crc32(new_index))
    with pytest.raises(CorruptFileError, match="cannot hold"):
        DCFReader(bytes(blob))


def test_unknown_names_are_key_errors():
    with DCFReader(dcformat.save(TENSORS, attachments={"a": b"x"})) as f:
        with pytest.raises(KeyError, match="no attachment named 'b'"):
            f.get_attachment("b")
        assert "a" not in f  # `in` asks about tensors
    f.close()
    with pytest.raises(dcformat.ClosedFileError):
        f.attachments()


def test_attachment_path_stays_inside_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert attachment_path(out, "a/b.txt") == os.path.join(os.path.realpath(out), "a", "b.txt")
    for bad in ("../x", "/etc/passwd", "a//b", "a\\b"):
        with pytest.raises(CorruptFileError):
            attachment_path(out, bad)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", out / "link")
    with pytest.raises(CorruptFileError, match="outside"):
        attachment_path(out, "link/x.txt")
