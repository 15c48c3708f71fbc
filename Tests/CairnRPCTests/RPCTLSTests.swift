import CairnAPI
import CairnTLS
import CairnTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import CairnRPC

/// TLS between CairnRPC's own server and client over real loopback sockets,
/// with certificates minted by `certs/mint.sh`.
@Suite struct RPCTLSTests {
    /// One CA, a server certificate for 127.0.0.1/localhost, client
    /// certificates, and a second CA nobody trusts.
    final class Fixture: Sendable {
        let authority: TestCertificateAuthority
        let otherAuthority: TestCertificateAuthority
        let server: CertificatePair
        let alice: CertificatePair
        let intruder: CertificatePair

        init() throws {
            self.authority = try TestCertificateAuthority()
            self.otherAuthority = try TestCertificateAuthority(commonName: "Other CA")
            self.server = try self.authority.member("server1", sans: ["DNS:server1.cairn.test"])
            self.alice = try self.authority.client("alice", uris: ["spiffe://cairn/tenant-a"])
            self.intruder = try self.otherAuthority.client("alice")
        }
    }

    /// Server TLS; every refused handshake's reason is collected.
    static func serverTLS(
        _ fixture: Fixture, requireClientCertificate: Bool = true, failures: NIOLockedValueBox<[String]>
    ) throws -> RPCTLS {
        let configuration = TLSConfiguration(
            certificateChainFile: fixture.server.certificateFile, privateKeyFile: fixture.server.keyFile,
            trustedCAFile: fixture.authority.certificateFile,
            requireClientCertificate: requireClientCertificate)
        return try RPCTLS(configuration: configuration, role: .server) { _, reason in
            failures.withLockedValue { $0.append(reason) }
        }
    }

    static func clientTLS(
        _ fixture: Fixture, pair: CertificatePair?, trustedCA: String? = nil, serverName: String? = nil
    ) throws -> RPCTLS {
        let configuration = TLSConfiguration(
            certificateChainFile: pair?.certificateFile, privateKeyFile: pair?.keyFile,
            trustedCAFile: trustedCA ?? fixture.authority.certificateFile, serverName: serverName)
        return try RPCTLS(configuration: configuration, role: .client)
    }

    /// A server whose Range answers with the caller's proven identity: the
    /// CN as the first key, then each SAN URI, DNS name and IP address.
    static func identityServer(tls: RPCTLS) async throws -> RPCServer {
        var router = RPCServiceRouter()
        router.unary(EtcdKV.range) { _, context in
            var response = Etcdserverpb_RangeResponse()
            guard let peer = context.peer else { return response }
            let names = [peer.commonName ?? ""] + peer.uris + peer.dnsNames + peer.ipAddresses
            response.kvs = names.map { name in
                var kv = Mvccpb_KeyValue()
                kv.key = Data(name.utf8)
                return kv
            }
            return response
        }
        var configuration = RPCServerConfiguration()
        configuration.tls = tls
        return try await RPCServer.start(
            host: "127.0.0.1", port: 0, router: router, configuration: configuration)
    }

    static func call(port: Int, tls: RPCTLS?) async throws -> [String] {
        var configuration = RPCClientConfiguration()
        configuration.tls = tls
        let client = try RPCClient(endpoints: ["127.0.0.1:\(port)"], configuration: configuration)
        do {
            let response = try await client.unary(
                EtcdKV.range, Etcdserverpb_RangeRequest(), options: .init(timeout: .seconds(10)))
            await client.shutdown()
            return response.kvs.map { String(decoding: $0.key, as: UTF8.self) }
        } catch {
            await client.shutdown()
            throw error
        }
    }

    @Test func clientCertificateIdentityReachesEveryCall() async throws {
        let fixture = try Fixture()
        let failures = NIOLockedValueBox<[String]>([])
        let server = try await Self.identityServer(tls: try Self.serverTLS(fixture, failures: failures))
        let port = server.localAddress.port!
        let names = try await Self.call(port: port, tls: try Self.clientTLS(fixture, pair: fixture.alice))
        #expect(names == ["alice", "spiffe://cairn/tenant-a"])
        // A member certificate used as a client certificate: DNS and IP SANs too.
        let memberNames = try await Self.call(
            port: port, tls: try Self.clientTLS(fixture, pair: fixture.server))
        #expect(memberNames == ["server1", "localhost", "server1.cairn.test", "127.0.0.1"])
        #expect(failures.withLockedValue { $0 }.isEmpty)
        await server.shutdown()
    }

    @Test func withoutClientCertificateAuthThePeerHasNoIdentity() async throws {
        let fixture = try Fixture()
        let failures = NIOLockedValueBox<[String]>([])
        let server = try await Self.identityServer(
            tls: try Self.serverTLS(fixture, requireClientCertificate: false, failures: failures))
        let names = try await Self.call(
            port: server.localAddress.port!, tls: try Self.clientTLS(fixture, pair: nil))
        #expect(names.isEmpty)
        await server.shutdown()
    }

    @Test func refusedClientsSeeTheReasonAndTheServerKeepsServing() async throws {
        let fixture = try Fixture()
        let failures = NIOLockedValueBox<[String]>([])
        let server = try await Self.identityServer(tls: try Self.serverTLS(fixture, failures: failures))
        let port = server.localAddress.port!
        // No client certificate: with TLS 1.3 the server's refusal is an
        // alert after the client's side of the handshake; the caller sees it.
        do {
            _ = try await Self.call(port: port, tls: try Self.clientTLS(fixture, pair: nil))
            Issue.record("a client without a certificate was accepted")
        } catch let status as RPCStatus {
            #expect(status.code == .unavailable)
            #expect(status.message.contains("certificate required"), "\(status.message)")
        }
        // A certificate from a CA the server does not trust.
        await #expect(throws: RPCStatus.self) {
            _ = try await Self.call(port: port, tls: try Self.clientTLS(fixture, pair: fixture.intruder))
        }
        // Plaintext HTTP/2 on the TLS port.
        await #expect(throws: RPCStatus.self) { _ = try await Self.call(port: port, tls: nil) }
        let reasons = try await Self.waitFor(failures, count: 3)
        #expect(reasons.count >= 3)
        // Still serving verified clients.
        let names = try await Self.call(port: port, tls: try Self.clientTLS(fixture, pair: fixture.alice))
        #expect(names.first == "alice")
        await server.shutdown()
    }

    @Test func clientRefusesAServerWithTheWrongNameOrAnUntrustedCA() async throws {
        let fixture = try Fixture()
        let failures = NIOLockedValueBox<[String]>([])
        let server = try await Self.identityServer(tls: try Self.serverTLS(fixture, failures: failures))
        let port = server.localAddress.port!
        do {
            _ = try await Self.call(
                port: port,
                tls: try Self.clientTLS(fixture, pair: fixture.alice, serverName: "other.cairn.test"))
            Issue.record("a hostname mismatch was accepted")
        } catch let status as RPCStatus {
            #expect(status.code == .unavailable)
            #expect(status.message.contains("TLS handshake failed"))
            #expect(status.message.contains("hostname mismatch"))
        }
        do {
            _ = try await Self.call(
                port: port,
                tls: try Self.clientTLS(
                    fixture, pair: fixture.alice, trustedCA: fixture.otherAuthority.certificateFile))
            Issue.record("a server certificate from an untrusted CA was accepted")
        } catch let status as RPCStatus {
            #expect(status.message.contains("TLS handshake failed"))
        }
        // The SAN DNS name works as the server name too.
        let names = try await Self.call(
            port: port,
            tls: try Self.clientTLS(fixture, pair: fixture.alice, serverName: "server1.cairn.test"))
        #expect(names.first == "alice")
        await server.shutdown()
    }

    @Test func aHandshakeThatNeverFinishesIsCutAtTheTimeout() async throws {
        let fixture = try Fixture()
        let failures = NIOLockedValueBox<[String]>([])
        var configuration = TLSConfiguration(
            certificateChainFile: fixture.server.certificateFile, privateKeyFile: fixture.server.keyFile,
            handshakeTimeout: .milliseconds(300))
        configuration.requireClientCertificate = false
        let tls = try RPCTLS(configuration: configuration, role: .server) { _, reason in
            failures.withLockedValue { $0.append(reason) }
        }
        let server = try await Self.identityServer(tls: tls)
        // A TCP client that sends nothing.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await ClientBootstrap(group: group).connect(
            host: "127.0.0.1", port: server.localAddress.port!
        ).get()
        try await channel.closeFuture.get()
        let reasons = try await Self.waitFor(failures, count: 1)
        #expect(reasons.first?.contains("300 ms") == true)
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    /// The peer transport's use: `addHandlers` on a raw (non-gRPC) channel
    /// with its own ALPN; both sides learn the other's verified identity,
    /// and a gRPC (h2) client is refused on that port.
    @Test func addHandlersSecuresARawChannelWithItsOwnALPN() async throws {
        let fixture = try Fixture()
        let dialler = try fixture.authority.member("member2")
        let serverTLS = try RPCTLS(
            configuration: TLSConfiguration(
                certificateChainFile: fixture.server.certificateFile, privateKeyFile: fixture.server.keyFile,
                trustedCAFile: fixture.authority.certificateFile, requireClientCertificate: true,
                alpnProtocols: ["cairn-peer"]),
            role: .server)
        let clientTLS = try RPCTLS(
            configuration: TLSConfiguration(
                certificateChainFile: dialler.certificateFile, privateKeyFile: dialler.keyFile,
                trustedCAFile: fixture.authority.certificateFile, alpnProtocols: ["cairn-peer"]),
            role: .client)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let serverSide = IdentityEcho(echo: true)
        let listener = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try serverTLS.addHandlers(to: channel.pipeline.syncOperations)
                    try channel.pipeline.syncOperations.addHandler(IdentityEchoHandler(serverSide))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = listener.localAddress!.port!
        let clientSide = IdentityEcho(echo: false)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try clientTLS.addHandlers(to: channel.pipeline.syncOperations, serverName: "127.0.0.1")
                    try channel.pipeline.syncOperations.addHandler(IdentityEchoHandler(clientSide))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try await channel.writeAndFlush(ByteBuffer(string: "ping")).get()
        for _ in 0..<500 where clientSide.received.withLockedValue({ $0 }) != "ping" {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(clientSide.received.withLockedValue { $0 } == "ping")
        #expect(serverSide.identities.withLockedValue { $0.map(\.commonName) } == ["member2"])
        #expect(clientSide.identities.withLockedValue { $0.map(\.commonName) } == ["server1"])
        try await channel.close()
        // A gRPC client offers only h2: no protocol in common, refused.
        await #expect(throws: RPCStatus.self) {
            _ = try await Self.call(port: port, tls: try Self.clientTLS(fixture, pair: fixture.alice))
        }
        try await listener.close()
        try await group.shutdownGracefully()
    }

    /// Waits (bounded) until `count` failures were reported.
    static func waitFor(_ failures: NIOLockedValueBox<[String]>, count: Int) async throws -> [String] {
        for _ in 0..<500 {
            let reasons = failures.withLockedValue { $0 }
            if reasons.count >= count { return reasons }
            try await Task.sleep(for: .milliseconds(10))
        }
        return failures.withLockedValue { $0 }
    }
}

/// What an `IdentityEchoHandler` saw, readable from the test.
final class IdentityEcho: Sendable {
    let echo: Bool
    let identities = NIOLockedValueBox<[PeerIdentity]>([])
    let received = NIOLockedValueBox("")

    init(echo: Bool) { self.echo = echo }
}

/// Records `RPCPeerIdentityEvent`s and the plaintext received; echoes it back
/// when `echo` is set.
final class IdentityEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let state: IdentityEcho

    init(_ state: IdentityEcho) { self.state = state }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let identity = event as? RPCPeerIdentityEvent {
            self.state.identities.withLockedValue { $0.append(identity.identity) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        self.state.received.withLockedValue { $0 += String(buffer: buffer) }
        if self.state.echo { context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil) }
    }
}
