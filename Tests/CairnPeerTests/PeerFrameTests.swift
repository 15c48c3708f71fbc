import NIOCore
import Testing

@testable import CairnPeer

@Suite("Peer frames, checksums, URLs and backoff")
struct PeerFrameTests {
    static let frames: [PeerFrame] = [
        .hello(PeerHello(protocolVersion: 1, kind: .messages, clusterID: 0xABCD, senderID: 1, receiverID: 2)),
        .hello(
            PeerHello(protocolVersion: 7, kind: .snapshot, clusterID: .max, senderID: .max, receiverID: 0)),
        .accepted,
        .refused(PeerRefusal(.clusterIDMismatch, "cluster ID mismatch: local=1, remote=2")),
        .message([]),
        .message(Array(0..<200)),
        .snapshotHeader(totalBytes: 20 << 20, metadata: [9, 8, 7]),
        .snapshotChunk(data: [1, 2, 3, 4], checksum: 0xDEAD_BEEF),
        .snapshotEnd(checksum: 42),
        .snapshotAccepted,
    ]

    @Test("every frame decodes to what was encoded, also when fed one byte at a time")
    func roundTrip() throws {
        var whole = ByteBuffer()
        for frame in Self.frames { whole.writePeerFrame(frame) }
        var decoded: [PeerFrame] = []
        var pending = ByteBuffer()
        for byte in whole.readableBytesView {
            pending.writeInteger(byte)
            while let frame = try PeerFrameDecoder.decodeFrame(from: &pending, frameBytesMax: 1 << 20) {
                decoded.append(frame)
            }
        }
        #expect(decoded == Self.frames)
        #expect(pending.readableBytes == 0)
    }

    @Test("a frame longer than the limit is refused before its body arrives")
    func oversizeFrame() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(1_001))
        buffer.writeInteger(PeerFrameType.message.rawValue)
        #expect(throws: PeerFrameError.frameTooLarge(bytes: 1_001, limit: 1_000)) {
            _ = try PeerFrameDecoder.decodeFrame(from: &buffer, frameBytesMax: 1_000)
        }
    }

    @Test("empty frames, unknown types and short bodies are errors")
    func malformedFrames() {
        var empty = ByteBuffer(bytes: [0, 0, 0, 0])
        #expect(throws: PeerFrameError.emptyFrame) {
            _ = try PeerFrameDecoder.decodeFrame(from: &empty, frameBytesMax: 100)
        }
        var unknown = ByteBuffer(bytes: [0, 0, 0, 1, 99])
        #expect(throws: PeerFrameError.unknownFrameType(99)) {
            _ = try PeerFrameDecoder.decodeFrame(from: &unknown, frameBytesMax: 100)
        }
        var shortHello = ByteBuffer(bytes: [0, 0, 0, 3, PeerFrameType.hello.rawValue, 0, 1])
        #expect(throws: PeerFrameError.truncatedBody(.hello)) {
            _ = try PeerFrameDecoder.decodeFrame(from: &shortHello, frameBytesMax: 100)
        }
    }

    @Test("CRC-32C matches the standard check value and composes over chunks")
    func checksum() {
        #expect(PeerChecksum.of(Array("123456789".utf8)) == 0xE306_9283)
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var running = PeerChecksum()
        running.update(data[0..<3_333])
        running.update(data[3_333...])
        #expect(running.value == PeerChecksum.of(data))
        #expect(PeerChecksum.of(data) != PeerChecksum.of(data.dropLast()))
        for length in [0, 1, 7, 8, 9, 63, 64, 1_000, 4_097] {
            let prefix = Array(data.prefix(length))
            #expect(PeerChecksum.of(prefix) == Self.bitwiseCRC32C(prefix), "length \(length)")
        }
    }

    /// The textbook bit-at-a-time CRC-32C, the reference for the table-driven one.
    static func bitwiseCRC32C(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    @Test("peer URLs parse like etcd's and reject what is not a peer address")
    func urls() throws {
        #expect(try PeerURL(parsing: "http://127.0.0.1:2380") == PeerURL(host: "127.0.0.1", port: 2380))
        #expect(
            try PeerURL(parsing: "https://node-1.example:2380/")
                == PeerURL(scheme: .https, host: "node-1.example", port: 2380))
        #expect(try PeerURL(parsing: "http://[::1]:2380") == PeerURL(host: "::1", port: 2380))
        #expect(PeerURL(host: "::1", port: 2380).description == "http://[::1]:2380")
        for bad in [
            "127.0.0.1:2380", "ftp://a:1", "http://a", "http://a:0", "http://a:99999", "http://a:1/path",
            "http://:1",
        ] {
            #expect(throws: PeerURLError.self) { _ = try PeerURL(parsing: bad) }
        }
    }

    @Test("backoff delays stay within the jittered, capped step and replay from the seed")
    func backoff() {
        var first = PeerBackoff(initial: .milliseconds(100), maximum: .seconds(1), seed: 7)
        var second = PeerBackoff(initial: .milliseconds(100), maximum: .seconds(1), seed: 7)
        var other = PeerBackoff(initial: .milliseconds(100), maximum: .seconds(1), seed: 8)
        var step = TimeAmount.milliseconds(100)
        var differs = false
        for _ in 0..<20 {
            let delay = first.nextDelay()
            #expect(delay == second.nextDelay())
            if delay != other.nextDelay() { differs = true }
            #expect(delay.nanoseconds >= step.nanoseconds / 2 && delay <= step)
            step = min(step * 2, .seconds(1))
        }
        #expect(differs)
        first.reset()
        #expect(first.nextDelay() <= .milliseconds(100))
    }

    @Test("the message queue drops at its message and byte bounds and counts")
    func queueBounds() {
        var limits = PeerLimits()
        limits.queuedMessagesMax = 3
        limits.queuedBytesMax = 25
        limits.messageBytesMax = 20
        var queue = PeerMessageQueue()
        #expect(queue.offer([UInt8](repeating: 0, count: 21), limits: limits).0 == .droppedTooLarge)
        #expect(queue.offer([UInt8](repeating: 0, count: 10), limits: limits).0 == .queued)
        #expect(queue.offer([UInt8](repeating: 0, count: 10), limits: limits).0 == .queued)
        let overBytes = queue.offer([UInt8](repeating: 0, count: 10), limits: limits)
        #expect(overBytes.0 == .droppedQueueFull && overBytes.report)
        #expect(queue.offer([1], limits: limits).0 == .queued)
        let overCount = queue.offer([2], limits: limits)
        #expect(overCount.0 == .droppedQueueFull && !overCount.report)
        #expect(queue.messages.count == 3 && queue.bytes == 21 && queue.dropped == 3)
        let drainNow = queue.setWriterReady(true)
        #expect(drainNow)
        let first = queue.popForWrite()
        #expect(first?.count == 10)
        #expect(!queue.dropReported)
        queue.close()
        #expect(queue.dropped == 5 && queue.bytes == 0)
        #expect(queue.offer([3], limits: limits).0 == .droppedShutDown)
    }
}
