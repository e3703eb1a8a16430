import fedlearn.runtime.store as store_package


def test_public_api_is_pinned():
    assert sorted(store_package.__all__) == [
        "DEFAULT_CHUNK_SIZE",
        "ModelRecord",
        "NodeRecord",
        "NodeStatus",
        "RUN_STATUSES",
        "RunRecord",
        "RunStatus",
        "SCHEMA_VERSION",
        "Store",
        "open_store",
    ]
