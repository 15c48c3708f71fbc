import CairnTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import CairnPeer

/// A hand-driven dialler: writes whatever frames a test gives it and records
/// what the listener answers, so the receiver's checks can be attacked
/// directly.
final class RawPeerClient: Sendable {
    let channel: any Channel
    let frames: NIOLockedValueBox<[PeerFrame]>

    init(port: Int, group: any EventLoopGroup) async throws {
        let frames = NIOLockedValueBox<[PeerFrame]>([])
        self.frames = frames
        self.channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(PeerFrameDecoder(frameBytesMax: 1 << 20)))
                    try channel.pipeline.syncOperations.addHandler(FrameCollector(frames: frames))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    func send(_ frames: [PeerFrame]) async throws {
        var buffer = ByteBuffer()
        for frame in frames { buffer.writePeerFrame(frame) }
        try await self.channel.writeAndFlush(buffer)
    }

    func sendRaw(_ bytes: [UInt8]) async throws {
        try await self.channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    var refusal: PeerRefusal? {
        self.frames.withLockedValue { frames in
            for case .refused(let refusal) in frames { return refusal }
            return nil
        }
    }
}

final class FrameCollector: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    let frames: NIOLockedValueBox<[PeerFrame]>

    init(frames: NIOLockedValueBox<[PeerFrame]>) {
        self.frames = frames
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        self.frames.withLockedValue { $0.append(frame) }
    }
}

@Suite("The receiver's checks, attacked with hand-made frames", .serialized)
struct PeerReceiverTests {
    static func hello(_ kind: PeerHello.StreamKind, version: UInt16 = PeerWire.protocolVersion) -> PeerFrame {
        .hello(PeerHello(protocolVersion: version, kind: kind, clusterID: 0xC1, senderID: 5, receiverID: 2))
    }

    @Test("a chunk whose checksum does not match is refused and nothing is delivered")
    func corruptChunk() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = try await PeerNode(memberID: 2, group: group)
        let client = try await RawPeerClient(port: b.port, group: group)
        let chunk: [UInt8] = Array(repeating: 7, count: 1_000)
        try await client.send([Self.hello(.snapshot), .snapshotHeader(totalBytes: 2_000, metadata: [])])
        try await eventually { client.frames.withLockedValue { $0 } == [.accepted, .accepted] }
        try await client.send([
            .snapshotChunk(data: chunk, checksum: PeerChecksum.of(chunk)),
            .snapshotChunk(data: chunk, checksum: PeerChecksum.of(chunk) ^ 1),
        ])
        try await eventually { client.refusal != nil }
        #expect(client.refusal?.reason == .snapshotCorrupt)
        try await client.channel.closeFuture.get()
        #expect(b.record.withLockedValue { $0.snapshots.isEmpty })
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a snapshot that ends short of its declared length, or with a wrong end checksum, is refused")
    func shortOrMisorderedSnapshot() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = try await PeerNode(memberID: 2, group: group)
        let chunk: [UInt8] = Array(repeating: 9, count: 100)
        var running = PeerChecksum()
        running.update(chunkChecksum: PeerChecksum.of(chunk))

        let short = try await RawPeerClient(port: b.port, group: group)
        try await short.send([Self.hello(.snapshot), .snapshotHeader(totalBytes: 200, metadata: [])])
        try await eventually { short.frames.withLockedValue { $0.count } == 2 }
        try await short.send([
            .snapshotChunk(data: chunk, checksum: PeerChecksum.of(chunk)),
            .snapshotEnd(checksum: running.value),
        ])
        try await eventually { short.refusal != nil }
        #expect(short.refusal?.reason == .snapshotCorrupt)

        let wrongEnd = try await RawPeerClient(port: b.port, group: group)
        try await wrongEnd.send([Self.hello(.snapshot), .snapshotHeader(totalBytes: 100, metadata: [])])
        try await eventually { wrongEnd.frames.withLockedValue { $0.count } == 2 }
        try await wrongEnd.send([
            .snapshotChunk(data: chunk, checksum: PeerChecksum.of(chunk)),
            .snapshotEnd(checksum: running.value ^ 1),
        ])
        try await eventually { wrongEnd.refusal != nil }
        #expect(wrongEnd.refusal?.text == "snapshot checksum mismatch")

        let good = try await RawPeerClient(port: b.port, group: group)
        try await good.send([Self.hello(.snapshot), .snapshotHeader(totalBytes: 100, metadata: [4])])
        try await eventually { good.frames.withLockedValue { $0.count } == 2 }
        try await good.send([
            .snapshotChunk(data: chunk, checksum: PeerChecksum.of(chunk)),
            .snapshotEnd(checksum: running.value),
        ])
        try await eventually { good.frames.withLockedValue { $0.last } == .snapshotAccepted }
        #expect(b.record.withLockedValue { $0.snapshots.map(\.data) } == [chunk])
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("another protocol version is refused as incompatible")
    func incompatibleVersion() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = try await PeerNode(memberID: 2, group: group)
        let client = try await RawPeerClient(port: b.port, group: group)
        try await client.send([Self.hello(.messages, version: PeerWire.protocolVersion + 1)])
        try await eventually { client.refusal != nil }
        #expect(client.refusal == PeerRefusal(.incompatibleVersion, "incompatible version"))
        #expect(b.logsContain("incompatible version"))
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("garbage and messages before a hello are refused as malformed")
    func malformedInput() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = try await PeerNode(memberID: 2, group: group)
        let early = try await RawPeerClient(port: b.port, group: group)
        try await early.send([.message([1, 2, 3])])
        try await eventually { early.refusal != nil }
        #expect(early.refusal?.reason == .malformedFrame)

        let garbage = try await RawPeerClient(port: b.port, group: group)
        try await garbage.sendRaw([0, 0, 0, 2, 200, 1])
        try await eventually { garbage.refusal != nil }
        #expect(garbage.refusal?.reason == .malformedFrame)

        let huge = try await RawPeerClient(port: b.port, group: group)
        try await huge.sendRaw([0x7F, 0xFF, 0xFF, 0xFF, PeerFrameType.message.rawValue])
        try await eventually { huge.refusal != nil }
        #expect(huge.refusal?.reason == .malformedFrame)
        #expect(b.record.withLockedValue { $0.messages.isEmpty })
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a connection that never says hello is closed after the handshake timeout")
    func silentDiallerClosed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var limits = PeerNode.testLimits
        limits.handshakeTimeout = .milliseconds(100)
        let b = try await PeerNode(memberID: 2, limits: limits, group: group)
        let client = try await RawPeerClient(port: b.port, group: group)
        try await client.channel.closeFuture.get()
        #expect(client.frames.withLockedValue { $0.isEmpty })
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }
}
