"""A fake OTLP/HTTP trace collector for benchmarks: answers 200 to ``POST /v1/traces`` and counts the export
requests, spans and bytes it got (``GET /stats`` returns them as JSON). I/O: a listening socket.

Run: ``python -m bench.collector --port 4318``; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:  # opentelemetry-proto comes with the otel extra; without it spans are not counted, only requests
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
except ImportError:  # pragma: no cover
    ExportTraceServiceRequest = None


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.spans = 0
        self.bytes = 0

    def add(self, body: bytes) -> None:
        spans = _spans(body)
        with self.lock:
            self.requests += 1
            self.spans += spans
            self.bytes += len(body)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "spans": self.spans, "bytes": self.bytes}


def _spans(body: bytes) -> int:
    if ExportTraceServiceRequest is None:
        return -1
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    return sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)


def handler(counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the OTLP exporter's session expects

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path.rstrip("/") != "/v1/traces":
                self._reply(404, b"", "text/plain")
                return
            counts.add(body)
            self._reply(200, b"", "application/x-protobuf")  # an empty ExportTraceServiceResponse

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._reply(200, json.dumps(counts.as_dict()).encode(), "application/json")
            elif self.path == "/healthz":
                self._reply(200, b'{"status":"ok"}', "application/json")
            else:
                self._reply(404, b"", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per export would be noise

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), handler(Counts()))
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()  # shutdown() waits for serve_forever

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
