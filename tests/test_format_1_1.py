"""Format version 1.1 (spec §3.1, §4.6, §5): the extension section, its golden vectors, and the
rules that make a file corrupted, each checked on a file built by hand.

The vectors of 1.1 live in spec/vectors/1.1/ (spec/vectors/README.md); test_compatibility.py
freezes their bytes, this file checks what they hold and that the writer still makes them.
"""
import json
import pathlib
import struct

import numpy as np
import pytest

import dcformat
import fuzz_helpers as fh
from dcformat.constants import (
    MAX_ATTACHMENT_BYTES,
    MAX_EXTENSION_RECORDS,
    MAX_NAME_LENGTH,
    EXTENSIONS_MINOR,
    Codec,
    ExtensionType,
)
from dcformat.errors import (
    CorruptFileError,
    CountMismatchError,
    LimitExceededError,
    OffsetError,
    TruncatedFileError,
)
from dcformat.index_reader import _parse_index
from dcformat.reader import DCFReader
from dcformat.vectors import VERSION_DIRECTORIES, array_from_json, encode_vector, vector_definitions, vector_json

ROOT = pathlib.Path(__file__).resolve().parent.parent
V11 = ROOT / "spec" / "vectors" / VERSION_DIRECTORIES["1.1"]
NAMES = sorted(p.stem for p in V11.glob("*.dcf"))


def load_spec(name):
    return json.loads((V11 / f"{name}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# golden vectors of 1.1

def test_the_1_1_vectors_are_all_committed():
    assert NAMES == ["29_attachments", "30_aliases", "31_extensions_mixed", "32_unknown_critical"]
    assert set(vector_definitions("1.1")) == set(NAMES)
    assert not set(vector_definitions("1.1")) & set(vector_definitions("1.0"))


@pytest.mark.parametrize("name", NAMES)
def test_vector_decodes_to_its_json(name):
    spec = load_spec(name)
    data = (V11 / f"{name}.dcf").read_bytes()
    assert struct.unpack_from("<HH", data, 4) == (1, 1)
    if "expect_error" in spec:
        assert spec["expected"] == {}
        with pytest.raises(CorruptFileError, match=spec["expect_error"]):
            DCFReader(data)
        with pytest.raises(CorruptFileError, match="40001"):  # every entry point refuses it
            dcformat.load(data)
        return
    with DCFReader(data) as f:
        assert f.keys() == list(spec["expected"])
        assert f.aliases() == spec.get("aliases", {})
        assert f.attachments() == list(spec.get("attachments", {}))
        for key, expected in spec["expected"].items():
            want = array_from_json(expected)
            got = f.get_tensor(key)
            assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
        for attachment, content in spec.get("attachments", {}).items():
            assert f.get_attachment(attachment) == bytes.fromhex(content["data_hex"])
            assert f.attachment_info(attachment).size == len(content["data_hex"]) // 2
        f.verify_all()


@pytest.mark.parametrize("name", NAMES)
def test_vector_reencodes_to_same_bytes(name):
    assert encode_vector(load_spec(name)) == (V11 / f"{name}.dcf").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_vector_json_is_its_definition(name):
    committed = load_spec(name)
    defined = json.loads(json.dumps(vector_json(name, vector_definitions("1.1")[name]), ensure_ascii=False))
    committed.pop("encodings"), defined.pop("encodings")
    assert committed == defined
    assert name in (ROOT / "spec" / "vectors" / "README.md").read_text(encoding="utf-8")


def test_vectors_cover_what_1_1_adds():
    codecs, skipped = set(), set()
    for name in NAMES[:-1]:
        with DCFReader((V11 / f"{name}.dcf").read_bytes()) as f:
            codecs |= {f.attachment_info(n).stream.codec for n in f.attachments()}
            skipped |= set(f.header.skipped_extensions)
            if f.header.alignment_log2:
                assert all(f.attachment_info(n).stream.offset % (1 << f.header.alignment_log2) == 0
                           for n in f.attachments() if f.attachment_info(n).stream.length)
    assert codecs == {Codec.PLAIN, Codec.HUFFMAN, Codec.ZSTD}
    assert skipped == {40000}
    assert any(f.attachment_info(n).size == 0 for f in [DCFReader((V11 / "29_attachments.dcf").read_bytes())]
               for n in f.attachments())


@pytest.mark.parametrize("name", NAMES)
def test_a_1_0_decoder_refuses_every_1_1_vector(name):
    """A 1.0 decoder reads the index as 1.0 (no extension section): bytes are left over (spec §3.1)."""
    data = (V11 / f"{name}.dcf").read_bytes()
    index_length = struct.unpack_from("<Q", data, len(data) - 16)[0]
    index = data[len(data) - 16 - index_length:len(data) - 16]
    with pytest.raises(CorruptFileError, match="bytes left over at the end of the index"):
        _parse_index(index, minor=0)


def test_spec_worked_example_bytes():
    """Spec §4.6.3, byte for byte."""
    buffer = __import__("io").BytesIO()
    with dcformat.DCFWriter(buffer) as w:
        w.add_attachment("a.txt", b"hi\n", codecs=("plain",))
        w.add("w", np.array([1.0, 2.0], np.float32), {"codecs": ("plain",)})
        w.add_alias("v", "w")
    data = buffer.getvalue()
    assert len(data) == 174
    assert data[:8] == bytes.fromhex("8944434601000100")
    assert data[24:27] == b"hi\n"
    assert data[92:96] == bytes.fromhex("02000000")
    assert data[96:104] == bytes.fromhex("0100000027000000")
    assert data[104:119] == bytes.fromhex("0500") + b"a.txt" + bytes.fromhex("0300000000000000")
    assert data[119:143] == bytes.fromhex("000000007a7a6fed" "0300000000000000" "0300000000000000")
    assert data[143:158] == bytes.fromhex("02000100070000000100") + b"v" + bytes(4)
    assert data[158:] == bytes.fromhex("8300000000000000" "53eed151" "89444346")
    spec = (ROOT / "spec" / "FORMAT.md").read_text(encoding="utf-8")
    assert "`7A 7A 6F ED`" in spec and "`53 EE D1 51`" in spec


# --------------------------------------------------------------------------------------------
# versions

def test_files_without_extensions_stay_1_0_byte_for_byte():
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    data = dcformat.save(tensors)
    assert struct.unpack_from("<H", data, 6)[0] == 0
    assert dcformat.save(tensors, attachments={}, aliases={}) == data
    with_alias = dcformat.save(tensors, aliases={"b": "a"})
    assert struct.unpack_from("<H", with_alias, 6)[0] == EXTENSIONS_MINOR == 1


def test_version_minor_1_without_records_has_an_empty_section():
    buffer = __import__("io").BytesIO()
    with dcformat.DCFWriter(buffer, version_minor=1) as w:
        w.add("a", np.ones(2, np.float32))
    data = buffer.getvalue()
    plain = dcformat.save({"a": np.ones(2, np.float32)})
    assert len(data) == len(plain) + 4 and struct.unpack_from("<H", data, 6)[0] == 1
    with DCFReader(data) as f:
        assert f.header.version == (1, 1) and f.keys() == ["a"] and f.attachments() == []
    with pytest.raises(dcformat.EncodingError, match="1.0"):
        dcformat.DCFWriter(__import__("io").BytesIO(), version_minor=0).add_alias("x", "y")


class _Pipe:
    """A binary target that cannot seek (a pipe)."""

    def __init__(self):
        self.data = bytearray()

    def write(self, b):
        self.data += b
        return len(b)

    def flush(self):
        pass

    def seekable(self):
        return False


def test_a_target_that_cannot_seek_needs_version_minor():
    pipe = _Pipe()
    w = dcformat.DCFWriter(pipe)
    with pytest.raises(dcformat.EncodingError, match="version_minor=1"):
        w.add_attachment("config.json", b"{}")
    pipe = _Pipe()
    with dcformat.DCFWriter(pipe, version_minor=1) as w:
        w.add("a", np.ones(2, np.float32))
        w.add_attachment("config.json", b"{}")
        w.add_alias("b", "a")
    with DCFReader(bytes(pipe.data)) as f:
        assert f.keys() == ["a", "b"] and f.get_attachment("config.json") == b"{}"


# --------------------------------------------------------------------------------------------
# the rules of §4.6, on files built by hand

def _record(record_type, flags, payload):
    return struct.pack("<HHI", record_type, flags, len(payload)) + payload


def _attachment_payload(name: bytes, data: bytes, codec=0, size=None, count=None, length=None, crc=None,
                        param=0, reserved=0):
    import zlib

    return (struct.pack("<H", len(name)) + name + struct.pack("<Q", len(data) if size is None else size)
            + struct.pack("<BBHIQQ", codec, param, reserved, zlib.crc32(data) if crc is None else crc,
                          len(data) if count is None else count, len(data) if length is None else length))


def _alias_payload(name: bytes, target: int):
    return struct.pack("<H", len(name)) + name + struct.pack("<I", target)


def _file(records, data_tail=b"", count=None, tensors=None):
    model = fh.parse_model(dcformat.save(tensors or {"w": np.arange(4, dtype=np.float32),
                                                     "b": np.ones(2, np.int8)},
                                         encodings={"w": {"codecs": ("plain",)}, "b": {"codecs": ("plain",)}}))
    model.minor = 1
    model.extensions = struct.pack("<I", len(records) if count is None else count) + b"".join(records)
    model.data_tail = data_tail
    return fh.serialize(model)


def test_hand_built_file_reads():
    data = _file([_record(1, 0, _attachment_payload(b"dir/a.txt", b"hello")),
                  _record(2, 1, _alias_payload(b"w2", 0)),
                  _record(0x9000, 0, b"anything at all")], data_tail=b"hello")
    with DCFReader(data) as f:
        assert f.keys() == ["w", "b", "w2"]
        assert f.get_attachment("dir/a.txt") == b"hello"
        assert f.header.skipped_extensions == (0x9000,)
        assert f.get_tensor("w2").tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("records, tail, error, words", [
    ([_record(5, 1, b"")], b"", CorruptFileError, "critical extension record of unknown type 5"),
    ([_record(0, 0, b"")], b"", CorruptFileError, "type 0 is reserved"),
    ([_record(1, 2, _attachment_payload(b"a", b""))], b"", CorruptFileError, "reserved flag bits"),
    ([_record(7, 0x8000, b"")], b"", CorruptFileError, "reserved flag bits"),
    ([_record(1, 1, _attachment_payload(b"a", b""))], b"", CorruptFileError, "ATTACHMENT extension record has flags 1"),
    ([_record(2, 0, _alias_payload(b"x", 0))], b"", CorruptFileError, "ALIAS extension record has flags 0"),
    ([_record(2, 1, _alias_payload(b"x", 2))], b"", CorruptFileError, "targets tensor 2"),
    ([_record(2, 1, _alias_payload(b"b", 0))], b"", CorruptFileError, "already the name of a tensor"),
    ([_record(2, 1, _alias_payload(b"x", 0)), _record(2, 1, _alias_payload(b"x", 1))], b"", CorruptFileError,
     "already the name of an alias"),
    ([_record(2, 1, _alias_payload(b"x", 0) + b"\0")], b"", CorruptFileError, "left over"),
    ([_record(2, 1, _alias_payload(b"x", 0)[:-1])], b"", CorruptFileError, "ends inside"),
    ([_record(2, 1, _alias_payload(b"", 0))], b"", CorruptFileError, "alias name length 0"),
    ([_record(2, 1, _alias_payload(b"\xff", 0))], b"", CorruptFileError, "UTF-8"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy") + b"\0")], b"xy", CorruptFileError, "payload"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy")), _record(1, 0, _attachment_payload(b"a", b"xy"))],
     b"xyxy", CorruptFileError, "appears twice"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy", codec=1, param=2))], b"xy", CorruptFileError,
     "PLAIN, HUFFMAN or ZSTD"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy", codec=4))], b"xy", CorruptFileError, "PLAIN, HUFFMAN or ZSTD"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy", codec=9))], b"xy", CorruptFileError, "unknown value 9"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy", reserved=1))], b"xy", CorruptFileError, "reserved"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy", count=1, length=2))], b"xy", CountMismatchError,
     "2 bytes but its stream 1"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy", size=3, count=3))], b"xy", CountMismatchError,
     "cannot hold 3"),
    ([_record(1, 0, _attachment_payload(b"a", b"", codec=3))], b"", CorruptFileError, "empty attachment"),
    ([_record(1, 0, _attachment_payload(b"a", b"", size=MAX_ATTACHMENT_BYTES + 1))], b"", LimitExceededError,
     "MAX_ATTACHMENT_BYTES"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy"))], b"xyz", OffsetError, "belong to no stream"),
    ([_record(1, 0, _attachment_payload(b"a", b"xy"))], b"x", OffsetError, "runs past"),
])
def test_corrupted_extension_sections(records, tail, error, words):
    with pytest.raises(error, match=words):
        DCFReader(_file(records, tail))


@pytest.mark.parametrize("name", [b"/etc/passwd", b"../up", b"a/../../b", b"./a", b"a/./b", b"a//b", b"a/",
                                  b"a\\b", b"C:x", b"tab\tname", b"nul\0", b"del\x7f", b"c1\xc2\x85",
                                  b"", b"x" * (MAX_NAME_LENGTH + 1), b"\xc0\xaf"])
def test_attachment_names_that_are_corrupted(name):
    with pytest.raises(CorruptFileError, match="attachment name"):
        DCFReader(_file([_record(1, 0, _attachment_payload(name, b"xy"))], b"xy"))


@pytest.mark.parametrize("name", ["config.json", "tokenizer/vocab.txt", "a/b/c/d.model", ".hidden", "..a",
                                  "a..", "日本/é.txt", "x" * MAX_NAME_LENGTH, "space name.txt"])
def test_attachment_names_that_are_valid(name):
    raw = name.encode()
    with DCFReader(_file([_record(1, 0, _attachment_payload(raw, b"xy"))], b"xy")) as f:
        assert f.attachments() == [name] and f.get_attachment(name) == b"xy"


def test_extension_count_is_bounded_before_the_records_are_read():
    with pytest.raises(LimitExceededError, match="extension_count"):
        DCFReader(_file([], count=MAX_EXTENSION_RECORDS + 1))
    with pytest.raises(TruncatedFileError, match="too short for 1000 extension records"):
        DCFReader(_file([_record(9, 0, b"")], count=1000))
    with pytest.raises(TruncatedFileError, match="extension record of type 9"):
        DCFReader(_file([_record(9, 0, b"abc")[:-1]]))


def test_a_1_1_index_without_its_section_is_truncated():
    model = fh.parse_model(dcformat.save({"w": np.ones(2, np.float32)}))
    model.minor, model.extensions = 1, b""
    with pytest.raises(TruncatedFileError, match="extension_count"):
        DCFReader(fh.serialize(model))


def test_attachment_streams_follow_every_tensor_stream():
    """§5: an attachment's stream is placed after all tensors' streams, in record order."""
    data = dcformat.save({"a": np.arange(5, dtype=np.int16), "b": np.arange(3, dtype=np.float64)},
                         attachments={"one": b"1" * 7, "two": b"22"}, alignment_log2=4,
                         encodings={"a": {"codecs": ("plain",)}, "b": {"codecs": ("plain",)}})
    with DCFReader(data) as f:
        last_tensor_end = max(s.offset + s.length for t in f.tensors_info() for s in t.streams)
        one, two = f.attachment_info("one").stream, f.attachment_info("two").stream
        assert last_tensor_end <= one.offset < two.offset and one.offset % 16 == 0 and two.offset % 16 == 0
        assert two.offset + two.length == f.header.index_offset
    assert ExtensionType.ATTACHMENT == 1 and ExtensionType.ALIAS == 2


# --------------------------------------------------------------------------------------------
# dcinfo

def test_dcinfo_shows_aliases_and_attachments(capsys):
    from dcformat.cli import dcinfo

    assert dcinfo.main([str(V11 / "31_extensions_mixed.dcf")]) == 0
    out = capsys.readouterr().out
    assert "dcf 1.1, 2 tensors" in out and "head = embed" in out
    assert "attachment tokenizer.json: 204 bytes, stored 70 (zstd)" in out and "attachments 89" in out
    assert dcinfo.main(["--json", "--verify", str(V11 / "29_attachments.dcf")]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in summary["attachments"]] == ["config.json", "tokenizer/merges.txt", "bytes.bin",
                                                           "empty.txt"]
    assert sum(summary["bytes_by_part"].values()) == summary["file_bytes"]
    weights = summary["file_bytes"] - summary["bytes_by_part"]["attachments"]
    assert summary["bits_per_weight"] == 8 * weights / summary["parameters"]
    assert dcinfo.main([str(V11 / "32_unknown_critical.dcf")]) == 1
    assert "critical extension record of unknown type 40001" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# libdcf, the C decoder, on what 1.1 adds (its full cross-check is in test_libdcf.py)

def test_libdcf_refuses_the_negative_vector_naming_the_type():
    from libdcf_helpers import LIB_PATH, DcfError, Lib, build_native

    build_native()
    lib = Lib(LIB_PATH)
    with pytest.raises(DcfError) as caught:
        lib.open((V11 / "32_unknown_critical.dcf").read_bytes())
    assert caught.value.name == "CRITICAL_EXTENSION" and "40001" in str(caught.value)
    with lib.open((V11 / "31_extensions_mixed.dcf").read_bytes()) as f:  # the unknown record is skipped
        assert f.attachment_names() == ["generation_config.json", "tokenizer.json"] and len(f) == 3
