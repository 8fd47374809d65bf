"""The Python ``configurable-http-proxy``, streaming responses instead of buffering them.

PyPI's configurable-http-proxy (0.4) reads a whole upstream response before it answers, so
JupyterHub's spawn-progress stream (server-sent events) reaches the browser only when the
spawn is over and the progress bar never moves. This module runs the same proxy with one
method replaced: ``call_proxy`` forwards the status, headers and each chunk as they arrive.
The demo hub config starts it as ``python -m jupyter_spark_openstack.demo.proxy``; its
command line is the proxy's own.

It also lifts tornado's default of 10 concurrent upstream requests per process (the proxy
uses one shared ``AsyncHTTPClient``): with it, ten held requests (spawn-progress streams,
slow stops) made every other request through the proxy wait in a queue, and time out there.
The node proxy has no such limit; ``MAX_UPSTREAM`` is the new one.
"""

from __future__ import annotations

import sys

from configurable_http_proxy import handlers
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.iostream import StreamClosedError

_SKIP = {"content-length", "transfer-encoding", "content-encoding", "connection"}
MAX_UPSTREAM = 1024


async def call_proxy(self, path=None):
    url = await self.get_target_url(path)
    if url is None:
        return
    req = self._get_proxy_request(url)
    state = {"started": False}

    def on_header(line: str) -> None:
        line = line.rstrip("\r\n")
        if line.startswith("HTTP/"):
            parts = line.split(" ", 2)
            self.set_status(int(parts[1]), parts[2] if len(parts) > 2 else None)
            self._proxy_headers = []
        elif line and ":" in line:
            key, _, val = line.partition(":")
            self._proxy_headers.append((key.strip(), val.strip()))

    def apply_headers() -> None:
        if state["started"]:
            return
        state["started"] = True
        existing = {h[0].lower() for h in self._headers.get_all()}
        for key, val in getattr(self, "_proxy_headers", []):
            if key.lower() in _SKIP:
                continue
            if key.lower() in existing:
                self.set_header(key, val)
            else:
                self.add_header(key, val)

    def on_chunk(chunk: bytes) -> None:
        apply_headers()
        self.write(chunk)
        try:
            self.flush()
        except StreamClosedError:
            pass

    req.header_callback = on_header
    req.streaming_callback = on_chunk
    try:
        response = await AsyncHTTPClient().fetch(req, raise_error=False)
    except HTTPClientError as err:
        response = err.response
    except Exception as err:  # noqa: BLE001 - the proxy answers 503 like the original
        if not state["started"]:
            await self.handle_proxy_error(503, err)
        return
    if response is not None and not state["started"]:
        self.set_status(response.code)
    apply_headers()
    if not self._finished:
        self.finish()


handlers.ProxyHandler.call_proxy = call_proxy


def main() -> None:
    from configurable_http_proxy.cli import main as cli_main  # noqa: PLC0415

    # before any client exists: the proxy's handlers all share the one per-loop instance
    AsyncHTTPClient.configure(None, max_clients=MAX_UPSTREAM)
    sys.exit(cli_main())


if __name__ == "__main__":
    main()
