"""Bounded fuzzing of a CairnRPC server's HTTP/2 and gRPC framing.

    python3 fuzz_http2.py PORT SEED ITERATIONS

Sends random bytes, truncated frames, HEADERS without :path, a length prefix
past every limit, and random mutations of a valid call, each on its own
connection, then checks the server still answers a valid call. Exits non-zero
if the server stops answering. Deterministic for a given seed.
"""

import random
import socket
import struct
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    # HPACK literal header field without indexing, new name.
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def headers(fields, end_stream=False):
    block = b"".join(literal(name, value) for name, value in fields)
    return frame(1, 0x4 | (0x1 if end_stream else 0), 1, block)


GRPC_FIELDS = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/etcdserverpb.KV/Put"),
               (b":authority", b"localhost"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]


def valid_call():
    message = b"\x0a\x03foo\x12\x03bar"
    body = b"\x00" + struct.pack(">I", len(message)) + message
    return PREFACE + frame(4, 0, 0, b"") + headers(GRPC_FIELDS) + frame(0, 0x1, 1, body)


def cases(rng, iterations):
    yield "random bytes", bytes(rng.randrange(256) for _ in range(512))
    yield "truncated frame header", PREFACE + frame(4, 0, 0, b"") + b"\x00\x00"
    yield "truncated headers", (PREFACE + frame(4, 0, 0, b"") + headers(GRPC_FIELDS))[:-7]
    no_path = [field for field in GRPC_FIELDS if field[0] != b":path"]
    yield "headers without :path", PREFACE + frame(4, 0, 0, b"") + headers(no_path, end_stream=True)
    huge = b"\x00" + struct.pack(">I", 0xFFFFFFFF)
    yield "length prefix past the limit", PREFACE + frame(4, 0, 0, b"") + headers(GRPC_FIELDS) + frame(0, 0, 1, huge)
    yield "data on an unopened stream", PREFACE + frame(4, 0, 0, b"") + frame(0, 0x1, 9, b"\x00" * 5)
    base = valid_call()
    for _ in range(iterations):
        mutated = bytearray(base)
        for _ in range(rng.randrange(1, 8)):
            operation = rng.randrange(3)
            position = rng.randrange(len(PREFACE), len(mutated))
            if operation == 0:
                mutated[position] = rng.randrange(256)
            elif operation == 1:
                del mutated[position:position + rng.randrange(1, 16)]
            else:
                mutated[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        yield "mutated call", bytes(mutated)


def send(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(payload)
        connection.settimeout(0.3)
        try:
            while connection.recv(65536):
                pass
        except (socket.timeout, ConnectionResetError):
            pass


def answers(port):
    """Makes one valid call; true once its trailers (HEADERS with END_STREAM on stream 1) arrive."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(valid_call())
        received = b""
        try:
            while True:
                while len(received) >= 9:
                    length = int.from_bytes(received[:3], "big")
                    if len(received) < 9 + length:
                        break
                    kind, flags = received[3], received[4]
                    stream = int.from_bytes(received[5:9], "big") & 0x7FFFFFFF
                    if kind == 1 and stream == 1 and flags & 0x1:
                        return True
                    received = received[9 + length:]
                chunk = connection.recv(65536)
                if not chunk:
                    return False
                received += chunk
        except socket.timeout:
            return False


def main(port, seed, iterations):
    rng = random.Random(seed)
    for name, payload in cases(rng, iterations):
        try:
            send(port, payload)
        except OSError as error:
            print(f"FAIL connecting for {name}: {error}")
            sys.exit(1)
    if not answers(port):
        print("FAIL the server stopped answering")
        sys.exit(1)
    print(f"ok   server answered after {iterations} mutated calls and 6 malformed inputs (seed {seed})")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
