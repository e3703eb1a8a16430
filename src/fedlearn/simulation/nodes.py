"""How a simulator gets the node it runs a task on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fedlearn.core.messages import Reply, Task


class TaskHandler(Protocol):
    """Anything that answers tasks for one node; ``fedlearn.client.NodeApp`` is the usual one."""

    def handle(self, task: Task) -> Reply: ...


NodeFactory = Callable[[str], TaskHandler]
"""Builds the node with a given id. Called once per node, in the process that runs it."""


class NodeCache:
    """Builds each node on first use and keeps it, so its state survives between rounds."""

    def __init__(self, factory: NodeFactory) -> None:
        self._factory = factory
        self._nodes: dict[str, TaskHandler] = {}

    def get(self, node_id: str) -> TaskHandler:
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = self._factory(node_id)
        return node
