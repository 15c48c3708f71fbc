"""Interoperability checks of CairnRPC against Python grpcio (grpc-core).

Run by InteropTests.swift against a running `cairn-bench rpc-server`:
    python3 grpcio_interop.py PORT
Prints one line per check and exits non-zero on the first failure. Messages
are hand-encoded protobuf bytes so no generated Python code is needed.
"""

import asyncio
import sys

import grpc
import grpc.aio


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def put_request(key, value):
    return field_bytes(1, key) + field_bytes(2, value)


def watch_create(key):
    return field_bytes(1, field_bytes(1, key))


def identity(data):
    return data


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def expect_status(name, call, code, message_part=""):
    try:
        call()
    except grpc.RpcError as error:
        check(name, error.code() == code and message_part in (error.details() or ""),
              f"got {error.code()} {error.details()!r}")
        return
    check(name, False, "call succeeded")


def unary(channel, path, **kwargs):
    return channel.unary_unary(path, request_serializer=identity, response_deserializer=identity, **kwargs)


def main(port):
    target = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(target)
    put = unary(channel, "/etcdserverpb.KV/Put")
    range_call = unary(channel, "/etcdserverpb.KV/Range")

    response = put(put_request(b"grpcio-key", b"grpcio-value"), timeout=10)
    check("unary put answers with a header", response.startswith(b"\x0a"), repr(response))
    response = range_call(field_bytes(1, b"grpcio-key"), timeout=10)
    check("range returns the value put", b"grpcio-value" in response, repr(response))

    expect_status("empty key gets etcd's error", lambda: put(put_request(b"", b"x"), timeout=10),
                  grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
    expect_status("unknown method", lambda: unary(channel, "/etcdserverpb.KV/Nope")(b"", timeout=10),
                  grpc.StatusCode.UNIMPLEMENTED, "unknown method Nope for service etcdserverpb.KV")
    expect_status("unknown service", lambda: unary(channel, "/nope.Service/Call")(b"", timeout=10),
                  grpc.StatusCode.UNIMPLEMENTED, "unknown service nope.Service")

    big = put_request(b"big", b"x" * (3 * 1024 * 1024))
    expect_status("oversized message", lambda: put(big, timeout=10),
                  grpc.StatusCode.RESOURCE_EXHAUSTED, "grpc: received message larger than max")
    check("connection stays up after an oversized message",
          put(put_request(b"after-big", b"v"), timeout=10).startswith(b"\x0a"))

    gzip_put = unary(channel, "/etcdserverpb.KV/Put")
    expect_status("compressed message we do not support",
                  lambda: gzip_put(put_request(b"k", b"v" * 100), timeout=10, compression=grpc.Compression.Gzip),
                  grpc.StatusCode.UNIMPLEMENTED, "Decompressor is not installed")

    watch = channel.stream_stream("/etcdserverpb.Watch/Watch", request_serializer=identity,
                                  response_deserializer=identity)

    def never_ending():
        yield watch_create(b"deadline-key")
        import time
        time.sleep(30)

    expect_status("deadline expires on a stream", lambda: list(watch(never_ending(), timeout=0.5)),
                  grpc.StatusCode.DEADLINE_EXCEEDED)

    call = watch(never_ending(), timeout=30)
    first = next(call)
    check("watch created", b"\x18\x01" in first, repr(first))
    call.cancel()
    try:
        next(call)
        check("cancelled stream ends", False)
    except grpc.RpcError as error:
        check("cancelled stream ends as CANCELLED", error.code() == grpc.StatusCode.CANCELLED, str(error.code()))
    check("server still serves after cancel", put(put_request(b"after-cancel", b"v"), timeout=10).startswith(b"\x0a"))
    channel.close()
    asyncio.run(thousand_streams(target))


async def thousand_streams(target):
    """1,000 concurrent bidirectional streams on one connection, each live at once."""
    async with grpc.aio.insecure_channel(target) as channel:
        watch = channel.stream_stream("/etcdserverpb.Watch/Watch", request_serializer=identity,
                                      response_deserializer=identity)
        calls = []
        for index in range(1000):
            call = watch()
            await call.write(watch_create(f"stream-{index}".encode()))
            calls.append(call)
        created = 0
        for call in calls:
            response = await call.read()
            if b"\x18\x01" in response:
                created += 1
        check("1000 concurrent bidi streams all created", created == 1000, f"{created} created")
        put = channel.unary_unary("/etcdserverpb.KV/Put", request_serializer=identity,
                                  response_deserializer=identity)
        await put(put_request(b"stream-7", b"event"), timeout=10)
        event = await calls[7].read()
        check("a put reaches the watching stream", b"stream-7" in event and b"event" in event, repr(event))
        for call in calls:
            await call.done_writing()
        statuses = [await call.code() for call in calls]
        check("all 1000 streams end OK", all(code == grpc.StatusCode.OK for code in statuses))


if __name__ == "__main__":
    main(int(sys.argv[1]))
