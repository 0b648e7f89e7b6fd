"""A TCP proxy that adds a fixed delay to every request: S3's round trip in front of moto.

moto on localhost answers a GET with no network latency, so a client there is bound by CPU
(moto's and its own) and fetching concurrently can't show what it does against real S3, where
each small GET waits tens of milliseconds for its first byte. Each chunk the client sends (an
HTTP GET or LIST request is one) is held for ``--delay-ms`` before it is forwarded; responses
pass straight through. Connections are independent, so concurrent requests wait concurrently.

Usage: ``python -m bench.latency_proxy --target 127.0.0.1:PORT --delay-ms 20``; prints the
port it listens on (127.0.0.1, chosen by the OS) as its first line.
"""

from __future__ import annotations

import argparse
import asyncio


async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while chunk := await reader.read(1 << 16):
            if delay:
                await asyncio.sleep(delay)
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(target_host: str, target_port: int, delay: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        await asyncio.gather(forward(client_reader, server_writer, delay), forward(server_reader, client_writer, 0))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the S3 endpoint")
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    asyncio.run(serve(host, int(port), args.delay_ms / 1000))


if __name__ == "__main__":
    main()
