"""Generated gRPC bindings for ``fleet.proto``, the coordinator-node wire protocol.

Run ``regenerate.sh`` after editing the ``.proto``; the generated modules are committed so that
installing fedlearn does not need ``grpcio-tools``.
"""
