"""Privacy: the pure pieces of secure aggregation and differential privacy (no I/O, no networking).

Secure aggregation (SecAgg+, Bell et al. 2020; full SecAgg, Bonawitz et al. 2017) lets the
coordinator learn only the sum of the nodes' updates. This part holds its building blocks; the
protocol stages are built on top of them elsewhere. Each module has one job:

- ``keys``: fresh X25519 key pairs each round, X25519 + HKDF-SHA256 pairwise keys (mask seed and
  share-encryption key), Ed25519-signed key adverts;
- ``aead``: AES-256-GCM sealing of the share messages nodes send each other via the coordinator;
- ``shamir``: t-of-n Shamir sharing of 32-byte secrets over GF(2^521 - 1);
- ``masks``: AES-256-CTR expansion of seeds into masks mod 2^32 or 2^64, applied block by block;
- ``encoding``: fixed-point encoding of weighted updates, the overflow check and the error bound;
- ``masked_input``: a node's update encoded and masked in one pass, block by block;
- ``exact``: float64 vectors encoded in 64-bit limbs so that their sum is exact (analytics' statistics);
- ``graph``: SecAgg+ degree and threshold from n, dropouts and corruptions, and the neighbour graph;
- ``disclosure``: which shares an honest node reveals at unmasking, never both of one peer;
- ``protocol``: what both ends of the protocol agree on: the ``SecureAggregation`` settings (a
  strategy piece), the layout of the summed vector, the bytes of the survivor set that is signed.

Differential privacy has four more:

- ``differential``: the ``DifferentialPrivacy`` strategy piece (mechanism, noise, clip, budget),
  adaptive clipping, and the zCDP bound of distributed discrete Gaussian noise (``distributed_rho``);
- ``accountant``: ε from ``dp-accounting`` (RDP or PLD) for a sampling, and the noise calibrator;
- ``ledger``: every release charged against a budget, as JSON;
- ``noise``: Gaussian and discrete Gaussian noise from a seeded (simulation) or secure (deployment) source.

Cryptography comes only from the ``cryptography`` package and secrets from the operating system.
See docs/secure-aggregation.md for the guarantees, formulas and costs.
"""

from fedlearn.privacy.accountant import Accountant, FixedSizeSampling, PoissonSampling
from fedlearn.privacy.aead import ShareMessage, decrypt_shares, encrypt_shares
from fedlearn.privacy.differential import AdaptiveClipping, DifferentialPrivacy, distributed_rho
from fedlearn.privacy.disclosure import Disclosure, plan_disclosure
from fedlearn.privacy.encoding import (
    FixedPoint,
    check_capacity,
    decode_sum,
    decode_weight,
    encode_into,
    encode_weight,
)
from fedlearn.privacy.exact import ExactEncoding, decode_exact, encode_exact, exact_encoding
from fedlearn.privacy.graph import (
    NeighbourGraph,
    SecAggParameters,
    check_secagg_parameters,
    neighbour_graph,
    secagg_parameters,
)
from fedlearn.privacy.keys import (
    AdvertisedKeys,
    RoundKeys,
    generate_identity,
    identity_key,
    pairwise_mask_seed,
    share_key,
    sign_keys,
    verify_keys,
)
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.privacy.masks import apply_masks, blocks, expand_seed_into, new_seed, pairwise_sign
from fedlearn.privacy.noise import SeededNoise, SystemNoise
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.privacy.shamir import Share, combine_shares, split_secret

__all__ = [
    "Accountant",
    "AdaptiveClipping",
    "AdvertisedKeys",
    "Charge",
    "DifferentialPrivacy",
    "Disclosure",
    "ExactEncoding",
    "FixedPoint",
    "FixedSizeSampling",
    "NeighbourGraph",
    "PoissonSampling",
    "PrivacyLedger",
    "RoundKeys",
    "SecAggParameters",
    "SecureAggregation",
    "SeededNoise",
    "Share",
    "ShareMessage",
    "SystemNoise",
    "apply_masks",
    "blocks",
    "check_capacity",
    "check_secagg_parameters",
    "combine_shares",
    "decode_exact",
    "decode_sum",
    "decode_weight",
    "decrypt_shares",
    "distributed_rho",
    "encode_exact",
    "encode_into",
    "encode_weight",
    "encrypt_shares",
    "exact_encoding",
    "expand_seed_into",
    "generate_identity",
    "identity_key",
    "neighbour_graph",
    "new_seed",
    "pairwise_mask_seed",
    "pairwise_sign",
    "plan_disclosure",
    "secagg_parameters",
    "share_key",
    "sign_keys",
    "split_secret",
    "verify_keys",
]
