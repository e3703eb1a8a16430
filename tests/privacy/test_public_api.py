"""Pin the public API of ``fedlearn.privacy`` so changes to it are deliberate."""

from __future__ import annotations

import fedlearn.privacy


def test_privacy_all_is_pinned() -> None:
    assert sorted(fedlearn.privacy.__all__) == [
        "Accountant", "AdaptiveClipping", "AdvertisedKeys", "Charge", "DifferentialPrivacy", "Disclosure",
        "ExactEncoding", "FixedPoint", "FixedSizeSampling", "NeighbourGraph", "PoissonSampling", "PrivacyLedger",
        "RoundKeys", "SecAggParameters", "SecureAggregation", "SeededNoise", "Share", "ShareMessage", "SystemNoise",
        "apply_masks", "blocks", "check_capacity", "check_secagg_parameters", "combine_shares", "decode_exact",
        "decode_sum", "decode_weight", "decrypt_shares", "distributed_rho", "encode_exact", "encode_into",
        "encode_weight", "encrypt_shares", "exact_encoding", "expand_seed_into",
        "generate_identity", "identity_key", "neighbour_graph", "new_seed", "pairwise_mask_seed", "pairwise_sign",
        "plan_disclosure", "secagg_parameters", "share_key", "sign_keys", "split_secret", "verify_keys",
    ]  # fmt: skip


def test_privacy_all_names_resolve() -> None:
    assert all(hasattr(fedlearn.privacy, name) for name in fedlearn.privacy.__all__)
