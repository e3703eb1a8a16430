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

DEFAULT_MAX_REQUEST_BYTES = 2**20
"""1 MiB: the largest body the coordinator's HTTP API reads. Its requests are a run config's TOML
text or a small JSON analytics request, a few KiB; models travel over gRPC, never this way."""

DEFAULT_REQUEST_SECONDS = 30.0
"""The longest the HTTP API waits for each part of a request: its headers, from when the connection
opens or the previous answer ends, then its body, from the end of its headers. A client that
trickles bytes cannot hold a connection open, and 1 MiB in 30 s needs only 35 KiB/s."""

DEFAULT_MAX_BINS = 1_000
"""The most histogram bins one analytics task may ask a node for, summed over its histograms.

A node allocates its counts before it reads a row, so the cap is checked first; past a few hundred
bins most cells fall under the node's minimum-rows threshold anyway and are suppressed."""

DEFAULT_MAX_AUDIT_CHARS = 500
"""The longest string one field of a node's audit record keeps (as long as a reply's error); longer ones are cut."""

DEFAULT_MAX_AUDIT_ITEMS = 100
"""The most entries one list or mapping of a node's audit record keeps, then how many more there were.

What a task names (run id, dataset, columns) comes from the coordinator, so without these bounds a
hostile one could make every record, and the log, as large as its messages."""

DEFAULT_MAX_NEWTON_COEFFICIENTS = 10_000
"""The most coefficients a logistic-regression Newton step may ask a node for (classes × columns).

A node sums a Hessian of this many squared entries, 800 MB at the cap, so a coordinator asking for
a million classes is refused before the node allocates anything."""

DEFAULT_MAX_CALLS_PER_NODE = 8
"""Calls one node may have open on the coordinator at once. An honest node needs two or three
(its session, a transfer, a second session while it reconnects); the bound keeps a node that
opens hundreds of streams from taking the server's threads."""

DEFAULT_UPLOAD_BUFFER_BYTES = 2**30
"""1 GiB of replies being received at once, over all nodes; one larger reply is received alone."""

DEFAULT_NODE_UPLOAD_BYTES = 2**28
"""256 MiB of replies one node may be sending at once; a single larger reply is still accepted."""

DEFAULT_MAX_INVOCATION_BYTES = 2**22
"""4 MiB: the largest body the model server reads for one ``/invocations`` request, before parsing it.

A batch of 1,000 rows of 20 numeric columns is about 200 KiB of JSON. The bound is also the bound
on a request's parsing: a body takes up to about 25 times its size in Python objects while it is
parsed (a body of one-value rows is the worst case), and holds the interpreter for up to about
0.15 s per MiB on a slow core."""

DEFAULT_MAX_INVOCATION_ROWS = 100_000
"""The most rows one ``/invocations`` request may hold; counted once the body is parsed, before any row is
encoded or scored, so one request cannot hold the model, or the server's threads, for minutes."""
