"""A node process that tries to starve the coordinator instead of poisoning the model.

Run as ``python -m tests.runtime.deploy.hostile_streams --coordinator HOST:PORT --name N [--silent K]
[--duplicates D --size BYTES]`` with the token in ``FEDLEARN_NODE_TOKEN``. It is a registered node
with a valid token, so every call it makes is authenticated.

``--silent K`` keeps K streams open that never send a message, half Uploads and half Sessions,
opening a new one a second after any of them ends. ``--duplicates D`` holds a session and answers
each task with D concurrent uploads of ``--size`` bytes of garbage (with a matching digest, so
the bytes are worth buffering). It prints a line per attempt outcome to stdout as it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import os
import signal
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.proto import fleet_pb2_grpc as pb_grpc

CHUNK = 1 << 20


async def _silent_stream(stub: pb_grpc.FleetStub, metadata: tuple[tuple[str, str], ...], index: int) -> str:
    """Open a stream and never write to it; returns how it ended."""
    try:
        if index % 2:
            await stub.Upload(metadata=metadata)
        else:
            async for _ in stub.Session(metadata=metadata):
                pass
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


async def _hold_silent(stub: pb_grpc.FleetStub, metadata: tuple[tuple[str, str], ...], count: int) -> None:
    outcomes: collections.Counter[str] = collections.Counter()

    async def keep(index: int) -> None:
        while True:
            outcomes[await _silent_stream(stub, metadata, index)] += 1
            await asyncio.sleep(1.0)

    async def report() -> None:
        while True:
            await asyncio.sleep(2.0)
            print("silent", dict(outcomes), flush=True)

    await asyncio.gather(report(), *(keep(i) for i in range(count)))


async def _upload(stub: pb_grpc.FleetStub, metadata: tuple[tuple[str, str], ...], task_id: str, data: bytes) -> str:
    header = pb.ReplyHeader(
        task_id=task_id, num_examples=1, payload=pb.BlobRef(digest=hashlib.sha256(data).hexdigest(), size=len(data))
    )

    async def messages() -> AsyncIterator[pb.UploadMessage]:
        yield pb.UploadMessage(header=header)
        view = memoryview(data)
        for start in range(0, len(data), CHUNK):
            yield pb.UploadMessage(chunk=bytes(view[start : start + CHUNK]))

    try:
        ack = await stub.Upload(messages(), metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return "accepted" if ack.accepted else f"dropped: {ack.detail}"


async def _duplicate(stub: pb_grpc.FleetStub, metadata: tuple[tuple[str, str], ...], copies: int, size: int) -> None:
    data = os.urandom(size)

    async def hello() -> AsyncIterator[pb.NodeMessage]:
        yield pb.NodeMessage(hello=pb.Hello(protocol=1))
        while True:
            await asyncio.sleep(0.5)
            yield pb.NodeMessage(heartbeat=pb.Heartbeat())

    async for message in stub.Session(hello(), metadata=metadata):
        if message.HasField("task"):
            task_id = message.task.task_id
            outcomes = await asyncio.gather(*(_upload(stub, metadata, task_id, data) for _ in range(copies)))
            print("duplicates", sorted(outcomes), flush=True)


async def _main(args: argparse.Namespace) -> None:
    metadata = (("x-fedlearn-node", args.name), ("x-fedlearn-token", os.environ["FEDLEARN_NODE_TOKEN"]))
    async with grpc.aio.insecure_channel(args.coordinator) as channel:
        stub = pb_grpc.FleetStub(channel)  # type: ignore[no-untyped-call]
        jobs = []
        if args.silent:
            jobs.append(_hold_silent(stub, metadata, args.silent))
        if args.duplicates:
            jobs.append(_duplicate(stub, metadata, args.duplicates, args.size))
        await asyncio.gather(*jobs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--silent", type=int, default=0)
    parser.add_argument("--duplicates", type=int, default=0)
    parser.add_argument("--size", type=int, default=CHUNK)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
