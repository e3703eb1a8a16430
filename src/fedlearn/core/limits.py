"""One named default for each bound fedlearn puts on its inputs.

Every part that bounds the same thing imports its default from here, so a message size, for
example, is limited to the same number in the run config, the codec, reply validation, the gRPC
transport and the CLI, and an error message that names the limit names the same value everywhere.
"""

from __future__ import annotations

DEFAULT_MAX_MESSAGE_BYTES = 2**33
"""8 GiB: the largest model, task or reply accepted. Larger models need the limit raised on both ends."""

DEFAULT_MAX_EXAMPLES = 10**12
"""The largest example count a reply may claim; it weights the average, so it is bounded."""

DEFAULT_REORDER_BUFFER_BYTES = 2**30
"""1 GiB of early replies held in memory by a stage before the rest spill to disk."""

DEFAULT_MAX_CALLS_PER_NODE = 8
"""Calls one node may have open on the coordinator at once. An honest node needs two or three
(its session, a transfer, a second session while it reconnects); the bound keeps a node that
opens hundreds of streams from taking the server's threads."""

DEFAULT_UPLOAD_BUFFER_BYTES = 2**30
"""1 GiB of replies being received at once, over all nodes; one larger reply is received alone."""

DEFAULT_NODE_UPLOAD_BYTES = 2**28
"""256 MiB of replies one node may be sending at once; a single larger reply is still accepted."""
