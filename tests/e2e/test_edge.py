"""The HTTP edge on the real server (issue 11, items 6 and 11): HOST/PORT, a port in use, slow and heavy bodies."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest

from tests.e2e.conftest import ROOT, free_port, wait_until
from tests.helpers import body, definite
from tsrevel.domain.signature import sign_body

pytestmark = pytest.mark.e2e


def raw_request(port: int, headers: dict[str, str], first_bytes: bytes, *, path: str = "/webhooks/tripleseat") -> socket.socket:
    """Open a connection and send the request line, the headers and the start of the body only."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + first_bytes)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunks[-1]:
            break
    return b"".join(chunks)


class TestServe:
    def test_serve_reads_port_from_the_environment(self, service_env, start_service, tmp_path):
        port = free_port()
        env = {**service_env, "PORT": str(port), "HOST": "127.0.0.1"}
        log = open(tmp_path / "serve-env.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen([sys.executable, "-m", "tsrevel", "serve"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: process.poll() is not None or httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200,
                       timeout_s=30, what=f"/ready on PORT={port}")
            assert process.poll() is None, (tmp_path / "serve-env.log").read_text()[-2000:]
        finally:
            process.terminate()
            process.wait(timeout=20)
            log.close()
        assert f"serving on http://127.0.0.1:{port}" in (tmp_path / "serve-env.log").read_text()

    def test_a_port_in_use_is_one_line_and_exit_2_before_any_banner(self, service_env):
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            # PORT says 1, the flag says the busy port: the flag wins.
            done = subprocess.run(
                [sys.executable, "-m", "tsrevel", "serve", "--host", "127.0.0.1", "--port", str(port)], env={**service_env, "PORT": "1"},
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert lines == [lines[0]] and "already in use" in lines[0] and "--port" in lines[0] and str(port) in lines[0], done.stderr
        assert "serving on" not in done.stderr and "Traceback" not in done.stderr


class TestSlowAndHeavyBodies:
    def test_a_dribbled_body_is_answered_408(self, service_env, start_service):
        service = start_service({**service_env, "TSREVEL_BODY_TIMEOUT_S": "1"})
        port = int(service.url.rsplit(":", 1)[1])
        raw = body(definite())
        sock = raw_request(port, {"Content-Length": str(len(raw)), "X-Signature": "0" * 64}, raw[:10])
        with sock:
            answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b'"correlation_id"' in answer and b"TSREVEL_BODY_TIMEOUT_S" in answer
        # The service is still healthy and takes the next webhook.
        assert service.signed_post(raw).json()["status"] == "accepted"

    def test_bodies_over_the_in_flight_budget_are_503_with_retry_after_then_served_again(self, service_env, start_service):
        service = start_service({**service_env, "TSREVEL_MAX_INFLIGHT_BODY_BYTES": str(1024 * 1024), "TSREVEL_BODY_TIMEOUT_S": "60"})
        port = int(service.url.rsplit(":", 1)[1])
        raw = body(definite())
        big = raw + b" " * (700 * 1024 - len(raw))  # JSON may end in whitespace: still the same payload
        headers = {"Content-Length": str(len(big)), "X-Signature": sign_body(big, secret="e2e-signing-secret"), "Content-Type": "application/json"}
        holder = raw_request(port, headers, big[:1000])  # 700 KB announced, 1 KB sent: it holds its share
        with holder:
            def refused() -> httpx.Response | None:
                answer = httpx.post(service.url + "/webhooks/tripleseat", content=big, headers=headers, timeout=10)
                return answer if answer.status_code == 503 else None

            busy = wait_until(refused, timeout_s=20, what="a 503 while another 700 KB body is in flight")
            assert busy.headers["retry-after"].isdigit() and "TSREVEL_MAX_INFLIGHT_BODY_BYTES" in busy.json()["error"]
            assert busy.json()["correlation_id"]
            holder.sendall(big[1000:])
            first = read_answer(holder)
        assert first.startswith(b"HTTP/1.1 200"), first[:300]
        # The budget is given back: the same body is now answered (a duplicate of the first).
        assert httpx.post(service.url + "/webhooks/tripleseat", content=big, headers=headers, timeout=10).json()["status"] == "duplicate"

    def test_incomplete_headers_over_the_header_limit_are_400_and_closed(self, service_env, start_service):
        service = start_service({**service_env, "TSREVEL_MAX_HEADER_BYTES": "4096"})
        port = int(service.url.rsplit(":", 1)[1])
        # Headers that never end: h11 holds at most TSREVEL_MAX_HEADER_BYTES of them, then refuses.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /webhooks/tripleseat HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * 6000)
            answer = sock.recv(200)
        assert answer.startswith(b"HTTP/1.1 400"), answer
        raw = body(definite())
        assert service.signed_post(raw).json()["status"] == "accepted"
