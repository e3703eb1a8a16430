"""Secure-aggregation masks: GB/s per core, and memory while masking a model larger than 2 GB.

Throughput. One thread (AES-CTR in OpenSSL and numpy's in-place add each run on the calling
thread) generates ``--total`` bytes of mask per repeat, block by block into one reused buffer
of ``--block`` elements, for ``uint32`` (mod 2^32) and ``uint64`` (mod 2^64):

* ``expand``: :func:`fedlearn.privacy.expand_seed_into`, the AES-256-CTR keystream alone;
* ``apply``: :func:`fedlearn.privacy.apply_masks` with one seed, the keystream plus the modular
  add into a vector block (what masking costs per neighbour);
* ``encode``: :func:`fedlearn.privacy.encode_into` from float32 (clip, weight, scale,
  stochastic rounding), counted in bytes of encoded output;
* ``masker`` and ``encoder``: the same work as ``apply`` and ``encode`` through the streaming
  :class:`~fedlearn.privacy.masks.Masker` and :class:`~fedlearn.privacy.encoding.Encoder`,
  one object for all the blocks of a vector, as nodes and the coordinator use them (each keeps
  its cipher running from block to block).

GB/s are 10^9 bytes per second, the median over ``--repeats`` repeats (min and max shown).

Large model (``--model-bytes``, off by default). A child process allocates a ``uint32`` vector
of that many bytes, adds two masks and subtracts them again block by block, checks that the
vector is back to zero, and reports the time and its peak RSS, which should be the vector plus
the interpreter and O(block), not a multiple of the model. Run from the repository root:

    .venv/bin/python benchmarks/secagg_masks.py --repeats 5
    .venv/bin/python benchmarks/secagg_masks.py --repeats 1 --model-bytes 2200000000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from fedlearn.privacy import FixedPoint, apply_masks, blocks, encode_into, expand_seed_into, new_seed
from fedlearn.privacy.encoding import Encoder
from fedlearn.privacy.masks import Masker


def _throughput(step: Callable[[int], None], total: int, block_bytes: int) -> float:
    """GB/s of ``step(offset)`` calls that each produce ``block_bytes``, until ``total`` bytes."""
    calls = max(1, total // block_bytes)
    started = time.perf_counter()
    for i in range(calls):
        step(i)
    return calls * block_bytes / (time.perf_counter() - started) / 1e9


def measure(dtype: type, block: int, total: int, repeats: int) -> dict[str, list[float]]:
    seed = new_seed()
    out = np.empty(block, dtype)
    vector = np.zeros(block, dtype)
    scratch = np.empty(block, dtype)
    values = np.random.default_rng(0).normal(size=block).astype(np.float32)
    encoding = FixedPoint.fit(100, clip=1.0, max_weight=1000, bits=8 * np.dtype(dtype).itemsize)

    def expand(i: int) -> None:
        expand_seed_into(seed, i * block, out)

    def apply(i: int) -> None:
        apply_masks(vector, i * block, [(seed, 1)], scratch=scratch)

    def encode(i: int) -> None:
        encode_into(values, weight=7, encoding=encoding, seed=seed, offset=i * block, out=out)

    masker = Masker([(seed, 1)], dtype=dtype)
    encoder = Encoder(encoding, seed=seed)

    def stream_mask(i: int) -> None:
        masker.apply(vector, i * block)

    def stream_encode(i: int) -> None:
        encoder.encode(values, weight=7, offset=i * block, out=out)

    steps: dict[str, Callable[[int], None]] = {
        "expand": expand,
        "apply": apply,
        "encode": encode,
        "masker": stream_mask,
        "encoder": stream_encode,
    }
    results: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():  # modes take turns, so drift in the machine falls on all alike
            results[name].append(_throughput(step, total, out.nbytes))
    return results


def model_child(model_bytes: int, block: int) -> dict[str, float]:
    vector = np.zeros(model_bytes // 4, np.uint32)
    scratch = np.empty(block, np.uint32)
    seeds = [(new_seed(), 1), (new_seed(), 1)]
    started = time.perf_counter()
    for start, stop in blocks(len(vector), block):
        apply_masks(vector[start:stop], start, seeds, scratch=scratch)
    masked = time.perf_counter() - started
    nonzero = bool(vector[:1000].any())
    for start, stop in blocks(len(vector), block):
        apply_masks(vector[start:stop], start, [(seed, -sign) for seed, sign in seeds], scratch=scratch)
    restored = not vector.any()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds_two_masks": masked, "masked": nonzero, "restored": restored, "peak_rss": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--total", type=int, default=2**30, help="bytes generated per measurement")
    parser.add_argument("--block", type=int, default=2**18, help="elements per block")
    parser.add_argument("--model-bytes", type=int, default=0)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(model_child(args.child, args.block)))
        return

    print("| dtype | mode | GB/s per core (median) | min | max |")
    print("|---|---|---|---|---|")
    for dtype in (np.uint32, np.uint64):
        for mode, rates in measure(dtype, args.block, args.total, args.repeats).items():
            name = np.dtype(dtype).name
            print(f"| {name} | {mode} | {statistics.median(rates):.2f} | {min(rates):.2f} | {max(rates):.2f} |")

    if args.model_bytes:
        command = [sys.executable, __file__, "--child", str(args.model_bytes), "--block", str(args.block)]
        report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        seconds, peak = report["seconds_two_masks"], report["peak_rss"]
        print(
            f"\nmodel of {args.model_bytes / 1e9:.2f} GB (uint32): two masks added in {seconds:.2f} s "
            f"({2 * args.model_bytes / seconds / 1e9:.2f} GB/s of mask), masked: {report['masked']}, "
            f"back to zero after subtracting them: {report['restored']}, peak RSS {peak / 1e6:,.0f} MB "
            f"({peak / args.model_bytes:.2f}x the model)"
        )


if __name__ == "__main__":
    main()
