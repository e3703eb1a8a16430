"""Fixed-point encoding of weighted updates into integers mod 2^bits, and decoding of their sum.

What secure aggregation sums is, for each node ``i`` with weight ``w_i`` (its example count) and
update ``x_i``, the vector ``w_i * clip(x_i)`` plus the weight ``w_i`` itself, so the coordinator
can form the weighted mean from two sums. :func:`encode_into` turns one block of an update into
integers modulo ``2^bits``:

1. clip each coordinate to ``[-clip, clip]``;
2. multiply by ``w_i * 2^fraction_bits`` (in float64; ``w_i <= max_weight``);
3. round stochastically to an integer ``q``: up with probability equal to the fractional part,
   so ``E[q]`` is the scaled value and the rounding is unbiased;
4. store ``q mod 2^bits``: negative values wrap, as in two's complement.

The weight is stored as the plain integer ``w_i`` (:func:`encode_weight`). Summing encodings
modulo ``2^bits`` sums the ``q``; :func:`decode_sum` reads the sum back as a signed integer and
divides by ``2^fraction_bits``. That is exact as long as no sum leaves
``[-2^(bits-1), 2^(bits-1))``, which :func:`check_capacity` guarantees up front for a given
number of nodes: with ``B = ceil(max_weight * clip * 2^fraction_bits)`` (the largest ``|q|`` a
node can send) it requires ``n * B <= 2^(bits-1) - 1`` and ``n * max_weight <= 2^bits - 1``.

Error bound. For every coordinate, the decoded sum ``S`` of ``n`` encodings and the exact sum
``T = sum_i w_i * clip(x_i)`` satisfy::

    |S - T| < n * 2^-fraction_bits * (1 + 2^-52)  +  n * max_weight * clip * 2^-51

The first term is stochastic rounding (each ``|q - scaled value| < 1`` unit of ``2^-fraction_bits``)
and dominates in practice; the second covers float64 rounding in step 2 and in decoding.
The rounding error has mean zero and standard deviation at most ``sqrt(n) * 2^-fraction_bits / 2``.
:meth:`FixedPoint.error_bound` gives the bound for a configuration.

Distributed differential privacy. Under distributed DP each node adds discrete Gaussian noise
``N_Z(0, sigma²)`` with ``sigma = noise_stddev * 2^fraction_bits`` to its encoded integers
(:func:`add_noise_into`), after encoding and before masking, wrapping modulo ``2^bits`` like the
masks. The integers sum exactly, so the decoded sum carries noise of standard deviation
``sqrt(n) * noise_stddev``, and no one ever sees a noiseless sum. The noise needs room in the
modulus: :func:`check_capacity` with ``noise_stddev`` allows each node :data:`NOISE_TAIL`
standard deviations of noise on top of ``B`` (a sample beyond them has probability below
10^-22), and :meth:`FixedPoint.fit` with ``noise_stddev`` leaves that room.

Where the rounding randomness comes from. Step 3 draws one 64-bit uniform per coordinate from
AES-256-CTR (the mask PRG, :func:`fedlearn.privacy.masks.expand_seed_into`) under a key derived
with HKDF from the ``seed`` argument, at the coordinate's offset, so encoding block by block
gives the same integers whatever the blocks. The randomness need not be secret for privacy:
the coordinator only ever sees masked values and their sum, and rounding is not a privacy
mechanism (differential privacy is added separately). It must be independent of the data for
the rounding to be unbiased, which a PRG keyed by a seed chosen before the data satisfies.
A deployed node draws a fresh seed per round with :func:`fedlearn.privacy.masks.new_seed` and
never reuses a mask seed for it; a simulation may derive it from the run's seed to be
reproducible. numpy's generators are not used.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedlearn.core.checks import Interval, Options, check, check_fields, check_int
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.framing import canonical
from fedlearn.privacy.masks import SEED_BYTES, Keystream, keystream

_CHUNK = 1 << 16
"""Elements an :class:`Encoder` works through at a time: 2 MiB of scratch (33 bytes an element) stays in cache,
and each numpy call covers enough elements that its fixed cost (a microsecond) is noise."""
_ZEROS = memoryview(bytes(8 * _CHUNK))

MAX_FRACTION_BITS = 512
"""A bound on ``fraction_bits`` that keeps ``2^fraction_bits`` a finite float64."""

MAX_WEIGHT_LIMIT = 2**53
"""``max_weight`` stays below this, so that ``w * 2^fraction_bits`` is exact in float64."""

NOISE_TAIL = 10
"""Standard deviations of a node's distributed-DP noise that the capacity check leaves room for."""
MAX_NOISE_SIGMA = 2.0**40
"""The largest discrete Gaussian ``sigma`` (in encoded units) a node draws: samples stay exact in int64."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedPoint:
    """A fixed-point encoding: coordinates clipped to ``[-clip, clip]``, weighted, scaled by ``2^fraction_bits``.

    ``bits`` (32 or 64) is the width of an encoded integer and sets the modulus ``2^bits`` that
    masks and sums wrap around. Use :meth:`fit` to get the finest ``fraction_bits`` that cannot
    overflow for a number of nodes, and :func:`check_capacity` to check a given configuration.
    """

    clip: float
    max_weight: int
    fraction_bits: int
    bits: int = 32

    def __post_init__(self) -> None:
        check_fields(
            self,
            {
                "clip": Interval(0, math.inf, closed="neither"),
                "max_weight": Interval(1, MAX_WEIGHT_LIMIT - 1, integer=True),
                "fraction_bits": Interval(0, MAX_FRACTION_BITS, integer=True),
                "bits": Options((32, 64)),
            },
        )
        if not math.isfinite(self._limit()):
            raise ConfigError(
                f"`max_weight` × `clip` × 2^`fraction_bits` must be finite; got {self.max_weight} × {self.clip} "
                f"× 2^{self.fraction_bits}"
            )

    @property
    def dtype(self) -> np.dtype:
        """``uint32`` or ``uint64``: the dtype of an encoded block."""
        return np.dtype(np.uint32 if self.bits == 32 else np.uint64)

    @property
    def node_bound(self) -> int:
        """``B``: the largest ``|q|`` one node's encoding can hold."""
        return math.ceil(self._limit())

    def noise_bound(self, noise_stddev: float) -> int:
        """The largest ``|noise|`` (in encoded units) the capacity allows one node's ``noise_stddev`` to reach."""
        return math.ceil(NOISE_TAIL * noise_stddev * 2.0**self.fraction_bits)

    def error_bound(self, n_nodes: int) -> float:
        """The largest absolute error of a decoded coordinate of the sum of ``n_nodes`` encodings (see the module)."""
        n = check_int("n_nodes", n_nodes, low=1)
        return n * 2.0**-self.fraction_bits * (1 + 2.0**-52) + n * self.max_weight * self.clip * 2.0**-51

    @classmethod
    def fit(
        cls, n_nodes: int, *, clip: float, max_weight: int, bits: int = 32, noise_stddev: float = 0.0
    ) -> FixedPoint:
        """The encoding with the most ``fraction_bits`` whose sum over ``n_nodes`` nodes cannot overflow.

        ``noise_stddev`` is each node's distributed-DP noise (in update units), which needs room too.
        """
        coarsest = cls(clip=clip, max_weight=max_weight, fraction_bits=0, bits=bits)
        check_capacity(n_nodes, coarsest, noise_stddev=noise_stddev)
        fraction_bits = _largest_fraction_bits(n_nodes, coarsest, noise_stddev)
        return cls(clip=clip, max_weight=max_weight, fraction_bits=fraction_bits, bits=bits)

    def _limit(self) -> float:
        """``max_weight * clip * 2^fraction_bits`` in float64, the value scaled coordinates are clipped to."""
        return float(self.max_weight) * self.clip * 2.0**self.fraction_bits


def check_capacity(n_nodes: int, encoding: FixedPoint, *, noise_stddev: float = 0.0) -> None:
    """Refuse, naming the parameter to change, an encoding whose sum over ``n_nodes`` nodes could overflow.

    With ``noise_stddev``, each node also adds distributed-DP noise of that standard deviation (in
    update units), of which :data:`NOISE_TAIL` standard deviations must fit as well.
    """
    n = check_int("n_nodes", n_nodes, low=1)
    check("noise_stddev", noise_stddev, Interval(0, math.inf))
    largest = 2 ** (encoding.bits - 1) - 1
    if noise_stddev > 0 and noise_stddev * 2.0**encoding.fraction_bits > MAX_NOISE_SIGMA:
        raise ConfigError(
            f"distributed-DP noise of standard deviation {noise_stddev:g} × 2^`fraction_bits` "
            f"{encoding.fraction_bits} exceeds 2^40 encoded units; lower `fraction_bits`"
        )
    noise = encoding.noise_bound(noise_stddev) if noise_stddev > 0 else 0
    if noise and n * (encoding.node_bound + noise) > largest:
        fits = _largest_fraction_bits(n, encoding, noise_stddev)
        advice = f"set `fraction_bits` to at most {fits}" if fits >= 0 else "lower `clip` or the noise"
        raise ConfigError(
            f"secure-aggregation sums of {n} nodes could overflow {encoding.bits} bits with distributed-DP noise: "
            f"the worst case is {n} × ({encoding.node_bound} + {NOISE_TAIL} × noise_stddev {noise_stddev:g} × "
            f"2^`fraction_bits` {encoding.fraction_bits}) = {n * (encoding.node_bound + noise)}, above "
            f"2^{encoding.bits - 1} - 1 = {largest}; {advice}"
            + (", or set `bits` to 64" if encoding.bits == 32 else "")
        )
    if n * encoding.node_bound > largest:
        fits = _largest_fraction_bits(n, encoding)
        if fits >= 0:
            advice = f"set `fraction_bits` to at most {fits}"
        else:
            per_unit = encoding.clip * 2.0**encoding.fraction_bits
            advice = f"lower `max_weight` to at most {max(0, math.floor(largest / n / per_unit))}"
        raise ConfigError(
            f"secure-aggregation sums of {n} nodes could overflow {encoding.bits} bits: the worst case is {n} × "
            f"ceil(`max_weight` {encoding.max_weight} × `clip` {encoding.clip:g} × 2^`fraction_bits` "
            f"{encoding.fraction_bits}) = {n * encoding.node_bound}, above 2^{encoding.bits - 1} - 1 = {largest}; "
            f"{advice}" + (", or lower `clip`, or set `bits` to 64" if encoding.bits == 32 else ", or lower `clip`")
        )
    if n * encoding.max_weight > 2**encoding.bits - 1:
        raise ConfigError(
            f"the sum of {n} weights up to `max_weight` {encoding.max_weight} could overflow {encoding.bits} bits; "
            f"lower `max_weight` to at most {(2**encoding.bits - 1) // n}"
            + (" or set `bits` to 64" if encoding.bits == 32 else "")
        )


def encode_into(
    values: np.ndarray, *, weight: int, encoding: FixedPoint, seed: bytes, offset: int, out: np.ndarray
) -> np.ndarray:
    """Encode one block of an update, weighted by ``weight``, into ``out``, and return ``out``.

    ``values`` holds elements ``offset .. offset + len(values)`` of the flattened update (finite
    floats); ``out`` is a writable contiguous array of ``encoding.dtype`` and the same length;
    ``seed`` (32 bytes) keys the rounding randomness, as the module explains. To encode many
    blocks of one update, an :class:`Encoder` is faster and gives the same integers.
    """
    source = np.asarray(values)
    encoder = Encoder(encoding, seed=seed, chunk_elements=max(1, source.size))
    return encoder.encode(source, weight=weight, offset=offset, out=out)


class Encoder:
    """Encodes the blocks of one update with one rounding seed: :func:`encode_into`, made for streaming.

    It keeps the rounding stream's cipher running from one block to the next (blocks in
    increasing, consecutive order set it up once; a block elsewhere restarts it) and works
    through each block in chunks that stay in cache, with scratch buffers reused from chunk to
    chunk and every numpy operation writing into them (``out=``): no temporary arrays, and no
    pass that the arithmetic does not need. The integers equal :func:`encode_into`'s for every
    block, whatever the blocks and chunks.
    """

    __slots__ = ("_bits", "_encoding", "_floor", "_fraction", "_key", "_next", "_stream", "_uniform", "_until", "_up")

    def __init__(self, encoding: FixedPoint, *, seed: bytes, chunk_elements: int = _CHUNK) -> None:
        """``chunk_elements`` (at most the default) sets the size of the scratch arrays, 33 bytes an element."""
        if not isinstance(encoding, FixedPoint):
            raise ConfigError(f"`encoding` must be a FixedPoint; got {type(encoding).__name__}")
        chunk = min(check_int("chunk_elements", chunk_elements, low=1), _CHUNK)
        self._encoding = encoding
        self._key = _rounding_key(seed)
        self._stream: Keystream | None = None
        self._next: int | None = None
        self._until = 0
        self._fraction = np.empty(chunk, dtype=np.float64)  # the scaled values, then their fractional parts
        self._floor = np.empty(chunk, dtype=np.float64)  # their floors, then the rounded values
        self._uniform = np.empty(chunk, dtype=np.float64)  # uniforms in [0, 1)
        self._bits = np.empty(chunk, dtype=np.uint64)  # raw rounding keystream, then the rounded values as int64
        self._up = np.empty(chunk, dtype=np.bool_)

    def encode(
        self, values: np.ndarray, *, weight: int, offset: int, out: np.ndarray, minus: np.ndarray | None = None
    ) -> np.ndarray:
        """Encode ``values`` (elements ``offset ..`` of the flattened update) into ``out``; return ``out``.

        With ``minus``, what is encoded is ``values - minus``, both taken to float64 first (the
        update of trained parameters over the global ones) without a temporary array.
        """
        encoding = self._encoding
        weight = encode_weight(weight, encoding)
        offset = check_int("offset", offset)
        source = np.asarray(values).reshape(-1)
        length = len(source)
        if not isinstance(out, np.ndarray) or out.dtype != encoding.dtype or out.shape != (length,):
            got = f"{out.dtype} of shape {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise ConfigError(f"`out` must be a {encoding.dtype} array of shape {(length,)}; got {got}")
        if not out.flags.writeable:
            raise ConfigError("`out` must be writable")
        base = None if minus is None else np.asarray(minus).reshape(-1)
        if base is not None and base.shape != source.shape:
            raise ConfigError(f"`minus` must have {length} elements like `values`; got {base.size}")
        if offset != self._next or offset + length > self._until:
            self._stream, until = keystream(self._key, offset * 8, (offset + length) * 8)
            self._until = until // 8
        stream = self._stream
        assert stream is not None
        clip, limit = encoding.clip, encoding._limit()
        factor = weight * 2.0**encoding.fraction_bits  # exact: weight < 2^53 times a power of two
        # |clip(x) * factor| <= limit already, as rounding is monotone, unless max_weight * clip is subnormal.
        clip_scaled = not float(encoding.max_weight) * clip >= sys.float_info.min
        # |q| <= node_bound: below 2^31 (as check_capacity asks), q goes straight into int32, whose bits are q mod 2^32.
        narrow = encoding.bits == 32 and encoding.node_bound < 2**31
        step = len(self._fraction)
        for start in range(0, length, step):
            stop = min(start + step, length)
            count = stop - start
            scaled, rounded = self._fraction[:count], self._floor[:count]
            uniform, raw, up = self._uniform[:count], self._bits[:count], self._up[:count]
            if base is None:
                np.copyto(scaled, source[start:stop], casting="unsafe")
            else:
                np.subtract(source[start:stop], base[start:stop], out=scaled, dtype=np.float64, casting="unsafe")
            _check_finite(scaled)
            np.clip(scaled, -clip, clip, out=scaled)
            scaled *= factor
            if clip_scaled:
                np.clip(scaled, -limit, limit, out=scaled)
            np.floor(scaled, out=rounded)
            scaled -= rounded  # the fractional parts, in [0, 1)
            stream.update_into(_ZEROS[: 8 * count], memoryview(raw).cast("B"))  # type: ignore[arg-type]
            if sys.byteorder == "big":  # the stream is read little-endian, like a mask
                raw.byteswap(inplace=True)
            raw >>= np.uint64(11)
            np.multiply(raw.view(np.int64), 2.0**-53, out=uniform)  # below 2^53: exact, and int64 converts faster
            np.less(uniform, scaled, out=up)  # round up with probability equal to the fractional part
            if narrow:
                integers = out[start:stop].view(np.int32)
                np.copyto(integers, rounded, casting="unsafe")
                integers += up
            else:
                rounded += up
                integers = raw.view(np.int64)
                np.copyto(integers, rounded, casting="unsafe")
                if encoding.bits == 64:
                    np.copyto(out[start:stop], integers.view(np.uint64))
                else:
                    np.copyto(out[start:stop], integers, casting="unsafe")  # int64 -> uint32 keeps q mod 2^32
        self._next = offset + length
        return out


def _check_finite(values: np.ndarray) -> None:
    """ConfigError unless every value is finite, in one pass with no temporary array.

    A NaN or an infinity makes the sum NaN or infinite, so a finite sum proves every value
    finite; only a sum that is not (an overflow of finite values, or a bad value) is looked at closely.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(values)
    if not math.isfinite(total):
        bad = values[~np.isfinite(values)]
        if len(bad):
            raise ConfigError(f"`values` must be finite; got {bad[0]} at some coordinate")


def encode_weight(weight: int, encoding: FixedPoint) -> int:
    """The integer that carries ``weight`` (an example count in ``[0, max_weight]``) in the summed vector."""
    return int(check("weight", weight, Interval(0, encoding.max_weight, integer=True)))


def decode_sum(total: np.ndarray, *, encoding: FixedPoint) -> np.ndarray:
    """The float64 sum of ``w_i * clip(x_i)`` from a block of the unmasked sum of encodings."""
    if not isinstance(total, np.ndarray) or total.dtype != encoding.dtype:
        got = total.dtype if isinstance(total, np.ndarray) else type(total).__name__
        raise ConfigError(f"`total` must be a {encoding.dtype} array; got {got}")
    decoded = total.view(np.int32 if encoding.bits == 32 else np.int64).astype(np.float64)
    decoded *= 2.0**-encoding.fraction_bits
    return decoded


def decode_weight(total: int, *, encoding: FixedPoint) -> int:
    """The sum of the weights from its element of the unmasked sum (already reduced mod 2^bits)."""
    value = check_int("total", int(total))
    if value >= 2**encoding.bits:
        raise ConfigError(f"`total` must be below 2^{encoding.bits}; got {value}")
    return value


def add_noise_into(out: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Add the int64 ``noise`` to the encoded block ``out`` in place, modulo ``2^bits`` like a mask; return ``out``."""
    if not isinstance(out, np.ndarray) or out.dtype not in (np.uint32, np.uint64) or noise.shape != out.shape:
        raise ConfigError(f"`noise` must match the encoded block's shape {getattr(out, 'shape', None)}")
    if noise.dtype != np.int64:
        raise ConfigError(f"`noise` must be int64; got {noise.dtype}")
    out += noise.view(np.uint64).astype(out.dtype, casting="unsafe")  # two's complement: -k becomes 2^bits - k
    return out


def _rounding_key(seed: bytes) -> bytes:
    """The AES key of the rounding stream: HKDF of ``seed``, so it never equals a mask's keystream."""
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ConfigError(f"the rounding `seed` must be {SEED_BYTES} bytes; got {type(seed).__name__}")
    info = canonical("stochastic-rounding")
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=info).derive(seed)


def _largest_fraction_bits(n_nodes: int, encoding: FixedPoint, noise_stddev: float = 0.0) -> int:
    """The largest ``fraction_bits`` (at most MAX_FRACTION_BITS) that fits ``n_nodes`` nodes, or -1 if none does."""
    largest = 2 ** (encoding.bits - 1) - 1
    base = float(encoding.max_weight) * encoding.clip
    fits = -1
    for fraction_bits in range(MAX_FRACTION_BITS + 1):
        scaled = base * 2.0**fraction_bits
        sigma = noise_stddev * 2.0**fraction_bits
        if not math.isfinite(scaled) or sigma > MAX_NOISE_SIGMA:
            break
        noise = math.ceil(NOISE_TAIL * sigma) if noise_stddev > 0 else 0
        if n_nodes * (math.ceil(scaled) + noise) > largest:
            break
        fits = fraction_bits
    return fits
