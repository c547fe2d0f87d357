"""HTTP/1.1 over a raw socket: for clients that lie, stall or send too much, which an
HTTP library would not let a test be."""

from __future__ import annotations

import socket


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body (what the app sends)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def read_rest(sock: socket.socket, timeout: float = 5) -> bytes:
    """Whatever else the server sends until it closes (a reset counts as closed)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def upload_head(length_header: str, *, path: str = "/upload", extra: str = "") -> bytes:
    """The head of a multipart POST whose body the test sends (or does not) itself."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\n".encode()
        + b"Content-Type: multipart/form-data; boundary=imagepipe-test\r\n"
        + extra.encode()
        + length_header.encode()
        + b"\r\n\r\n"
    )
