"""Pack and unpack a checkpoint tensor by tensor, and measure the memory it takes.

As a script, one step per process so that its peak memory is its own::

    python tools/bench_scale.py pack SRC.safetensors OUT.dcf [--dc]
    python tools/bench_scale.py unpack SRC.dcf OUT.safetensors

``pack`` reads one tensor at a time (plain reads, no memory map), applies the Deep Compression
recipe of ``bench_models.DC_RECIPE`` with ``--dc`` (``dcformat.pack.compress_tensor``: pruning and
k-means) and hands it to ``DCFWriter.add``, which encodes and writes it at once. ``unpack`` writes
the safetensors header from the dcf index first, then decodes and writes one tensor at a time,
releasing the file's mapped pages after each (``DCFReader.release_pages``). Each prints one JSON
line: wall and CPU seconds, sizes, the largest tensor, and the peak resident set ``VmHWM`` (not
``ru_maxrss``, which after ``fork`` and ``exec`` still counts the parent's memory).

:func:`run_measured` runs such a step in a child process and samples the child's ``RssAnon``
(its own memory: arrays, heap; not file pages) from ``/proc`` every few milliseconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bench_models  # noqa: E402


def pack(source, out, dc: bool) -> dict:
    import dcformat
    from dcformat.pack import Recipe, compress_tensor

    recipe = Recipe.from_dict(bench_models.DC_RECIPE) if dc else None
    reader = bench_models.SafetensorsStream(source)
    largest = parameters = tensors = 0
    with dcformat.DCFWriter(out, metadata={"source": os.path.basename(os.fspath(source))}) as writer:
        for name, array in reader:
            largest = max(largest, array.nbytes)
            parameters += array.size
            tensors += 1
            if recipe is not None:
                stored, encoding = compress_tensor(array, recipe.policy_for(name, array))
                if stored is not array:
                    del array  # the source is not needed once it is pruned and shared
                writer.add(name, stored, encoding)
                del stored
            else:
                writer.add(name, array)
            array = None
    reader.close()
    return {"tensors": tensors, "parameters": parameters, "largest_tensor_bytes": largest}


def unpack(source, out) -> dict:
    import dcformat
    from dcformat.structures import numpy_dtype

    largest = parameters = 0
    with dcformat.open(source) as reader:
        infos = reader.tensors_info()
        writer = bench_models.SafetensorsWriter(
            out, [(i.name, numpy_dtype(i.dtype), i.shape) for i in infos], reader.metadata())
        for info in infos:
            array = reader.get_tensor(info.name)
            largest = max(largest, array.nbytes)
            parameters += array.size
            writer.write(info.name, array)
            del array
            reader.release_pages()
        writer.close()
    return {"tensors": len(infos), "parameters": parameters, "largest_tensor_bytes": largest}


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    step, source, out = args[:3]
    start, cpu = time.perf_counter(), time.process_time()
    if step == "pack":
        result = pack(source, out, dc="--dc" in args)
    elif step == "unpack":
        result = unpack(source, out)
    else:
        raise SystemExit(f"unknown step {step!r}")
    result.update(step=step, seconds=time.perf_counter() - start, cpu=time.process_time() - cpu,
                  in_bytes=os.path.getsize(source), out_bytes=os.path.getsize(out),
                  maxrss_bytes=_status("self")["VmHWM"])
    print(json.dumps(result))
    return 0


def _status(pid) -> dict[str, int]:
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    fields[key] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return fields


def run_measured(args, interval: float = 0.005) -> dict:
    """Run ``bench_scale.py ARGS`` in a child; its JSON result plus ``peak_anon_bytes``."""
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), *map(str, args)],
                             stdout=subprocess.PIPE, text=True)
    peak_anon = 0
    while child.poll() is None:
        peak_anon = max(peak_anon, _status(child.pid).get("RssAnon", 0))
        time.sleep(interval)
    output = child.stdout.read()
    if child.returncode:
        raise RuntimeError(f"bench_scale {args[0]} failed with code {child.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_anon_bytes"] = peak_anon
    return result


if __name__ == "__main__":
    raise SystemExit(main())
