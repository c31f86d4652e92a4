"""The ``mobile`` writer profile: no ZSTD anywhere, dense raw tensors PLAIN and aligned (usable in
place from a memory map), every other chunk within the bound, and exact decoding, with every preset."""
import json
import mmap
import os
import struct

import ml_dtypes
import numpy as np
import pytest

import dcformat
from dcformat import CodebookTensor, Encoding, EncodingError
from dcformat.cli import dcpack
from dcformat.constants import MAX_CHUNK_ELEMENTS, Codec, Layout, ValueCoding
from dcformat.encoding import encode_tensor
from dcformat.pack.packer import pack
from dcformat.pack.recipe import preset_recipe
from dcformat.profiles import MOBILE, MOBILE_CHUNK_ELEMENTS, get_profile
from dcformat.structures import numpy_dtype

from pack_fixtures import bf16_model, small_model


def _walk(path):
    """Every stream of the file as (tensor info, chunk extent or None for a codebook, stream info)."""
    with dcformat.open(path) as reader:
        infos = reader.tensors_info()
        metadata = reader.metadata()
        alignment = reader.header.alignment_log2
    out = []
    for info in infos:
        if info.codebook is not None:
            out.append((info, None, info.codebook))
        for chunk in info.chunks:
            out.extend((info, chunk.extent, s) for s in chunk.streams)
    return infos, metadata, alignment, out


def check_mobile(path, expected=None):
    """Assert every promise of the mobile profile on the file at ``path``; returns the decoded tensors.

    ``expected``: name -> array that dense raw tensors must equal byte for byte."""
    infos, metadata, alignment, streams = _walk(path)
    assert metadata["dcformat.profile"] == "mobile"
    assert alignment == 6
    decoded = dcformat.load_file(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for info, extent, s in streams:  # no ZSTD stream, nor a ZSTD plane inside BYTEPLANES
            assert s.codec != Codec.ZSTD, info.name
            if s.length:
                assert s.offset % 64 == 0
            if s.codec == Codec.BYTEPLANES:
                _, planes, _ = struct.unpack_from("<BBH", data, s.offset)
                codecs = [data[s.offset + 4 + 8 * j] for j in range(planes)]
                assert Codec.ZSTD not in codecs, info.name
        for info in infos:
            cols = int(np.prod(info.shape[1:])) if info.layout == Layout.CSR else 1
            if info.layout == Layout.DENSE and info.value_coding == ValueCoding.RAW and info.chunks:
                # in place: the VALUES streams, back to back, are the tensor's little-endian bytes
                assert all(c.streams[0].codec == Codec.PLAIN for c in info.chunks)
                assert all(c.extent == MAX_CHUNK_ELEMENTS for c in info.chunks[:-1])
                first = info.chunks[0].streams[0]
                dtype = np.dtype(numpy_dtype(info.dtype)).newbyteorder("<")
                view = np.frombuffer(data, dtype, count=info.numel, offset=first.offset).reshape(info.shape)
                assert view.tobytes() == np.ascontiguousarray(decoded[info.name]).tobytes()
                if expected is not None and info.name in expected:
                    assert view.tobytes() == np.ascontiguousarray(expected[info.name]).tobytes()
                del view
            else:
                for chunk in info.chunks:
                    assert chunk.extent * cols <= MOBILE_CHUNK_ELEMENTS, (info.name, chunk.extent, cols)
    return decoded


@pytest.mark.parametrize("preset", ["lossless", "safe", "aggressive"])
def test_mobile_with_every_preset(tmp_path, preset):
    model = small_model()
    rows = MOBILE_CHUNK_ELEMENTS // 400 + 10  # more than one chunk of sparse rows
    model["big.weight"] = np.random.default_rng(3).normal(0, 0.1, (rows, 400)).astype(np.float32)
    recipe = preset_recipe(preset)
    plain_path, mobile_path = tmp_path / "default.dcf", tmp_path / "mobile.dcf"
    pack(model, plain_path, recipe)
    result = pack(model, mobile_path, recipe, profile="mobile")  # verify=True: decodes as packed
    assert result.metadata["dcformat.profile"] == "mobile"
    decoded = check_mobile(mobile_path, expected=model)
    default = dcformat.load_file(plain_path)
    for report in result.tensors:
        if report.lossless:  # raw tensors come back bit-exact
            assert decoded[report.name].tobytes() == model[report.name].tobytes()
        elif preset == "aggressive":  # the same recipe gives the same values, only stored otherwise
            assert decoded[report.name].tobytes() == default[report.name].tobytes()
        else:
            assert report.relative_error <= 0.03
    if preset == "lossless":
        assert all(decoded[n].tobytes() == model[n].tobytes() for n in model)


def test_api_every_dtype_and_shape(tmp_path):
    rng = np.random.default_rng(5)
    long = MOBILE_CHUNK_ELEMENTS + 1
    tensors = {
        "f32": rng.normal(0, 1, (3, long)).astype(np.float32),  # rows longer than a chunk
        "f64": rng.normal(0, 1, 1000),
        "f16": rng.normal(0, 1, (40, 50)).astype(np.float16),
        "bf16": rng.normal(0, 0.1, (300, 300)).astype(ml_dtypes.bfloat16),
        "quantized": rng.integers(-3, 4, (256, 512)).astype(np.float32) / 8,  # lossless codebook
        "i8": rng.integers(-128, 128, 5000).astype(np.int8),
        "u64": rng.integers(0, 2**63, 7, dtype=np.uint64),
        "bool": rng.random((9, 9)) < 0.5,
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }
    indices = np.where(rng.random((2, long)) < 0.05, rng.integers(0, 16, (2, long)), -1).astype(np.int32)
    sparse_rows = np.where(rng.random((1000, 300)) < 0.05, rng.integers(0, 16, (1000, 300)), -1).astype(np.int32)
    codebook = np.linspace(-1, 1, 16).astype(np.float32)
    shared = {"long_rows": CodebookTensor(codebook, indices, np.float32),
              "csr": CodebookTensor(codebook, sparse_rows, np.float32)}
    path = tmp_path / "m.dcf"
    dcformat.save_file({**tensors, **shared}, path, metadata={"app": "demo"}, profile="mobile")
    decoded = check_mobile(path, expected=tensors)
    for name, array in tensors.items():
        assert decoded[name].dtype == array.dtype and decoded[name].tobytes() == array.tobytes(), name
    for name, tensor in shared.items():
        assert np.array_equal(decoded[name], tensor.decode()), name
    with dcformat.open(path) as reader:
        layouts = {i.name: i.layout for i in reader.tensors_info()}
        assert reader.metadata()["app"] == "demo"
    assert layouts["long_rows"] == Layout.DENSE and layouts["csr"] == Layout.CSR
    in_memory = dcformat.save(tensors, profile=MOBILE)  # a Profile object works as its name does
    assert dcformat.load(in_memory)["f64"].tobytes() == tensors["f64"].tobytes()


def test_bf16_and_byteplanes_keep_to_the_profile(tmp_path):
    path = tmp_path / "b.dcf"
    dcformat.save_file(bf16_model(), path, profile="mobile")
    check_mobile(path, expected=bf16_model())
    # the codec restriction reaches into BYTEPLANES planes: no ZSTD plane when zstd is not allowed
    w = np.random.default_rng(0).normal(0, 1, 50_000).astype(np.float32)
    stream = encode_tensor(w, Encoding(codecs=("byteplanes", "huffman"), codebook="never")).chunks[0][1][0][0]
    assert stream.codec == Codec.BYTEPLANES
    assert all(stream.payload[4 + 8 * j] in (Codec.PLAIN, Codec.HUFFMAN) for j in range(4))


def test_in_place_matches_the_mapped_bytes(tmp_path):
    w = np.random.default_rng(1).normal(0, 1, (512, 384)).astype(np.float32)
    path = tmp_path / "w.dcf"
    dcformat.save_file({"b": np.arange(3, dtype=np.float32), "w": w}, path, profile="mobile")
    with dcformat.open(path) as reader:
        (chunk,) = reader.info("w").chunks
    offset = chunk.streams[0].offset
    assert offset % 64 == 0 and chunk.extent == w.size
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        view = np.frombuffer(data, "<f4", count=w.size, offset=offset)
        assert np.array_equal(view.reshape(w.shape), w)
        del view


def test_profile_refuses_what_it_forbids(tmp_path):
    w = np.ones((4, 4), np.float32)
    with pytest.raises(EncodingError, match="unknown profile"):
        dcformat.save({"w": w}, profile="desktop")
    with pytest.raises(EncodingError, match="zstd"):
        dcformat.save({"w": w}, encodings={"w": Encoding(codecs=("zstd",))}, profile="mobile")
    with pytest.raises(EncodingError, match="chunks of at most"):
        dcformat.save({"w": w}, encodings={"w": Encoding(chunk_elements=2**20)}, profile="mobile")
    with pytest.raises(EncodingError, match="alignment_log2"):
        dcformat.save({"w": w}, alignment_log2=3, profile="mobile")
    with pytest.raises(EncodingError, match="dcformat.profile"):
        dcformat.save({"w": w}, metadata={"dcformat.profile": "other"}, profile="mobile")
    with pytest.raises(EncodingError, match="longer than a chunk"):
        dcformat.save({"w": np.zeros((2, MOBILE_CHUNK_ELEMENTS + 1), np.float32)},
                      encodings={"w": Encoding(layout="csr")}, profile="mobile")
    # a tensor encoded outside the profile is refused by a mobile writer
    ids = np.random.default_rng(2).integers(0, 3, 20_000).astype(np.int64)
    encoded = encode_tensor(ids, Encoding(codecs=("zstd",)))
    writer = dcformat.DCFWriter(tmp_path / "z.dcf", profile="mobile")
    with pytest.raises(EncodingError, match="ZSTD"):
        writer.add_encoded("ids", encoded)
    writer.abort()
    assert get_profile(None) is None and get_profile("mobile") is MOBILE


def test_dcpack_profile_flag(tmp_path, capsys):
    from safetensors.numpy import save_file

    src = tmp_path / "m.safetensors"
    save_file(small_model(), str(src))
    out = tmp_path / "m.dcf"
    assert dcpack.main([str(src), "-o", str(out), "--preset", "safe", "--profile", "mobile", "-q"]) == 0
    check_mobile(out)
    with dcformat.open(out) as reader:
        assert json.loads(reader.metadata()["dcformat.recipe"])["preset"] == "safe"
    with pytest.raises(SystemExit) as exc:
        dcpack.main([str(src), "-o", str(out), "--profile", "tiny"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.fixture(scope="module")
def dcfdecode_nozstd():
    import shutil
    import subprocess

    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(["make", "-s", "-C", root, "native"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return os.path.join(root, "build", "native", "nozstd", "dcfdecode")


@pytest.mark.parametrize("preset", ["lossless", "safe", "aggressive"])
def test_the_zstd_less_c_decoder_reads_mobile_files(tmp_path, dcfdecode_nozstd, preset):
    import subprocess

    from safetensors.numpy import load_file

    model = small_model()
    mobile, default = tmp_path / "mobile.dcf", tmp_path / "default.dcf"
    pack(model, mobile, preset_recipe(preset), profile="mobile")
    out = tmp_path / "out.safetensors"
    done = subprocess.run([dcfdecode_nozstd, str(mobile), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected, decoded = dcformat.load_file(mobile), load_file(str(out))
    assert sorted(decoded) == sorted(expected)
    assert all(decoded[n].dtype == expected[n].dtype and decoded[n].tobytes() == expected[n].tobytes() for n in expected)
    # the same model without the profile has ZSTD streams, which that build refuses
    pack(model, default, preset_recipe(preset))
    done = subprocess.run([dcfdecode_nozstd, str(default), "-o", str(tmp_path / "d.safetensors")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "without zstd" in done.stderr
