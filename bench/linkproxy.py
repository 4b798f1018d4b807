#!/usr/bin/env python3
"""A TCP proxy that behaves like a slow link: what `tc netem delay D rate R`
would do, for kernels without netem (CONFIG_NET_SCH_NETEM unset, as on the
benchmark machines).

    linkproxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS MBIT

Each direction is one link shared by every connection: a chunk leaves when
the link is free and takes len·8/R seconds to send, then arrives D ms
later (so transfers are pipelined, as on a real link). A new connection
waits one round trip (2·D) before its first byte is forwarded: the TCP
handshake a real client pays. Everything on 127.0.0.1.
"""
import asyncio
import sys
import time


class Link:
    def __init__(self, delay, bits_per_second):
        self.delay = delay
        self.rate = bits_per_second
        self.free = 0.0

    def schedule(self, n):
        """When a chunk of n bytes sent now arrives."""
        start = max(time.monotonic(), self.free)
        self.free = start + n * 8 / self.rate
        return self.free + self.delay


async def pump(reader, writer, link, handshake):
    queue = asyncio.Queue()

    async def deliver():
        while True:
            item = await queue.get()
            if item is None:
                break
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except OSError:
            pass

    task = asyncio.create_task(deliver())
    await handshake
    try:
        while True:
            data = await reader.read(16384)
            if not data:
                break
            queue.put_nowait((link.schedule(len(data)), data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait(None)
    await task


async def main():
    port, upstream, delay_ms, mbit = map(float, sys.argv[1:5])
    delay = delay_ms / 1000
    up = Link(delay, mbit * 1e6)
    down = Link(delay, mbit * 1e6)

    async def handle(creader, cwriter):
        handshake = asyncio.create_task(asyncio.sleep(2 * delay))
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", int(upstream))
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(
            pump(creader, uwriter, up, handshake),
            pump(ureader, cwriter, down, handshake),
            return_exceptions=True,
        )
        for w in (cwriter, uwriter):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", int(port))
    async with server:
        await server.serve_forever()


asyncio.run(main())
