"""The demo's proxy (demo/proxy.py: PyPI's configurable-http-proxy, made to stream) as a real
process in front of a real upstream: a streamed response reaches the client chunk by chunk,
and requests held by the upstream (progress streams, slow stops) do not make other requests
queue behind them (tornado's default would allow 10 at a time)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest_asyncio
from tornado import httpclient, httpserver, web

from jupyter_spark_openstack.core.spark.ports import free_port, port_open

HELD = 14          # more than tornado's default of 10 concurrent upstream requests
HOLD_S = 6.0


class Slow(web.RequestHandler):
    async def get(self):
        await asyncio.sleep(HOLD_S)
        self.finish("slow")


class Fast(web.RequestHandler):
    def get(self):
        self.finish("fast")


class Stream(web.RequestHandler):
    async def get(self):
        for i in range(3):
            self.write(f"chunk{i}\n")
            await self.flush()
            await asyncio.sleep(1.0)
        self.finish()


@pytest_asyncio.fixture(loop_scope="function")  # the upstream serves in the test's own loop
async def proxied():
    upstream_port, port, api_port = free_port(), free_port(), free_port()
    app = web.Application([(r"/slow", Slow), (r"/fast", Fast), (r"/stream", Stream)])
    server = httpserver.HTTPServer(app)
    server.listen(upstream_port, "127.0.0.1")
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": "test-token"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_spark_openstack.demo.proxy", "--ip", "127.0.0.1",
         "--port", str(port), "--api-ip", "127.0.0.1", "--api-port", str(api_port),
         "--default-target", f"http://127.0.0.1:{upstream_port}",
         "--timeout", "60000", "--proxy-timeout", "60000"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port, timeout=0.5):
            assert proc.poll() is None and time.monotonic() < deadline, "the proxy did not start"
            await asyncio.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        server.stop()


async def test_held_requests_do_not_queue_the_others(proxied):
    client = httpclient.AsyncHTTPClient(force_instance=True, max_clients=HELD + 5)
    done: list[str] = []

    async def get(path):
        r = await client.fetch(proxied + path, request_timeout=60)
        done.append(r.body.decode())

    held = [asyncio.ensure_future(get("/slow")) for _ in range(HELD)]
    await asyncio.sleep(1.0)  # all of them are at the upstream now
    await get("/fast")
    # the fast request was answered while every held one was still held
    assert done == ["fast"], done
    await asyncio.gather(*held)
    assert done.count("slow") == HELD
    client.close()


async def test_a_streamed_response_arrives_in_chunks(proxied):
    client = httpclient.AsyncHTTPClient(force_instance=True)
    arrivals: list[tuple[float, bytes]] = []
    t0 = time.monotonic()
    await client.fetch(proxied + "/stream", request_timeout=60,
                       streaming_callback=lambda c: arrivals.append((time.monotonic() - t0, c)))
    client.close()
    body = b"".join(c for _, c in arrivals)
    assert body == b"chunk0\nchunk1\nchunk2\n"
    # the first chunk came before the upstream finished (a buffering proxy sends it all at the end)
    first = next(t for t, c in arrivals if b"chunk0" in c)
    assert first < arrivals[-1][0] - 1.0, arrivals
