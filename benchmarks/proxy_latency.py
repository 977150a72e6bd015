"""Model proxy latency overhead on a streamed response (target < 5 ms per request).

A minimal streaming endpoint runs in a process of its own and answers every request with
the same streamed Anthropic message (40 SSE events, one write each). The same
request is sent, alternately, straight to it and through a :class:`taskmill.proxy.ModelProxy`
in front of it (key injection, usage counting and all), over kept-alive connections, as
agent CLIs do. The figure is the time from sending the request to the last byte of the
stream, through the proxy minus direct (medians and p95s of each). The client runs in the
proxy's process (one interpreter, one GIL), so the overhead measured is an upper bound.

    python -m benchmarks.proxy_latency [--requests 300] [--prompt-kb 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import httpx

from .mill_common import Report, base_parser, header, main_of, median, percentile, workdir

TARGET_MS = 5.0


UPSTREAM = r"""
import asyncio, json, sys

EVENTS = [json.loads(line) for line in sys.stdin]
BODY = [("event: %s\ndata: %s\n\n" % (e["type"], json.dumps(e))).encode() for e in EVENTS]


async def serve(reader, writer):
    try:
        await answer(reader, writer)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def answer(reader, writer):
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        for chunk in BODY:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""
"""A minimal streaming model endpoint (a process of its own): every request gets the same
Anthropic stream, one write per event. (The scripted model server is not used here: on a
kept-alive connection its answers wait ~40 ms on the network stack, which would hide the
proxy's own cost.)"""


def _events() -> list[dict[str, object]]:
    usage = {"input_tokens": 1200, "output_tokens": 1}
    events: list[dict[str, object]] = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message",
                                              "role": "assistant", "model": "claude-sonnet-4-5",
                                              "content": [], "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text",
                                                                      "text": ""}}]
    events += [{"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": f"word{i} "}} for i in range(36)]
    events += [{"type": "content_block_stop", "index": 0},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 120}},
               {"type": "message_stop"}]
    return events


def _start_upstream() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(e) + "\n" for e in _events()))
    proc.stdin.close()
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def _timed(client: httpx.Client, url: str, body: bytes) -> tuple[float, float, int]:
    """Seconds to the first and to the last byte of the streamed answer, and its size."""
    start = time.perf_counter()
    first = 0.0
    size = 0
    with client.stream("POST", url + "/v1/messages", content=body,
                       headers={"content-type": "application/json",
                                "x-api-key": "taskmill-proxy"}) as answer:
        for chunk in answer.iter_raw():
            if not first:
                first = time.perf_counter() - start
            size += len(chunk)
    return first, time.perf_counter() - start, size


def run(args: argparse.Namespace) -> Report:
    from taskmill.proxy import ModelProxy

    report = header("proxy_latency", f"streamed Anthropic answer (40 SSE events), request of "
                    f"{args.prompt_kb} KB, {args.requests} requests each way, alternating")
    prompt = "x" * (args.prompt_kb * 1024)
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 200, "stream": True,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    direct: list[tuple[float, float]] = []
    proxied: list[tuple[float, float]] = []
    with workdir("proxy", args.keep) as tmp:
        fake, url = _start_upstream()
        try:
            with ModelProxy(tmp / "proxy.sock", env=dict(os.environ)) as proxy, \
                    httpx.Client(timeout=30) as client:
                route = proxy.register(agent="bench", upstream=url, key="sk-bench",
                                       family="anthropic")
                for _ in range(20):  # warm up both paths (connections, imports)
                    _timed(client, url, body)
                    _timed(client, route.base_url, body)
                sizes = set()
                for _ in range(args.requests):
                    first, last, size = _timed(client, url, body)
                    direct.append((first, last))
                    sizes.add(size)
                    first, last, size = _timed(client, route.base_url, body)
                    proxied.append((first, last))
                    sizes.add(size)
                counted = proxy.unregister(route.token)
        finally:
            fake.terminate()
            fake.wait(10)
    if len(sizes) != 1:
        report.note(f"answer sizes differ: {sorted(sizes)}")
    d_last = [x[1] * 1000 for x in direct]
    p_last = [x[1] * 1000 for x in proxied]
    d_first = [x[0] * 1000 for x in direct]
    p_first = [x[0] * 1000 for x in proxied]
    over_median = median(p_last) - median(d_last)
    over_p95 = percentile(p_last, 95) - percentile(d_last, 95)
    report.add("overhead to last byte, median", over_median, "ms", f"< {TARGET_MS:.0f} ms",
               over_median < TARGET_MS)
    report.add("overhead to last byte, p95", over_p95, "ms", f"< {TARGET_MS:.0f} ms",
               over_p95 < TARGET_MS)
    report.add("overhead to first byte, median", median(p_first) - median(d_first), "ms")
    report.note(f"direct: median {median(d_last):.2f} ms, p95 {percentile(d_last, 95):.2f} ms "
                f"to the last byte; through the proxy: median {median(p_last):.2f} ms, p95 "
                f"{percentile(p_last, 95):.2f} ms")
    if counted is not None:
        totals = counted.totals()
        report.note(f"the proxy counted {counted.requests} requests, "
                    f"{totals.input_tokens} input and {totals.output_tokens} output tokens")
    return report


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__ or "")
    p.add_argument("--requests", type=int, default=300, help="requests each way (default 300)")
    p.add_argument("--prompt-kb", type=int, default=100,
                   help="size of the request's prompt in KB (default 100)")
    return p


if __name__ == "__main__":
    main_of(run, parser())
