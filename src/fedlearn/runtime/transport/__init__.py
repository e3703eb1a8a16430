"""Pieces of the gRPC link shared by the coordinator and the node agent.

``limits`` (sizes and deadlines), ``chunks`` (cutting blobs and verifying their reassembly),
``stream`` (safetensors blobs straight from the arrays), ``envelope`` (tasks and replies to and
from protobuf headers plus blobs), ``blobs`` (encode-once store on the coordinator, decoded cache
on the node), ``backoff`` (reconnect delays), ``service`` (the coordinator's RPC handlers), and
what keeps one node from starving the others: ``admission`` (calls and reply bytes per node)
and ``deadlines`` (server-side deadlines for silent streams).
"""

from fedlearn.runtime.transport.backoff import Backoff
from fedlearn.runtime.transport.chunks import Assembler, iter_chunks
from fedlearn.runtime.transport.limits import DEFAULT_CHUNK_BYTES, DEFAULT_MAX_MESSAGE_BYTES, MAX_CHUNK_BYTES
from fedlearn.runtime.transport.stream import Blob, stream_encode

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_CHUNK_BYTES",
    "Assembler",
    "Backoff",
    "Blob",
    "iter_chunks",
    "stream_encode",
]
