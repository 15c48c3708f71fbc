import CairnTLS
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// One end of a real TCP connection: reports the handshake, sends a
/// payload once it completed, and collects `expectedBytes` of plaintext.
final class SocketPeer: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Failed: Error {
        var reason: String
    }

    let payload: ByteBuffer?
    let expectedBytes: Int
    let handshake: EventLoopPromise<TLSHandshakeCompletedEvent>
    let received: EventLoopPromise<ByteBuffer>
    let closeNotify: EventLoopPromise<Void>?
    private var buffer = ByteBuffer()
    private var handshakeDone = false
    private var receivedDone = false

    init(
        payload: ByteBuffer?,
        expectedBytes: Int,
        handshake: EventLoopPromise<TLSHandshakeCompletedEvent>,
        received: EventLoopPromise<ByteBuffer>,
        closeNotify: EventLoopPromise<Void>? = nil
    ) {
        self.closeNotify = closeNotify
        self.payload = payload
        self.expectedBytes = expectedBytes
        self.handshake = handshake
        self.received = received
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSHandshakeCompletedEvent, !handshakeDone {
            handshakeDone = true
            handshake.succeed(event)
            if let payload { context.writeAndFlush(wrapOutboundOut(payload), promise: nil) }
        } else if event is TLSCloseNotifyReceivedEvent {
            closeNotify?.succeed()
        } else if let event = event as? TLSHandshakeFailedEvent, !handshakeDone {
            handshakeDone = true
            handshake.fail(Failed(reason: event.reason))
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        buffer.writeBuffer(&chunk)
        if buffer.readableBytes >= expectedBytes && !receivedDone {
            receivedDone = true
            received.succeed(buffer)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !handshakeDone {
            handshakeDone = true
            handshake.fail(Failed(reason: "closed before any handshake event"))
        }
        closeNotify?.fail(Failed(reason: "closed without close_notify"))
        if !receivedDone {
            receivedDone = true
            received.fail(Failed(reason: "closed after \(buffer.readableBytes) bytes"))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@Suite("TLS over real sockets on 127.0.0.1")
struct TLSSocketTests {
    struct Connection {
        var serverHandshake: EventLoopFuture<TLSHandshakeCompletedEvent>
        var serverReceived: EventLoopFuture<ByteBuffer>
        var clientHandshake: EventLoopFuture<TLSHandshakeCompletedEvent>
        var clientReceived: EventLoopFuture<ByteBuffer>
        var serverCloseNotify: EventLoopFuture<Void>
        var server: any Channel
        var client: any Channel
    }

    /// A listener on port 0 accepting one connection, and a client to it.
    static func connect(
        group: any EventLoopGroup,
        serverContext: TLSContext,
        clientContext: TLSContext,
        serverPayload: ByteBuffer?,
        clientPayload: ByteBuffer?
    ) async throws -> Connection {
        let loop = group.next()
        let serverHandshake = loop.makePromise(of: TLSHandshakeCompletedEvent.self)
        let serverReceived = loop.makePromise(of: ByteBuffer.self)
        let clientHandshake = loop.makePromise(of: TLSHandshakeCompletedEvent.self)
        let clientReceived = loop.makePromise(of: ByteBuffer.self)
        let serverCloseNotify = loop.makePromise(of: Void.self)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: serverContext))
                    try channel.pipeline.syncOperations.addHandler(
                        SocketPeer(
                            payload: serverPayload,
                            expectedBytes: clientPayload?.readableBytes ?? .max,
                            handshake: serverHandshake,
                            received: serverReceived,
                            closeNotify: serverCloseNotify
                        )
                    )
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: clientContext))
                    try channel.pipeline.syncOperations.addHandler(
                        SocketPeer(
                            payload: clientPayload,
                            expectedBytes: serverPayload?.readableBytes ?? .max,
                            handshake: clientHandshake,
                            received: clientReceived
                        )
                    )
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return Connection(
            serverHandshake: serverHandshake.futureResult,
            serverReceived: serverReceived.futureResult,
            clientHandshake: clientHandshake.futureResult,
            clientReceived: clientReceived.futureResult,
            serverCloseNotify: serverCloseNotify.futureResult,
            server: server,
            client: client
        )
    }

    static func randomPayload(bytes: Int) -> ByteBuffer {
        var generator = SystemRandomNumberGenerator()
        var buffer = ByteBuffer()
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes) { raw in
            for index in 0..<bytes { raw[index] = UInt8.random(in: 0...255, using: &generator) }
            return bytes
        }
        return buffer
    }

    @Test func twoMegabytesEachWayRoundTripByteExact() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let toServer = Self.randomPayload(bytes: 2 * 1024 * 1024)
        let toClient = Self.randomPayload(bytes: 2 * 1024 * 1024)
        let connection = try await Self.connect(
            group: group,
            serverContext: Contexts.server(),
            clientContext: Contexts.client(),
            serverPayload: toClient,
            clientPayload: toServer
        )
        let clientEvent = try await connection.clientHandshake.get()
        #expect(clientEvent.negotiatedProtocol == "h2" && clientEvent.version == .tls13)
        #expect(clientEvent.peerIdentity?.commonName == "cairn-server")
        #expect(clientEvent.peerIdentity?.dnsNames == ["localhost"])
        #expect(clientEvent.peerIdentity?.ipAddresses == ["127.0.0.1"])
        let serverEvent = try await connection.serverHandshake.get()
        #expect(serverEvent.peerIdentity?.commonName == "tenant-a-client")
        #expect(serverEvent.peerIdentity?.uris == ["spiffe://cairn/tenant-a"])
        #expect(try await connection.serverReceived.get() == toServer)
        #expect(try await connection.clientReceived.get() == toClient)
        // close_notify from the client; the server sees it and closes too.
        try await connection.client.close()
        try await connection.serverCloseNotify.get()
        try await connection.server.close()
        try await group.shutdownGracefully()
    }

    enum Refusal: String, CaseIterable, Sendable {
        case missingClientCertificate
        case untrustedClientCA
        case wrongServerName

        var clientConfiguration: TLSConfiguration {
            switch self {
            case .missingClientCertificate: return Contexts.clientConfiguration(certificate: false)
            case .untrustedClientCA: return Contexts.clientConfiguration(untrusted: true)
            case .wrongServerName:
                var configuration = Contexts.clientConfiguration()
                configuration.serverName = "wrong.example"
                return configuration
            }
        }
    }

    @Test(arguments: Refusal.allCases)
    func refusalsOverSockets(refusal: Refusal) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let connection = try await Self.connect(
            group: group,
            serverContext: Contexts.server(),
            clientContext: Contexts.client(refusal.clientConfiguration),
            serverPayload: nil,
            clientPayload: nil
        )
        let failing = refusal == .wrongServerName ? connection.clientHandshake : connection.serverHandshake
        do {
            _ = try await failing.get()
            Issue.record("\(refusal) completed a handshake")
        } catch let failure as SocketPeer.Failed {
            switch refusal {
            case .missingClientCertificate:
                #expect(failure.reason.contains("peer did not return a certificate"))
            case .untrustedClientCA:
                #expect(failure.reason.contains("unable to get local issuer certificate"))
            case .wrongServerName: #expect(failure.reason.contains("hostname mismatch"))
            }
        }
        try await connection.client.closeFuture.get()
        try await connection.server.close()
        try await group.shutdownGracefully()
    }

    @Test func handshakeTimesOutOverSocketsWhenTheClientSendsNothing() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = Contexts.serverConfiguration()
        configuration.handshakeTimeout = .milliseconds(200)
        let handshake = group.next().makePromise(of: TLSHandshakeCompletedEvent.self)
        let received = group.next().makePromise(of: ByteBuffer.self)
        let serverContext = try Contexts.server(configuration)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: serverContext))
                    try channel.pipeline.syncOperations.addHandler(
                        SocketPeer(payload: nil, expectedBytes: 1, handshake: handshake, received: received)
                    )
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        // A plain TCP client that never speaks.
        let silent = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
        do {
            _ = try await handshake.futureResult.get()
            Issue.record("a silent client completed a handshake")
        } catch let failure as SocketPeer.Failed {
            #expect(failure.reason == "handshake did not complete within 200 ms")
        }
        try await silent.closeFuture.get()  // the server hung up
        try await server.close()
        try await group.shutdownGracefully()
    }

    /// Cairn links the system OpenSSL, never BoringSSL (DESIGN.md).
    @Test func testBinaryLinksTheSystemOpenSSLOnly() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // Resolved here: a child's /proc/self is the child.
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        process.arguments = ["nm", executable]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let symbols = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        // Undefined here: resolved from the shared libssl at load time.
        #expect(symbols.contains("U SSL_do_handshake"))
        #expect(!symbols.contains("CNIOBoringSSL"))
    }
}
