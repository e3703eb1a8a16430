"""The networked runtime: a coordinator and node agents over gRPC, with a durable store.

Nodes connect out to the coordinator (``NodeAgent``); the coordinator serves them as a ``Fleet``
(``GrpcFleet`` + ``serve``), so the same engine that drives a simulation drives a deployment.
The ``Coordinator`` runs submitted runs one at a time and checkpoints every round to the
``Store`` (``fedlearn.runtime.store``), so a restarted coordinator resumes where it stopped.
"""

from fedlearn.runtime.agent import NodeAgent
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.grpc_fleet import GrpcFleet, TransferStats, serve
from fedlearn.runtime.tls import ClientTLS, ServerTLS, load_client_tls, load_server_tls

__all__ = [
    "ClientTLS",
    "Coordinator",
    "GrpcFleet",
    "NodeAgent",
    "ServerTLS",
    "TransferStats",
    "load_client_tls",
    "load_server_tls",
    "serve",
]
