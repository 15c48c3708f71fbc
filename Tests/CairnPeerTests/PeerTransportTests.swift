import CairnPeer
import CairnTestSupport
import NIOCore
import NIOPosix
import Testing

/// Real sockets on 127.0.0.1; every wait has a generous timeout and no test
/// asserts on elapsed time.
@Suite("Peer transport over real sockets", .serialized)
struct PeerTransportTests {
    @Test("two members exchange thousands of messages, in order per sender")
    func twoMembersInOrder() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let portA = TestPorts.allocate()
        let portB = TestPorts.allocate()
        let a = try await PeerNode(
            memberID: 1, port: portA, peers: [2: PeerURL(host: "127.0.0.1", port: portB)], group: group)
        let b = try await PeerNode(
            memberID: 2, port: portB, peers: [1: PeerURL(host: "127.0.0.1", port: portA)], group: group)
        let count = 5_000
        for sequence in 0..<count {
            #expect(
                a.transport.send(to: 2, payload: numberedPayload(sender: 1, sequence: sequence)) == .queued)
            #expect(
                b.transport.send(to: 1, payload: numberedPayload(sender: 2, sequence: sequence)) == .queued)
        }
        try await eventually { b.record.withLockedValue { $0.count(from: 1) } >= count }
        try await eventually { a.record.withLockedValue { $0.count(from: 2) } >= count }
        #expect(
            sequences(of: b.record.withLockedValue { $0.messages[1] ?? [] }, sender: 1) == Array(0..<count))
        #expect(
            sequences(of: a.record.withLockedValue { $0.messages[2] ?? [] }, sender: 2) == Array(0..<count))
        let statistics = await a.transport.statistics(of: 2)
        #expect(statistics?.messagesSent == count)
        #expect(statistics?.messagesDropped == 0)
        #expect(statistics?.connected == true)
        await a.transport.shutdown()
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("three members each send to both others; every receiver sees each sender in order")
    func threeMembersInOrder() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let ports: [UInt64: Int] = [
            1: TestPorts.allocate(), 2: TestPorts.allocate(), 3: TestPorts.allocate(),
        ]
        var nodes: [UInt64: PeerNode] = [:]
        for id in ports.keys.sorted() {
            var peers: [UInt64: PeerURL] = [:]
            for (other, port) in ports where other != id {
                peers[other] = PeerURL(host: "127.0.0.1", port: port)
            }
            nodes[id] = try await PeerNode(memberID: id, port: ports[id], peers: peers, group: group)
        }
        let count = 3_000
        for sequence in 0..<count {
            for sender in 1...UInt64(3) {
                for receiver in 1...UInt64(3) where receiver != sender {
                    nodes[sender]!.transport.send(
                        to: receiver, payload: numberedPayload(sender: sender, sequence: sequence))
                }
            }
        }
        for receiver in 1...UInt64(3) {
            for sender in 1...UInt64(3) where sender != receiver {
                let node = nodes[receiver]!
                try await eventually { node.record.withLockedValue { $0.count(from: sender) } >= count }
                let received = node.record.withLockedValue { $0.messages[sender] ?? [] }
                #expect(
                    sequences(of: received, sender: sender) == Array(0..<count), "\(sender) -> \(receiver)")
            }
        }
        for node in nodes.values { await node.transport.shutdown() }
        try await group.shutdownGracefully()
    }

    @Test("a sender reconnects after the peer is shut down and recreated on the same port")
    func reconnectAfterRestart() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let portB = TestPorts.allocate()
        let a = try await PeerNode(
            memberID: 1, peers: [2: PeerURL(host: "127.0.0.1", port: portB)], group: group)
        var b = try await PeerNode(memberID: 2, port: portB, group: group)
        for sequence in 0..<100 {
            a.transport.send(to: 2, payload: numberedPayload(sender: 1, sequence: sequence))
        }
        try await eventually { b.record.withLockedValue { $0.count(from: 1) } == 100 }

        await b.transport.shutdown()
        try await eventually { await a.transport.statistics(of: 2)?.connected == false }
        try await eventually { a.record.withLockedValue { $0.unreachable[2, default: 0] } >= 1 }

        b = try await PeerNode(memberID: 2, port: portB, group: group)
        try await eventually { await a.transport.statistics(of: 2)?.connectionsEstablished == 2 }
        for sequence in 100..<1_100 {
            a.transport.send(to: 2, payload: numberedPayload(sender: 1, sequence: sequence))
        }
        let restarted = b
        try await eventually { restarted.record.withLockedValue { $0.count(from: 1) } == 1_000 }
        #expect(
            sequences(of: b.record.withLockedValue { $0.messages[1] ?? [] }, sender: 1) == Array(100..<1_100))
        #expect(a.logsContain("established TCP streaming connection with remote peer 2"))
        await a.transport.shutdown()
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("with the peer down the queue stops at its bounds, drops and counts, and reports unreachable")
    func boundedQueueWhilePeerDown() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var limits = PeerNode.testLimits
        limits.queuedMessagesMax = 100
        limits.queuedBytesMax = 100 * 64
        limits.messageBytesMax = 1_000
        let downPort = TestPorts.allocate()
        let a = try await PeerNode(
            memberID: 1, peers: [2: PeerURL(host: "127.0.0.1", port: downPort)], limits: limits, group: group)
        var outcomes: [PeerSendOutcome: Int] = [:]
        for _ in 0..<150 {
            outcomes[a.transport.send(to: 2, payload: [UInt8](repeating: 1, count: 32)), default: 0] += 1
        }
        #expect(outcomes == [.queued: 100, .droppedQueueFull: 50])
        #expect(a.transport.send(to: 2, payload: [UInt8](repeating: 1, count: 1_001)) == .droppedTooLarge)
        #expect(a.transport.send(to: 9, payload: [1]) == .droppedUnknownPeer)
        #expect(a.transport.unknownPeerDrops == 1)
        let statistics = await a.transport.statistics(of: 2)
        #expect(statistics?.queuedMessages == 100)
        #expect(statistics?.queuedBytes == 100 * 32)
        #expect(statistics?.messagesDropped == 51)
        #expect(statistics?.messagesSent == 0)
        #expect(statistics?.connected == false)
        try await eventually { a.record.withLockedValue { $0.unreachable[2, default: 0] } >= 2 }
        await a.transport.shutdown()
        #expect(a.transport.send(to: 2, payload: [1]) == .droppedShutDown)
        try await group.shutdownGracefully()
    }

    @Test("bigger messages hit the byte bound before the message bound")
    func byteBound() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var limits = PeerNode.testLimits
        limits.queuedBytesMax = 1_000
        let a = try await PeerNode(
            memberID: 1, peers: [2: PeerURL(host: "127.0.0.1", port: TestPorts.allocate())], limits: limits,
            group: group)
        let queued = (0..<30).filter { _ in
            a.transport.send(to: 2, payload: [UInt8](repeating: 0, count: 100)) == .queued
        }
        #expect(queued.count == 10)
        await a.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test(
        "a peer that stops reading holds messages back in the queue (back-pressure), then drops at the bound")
    func backPressure() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let silent = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SilentPeerHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        var limits = PeerNode.testLimits
        limits.queuedMessagesMax = 200_000
        limits.queuedBytesMax = 200 << 20
        let a = try await PeerNode(
            memberID: 1, peers: [2: PeerURL(host: "127.0.0.1", port: silent.localAddress!.port!)],
            limits: limits,
            group: group)
        try await eventually { await a.transport.statistics(of: 2)?.connected == true }
        let total = 100_000
        let payload = [UInt8](repeating: 0xAB, count: 1_024)
        for _ in 0..<total { #expect(a.transport.send(to: 2, payload: payload) == .queued) }
        try await eventually {
            guard let statistics = await a.transport.statistics(of: 2) else { return false }
            return statistics.messagesSent > 0 && statistics.messagesSent + statistics.queuedMessages == total
        }
        // The peer never reads, so whatever the kernel buffers hold, the rest
        // stays in our bounded queue instead of piling up in NIO's write buffer.
        try await Task.sleep(for: .milliseconds(500))
        let held = await a.transport.statistics(of: 2)
        #expect((held?.queuedMessages ?? 0) > 0)
        #expect((held?.messagesSent ?? 0) + (held?.queuedMessages ?? 0) == total)
        // Filling the rest of the queue ends in drops, never in blocking.
        var dropped = 0
        for _ in 0..<(limits.queuedMessagesMax + 10) {
            if a.transport.send(to: 2, payload: payload) == .droppedQueueFull { dropped += 1 }
        }
        #expect(dropped >= 10)
        #expect(await a.transport.statistics(of: 2)?.queuedMessages == limits.queuedMessagesMax)
        await a.transport.shutdown()
        try await silent.close()
        try await group.shutdownGracefully()
    }

    @Test("a connection from another cluster is refused with etcd's words on both sides")
    func clusterIDMismatch() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let b = try await PeerNode(memberID: 2, clusterID: 0xB, group: group)
        let a = try await PeerNode(memberID: 1, clusterID: 0xA, peers: [2: b.url], group: group)
        for sequence in 0..<10 {
            a.transport.send(to: 2, payload: numberedPayload(sender: 1, sequence: sequence))
        }
        try await eventually { b.logsContain("request cluster ID mismatch") }
        try await eventually { a.logsContain("cluster ID mismatch") }
        try await eventually { a.record.withLockedValue { $0.unreachable[2, default: 0] } >= 1 }
        #expect(b.record.withLockedValue { $0.messages.isEmpty })
        let statistics = await a.transport.statistics(of: 2)
        #expect(statistics?.connectionsEstablished == 0)
        #expect(statistics?.messagesSent == 0)
        await a.transport.shutdown()
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a connection meant for another member ID is refused")
    func receiverIDMismatch() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let b = try await PeerNode(memberID: 2, group: group)
        let a = try await PeerNode(memberID: 1, peers: [9: b.url], group: group)
        a.transport.send(to: 9, payload: [1, 2, 3])
        try await eventually { b.logsContain("ignored streaming request; ID mismatch") }
        try await eventually { a.logsContain("to field mismatch") }
        #expect(b.record.withLockedValue { $0.messages.isEmpty })
        await a.transport.shutdown()
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("membership changes: a peer's URL is updated at runtime, and a removed peer is gone")
    func membershipUpdates() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let b = try await PeerNode(memberID: 2, group: group)
        let a = try await PeerNode(
            memberID: 1, peers: [2: PeerURL(host: "127.0.0.1", port: TestPorts.allocate())], group: group)
        for sequence in 0..<50 {
            a.transport.send(to: 2, payload: numberedPayload(sender: 1, sequence: sequence))
        }
        try await eventually { a.record.withLockedValue { $0.unreachable[2, default: 0] } >= 1 }
        a.transport.setPeer(2, url: b.url)
        try await eventually { b.record.withLockedValue { $0.count(from: 1) } == 50 }
        #expect(sequences(of: b.record.withLockedValue { $0.messages[1] ?? [] }, sender: 1) == Array(0..<50))
        a.transport.removePeer(2)
        #expect(await a.transport.statistics(of: 2) == nil)
        #expect(a.transport.send(to: 2, payload: [1]) == .droppedUnknownPeer)
        a.transport.setPeer(1, url: b.url)
        #expect(a.transport.peerIDs.isEmpty)
        await a.transport.shutdown()
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("handlers from the channel initializer sit in front of the framing on both sides")
    func channelInitializerHook() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let scramble: PeerChannelInitializer = { channel, _ in
            try channel.pipeline.syncOperations.addHandler(ScrambleHandler())
        }
        let b = try await PeerNode(memberID: 2, group: group, channelInitializer: scramble)
        let a = try await PeerNode(memberID: 1, peers: [2: b.url], group: group, channelInitializer: scramble)
        let plain = try await PeerNode(memberID: 3, peers: [2: b.url], group: group)
        for sequence in 0..<500 {
            a.transport.send(to: 2, payload: numberedPayload(sender: 1, sequence: sequence))
            plain.transport.send(to: 2, payload: numberedPayload(sender: 3, sequence: sequence))
        }
        try await eventually { b.record.withLockedValue { $0.count(from: 1) } == 500 }
        #expect(sequences(of: b.record.withLockedValue { $0.messages[1] ?? [] }, sender: 1) == Array(0..<500))
        // The plaintext member cannot speak to the scrambled one.
        try await eventually { plain.record.withLockedValue { $0.unreachable[2, default: 0] } >= 2 }
        #expect(b.record.withLockedValue { $0.count(from: 3) } == 0)
        for node in [a, b, plain] { await node.transport.shutdown() }
        try await group.shutdownGracefully()
    }
}

/// A fake peer: accepts any hello, then stops reading from the socket.
final class SilentPeerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.answered else { return }
        self.answered = true
        // An `accepted` frame: length 1, type 2.
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: [0, 0, 0, 1, 2])), promise: nil)
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
    }
}

/// A toy stand-in for TLS: XORs every byte both ways, so only peers that
/// installed it on both ends understand each other.
final class ScrambleHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(self.wrapInboundOut(Self.scramble(self.unwrapInboundIn(data))))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(self.wrapOutboundOut(Self.scramble(self.unwrapOutboundIn(data))), promise: promise)
    }

    static func scramble(_ buffer: ByteBuffer) -> ByteBuffer {
        ByteBuffer(bytes: buffer.readableBytesView.map { $0 ^ 0x5A })
    }
}
