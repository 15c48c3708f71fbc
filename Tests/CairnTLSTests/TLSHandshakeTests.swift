import CairnTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

/// Contexts built from the minted certificates.
enum Contexts {
    static var fixture: CertificateFixture { .shared }

    static func serverConfiguration(requireClientCertificate: Bool = true) -> TLSConfiguration {
        TLSConfiguration(
            certificateChainFile: fixture.serverCertificate,
            privateKeyFile: fixture.serverKey,
            trustedCAFile: fixture.caCertificate,
            requireClientCertificate: requireClientCertificate
        )
    }

    static func clientConfiguration(certificate: Bool = true, untrusted: Bool = false) -> TLSConfiguration {
        var configuration = TLSConfiguration(trustedCAFile: fixture.caCertificate, serverName: "localhost")
        if certificate {
            configuration.certificateChainFile =
                untrusted ? fixture.untrustedClientCertificate : fixture.clientCertificate
            configuration.privateKeyFile = untrusted ? fixture.untrustedClientKey : fixture.clientKey
        }
        return configuration
    }

    static func server(_ configuration: TLSConfiguration = serverConfiguration()) throws -> TLSContext {
        try TLSContext(configuration: configuration, role: .server)
    }

    static func client(_ configuration: TLSConfiguration = clientConfiguration()) throws -> TLSContext {
        try TLSContext(configuration: configuration, role: .client)
    }
}

@Suite("TLS handshake over two EmbeddedChannels")
struct TLSHandshakeTests {
    @Test func mutualTLSNegotiatesH2AndTLS13AndExtractsIdentities() throws {
        var serverConfiguration = Contexts.serverConfiguration()
        serverConfiguration.minimumVersion = .tls13
        let pair = try EmbeddedPair(client: Contexts.client(), server: Contexts.server(serverConfiguration))
        try pair.shuttle()

        let client = try #require(pair.clientEvents.completed)
        #expect(client.negotiatedProtocol == "h2")
        #expect(client.version == .tls13)
        #expect(
            client.peerIdentity
                == TLSPeerIdentity(
                    commonName: "cairn-server",
                    dnsNames: ["localhost"],
                    ipAddresses: ["127.0.0.1"],
                    uris: []
                )
        )
        let server = try #require(pair.serverEvents.completed)
        #expect(server.negotiatedProtocol == "h2")
        #expect(server.version == .tls13)
        #expect(server.peerIdentity?.commonName == "tenant-a-client")
        #expect(server.peerIdentity?.uris == ["spiffe://cairn/tenant-a"])
        #expect(server.peerIdentity?.dnsNames == [])
        #expect(pair.clientEvents.failed == nil && pair.serverEvents.failed == nil)
    }

    @Test func applicationDataFlowsBothWaysAndEarlyWritesAreFlushedAfterTheHandshake() throws {
        let pair = try EmbeddedPair(client: Contexts.client(), server: Contexts.server())
        // Written before any handshake byte moved: held, then sent.
        let early = pair.client.writeAndFlush(ByteBuffer(string: "early write"))
        let written = NIOLockedValueBox(false)
        early.whenSuccess { written.withLockedValue { $0 = true } }
        #expect(!written.withLockedValue { $0 })
        try pair.shuttle()
        #expect(written.withLockedValue { $0 })
        #expect(pair.serverEvents.received == ByteBuffer(string: "early write"))

        try pair.server.writeAndFlush(ByteBuffer(string: "reply")).wait()
        try pair.shuttle()
        #expect(pair.clientEvents.received == ByteBuffer(string: "reply"))
    }

    @Test func serverWithoutClientAuthenticationSeesNoPeerIdentity() throws {
        let server = try Contexts.server(Contexts.serverConfiguration(requireClientCertificate: false))
        let pair = try EmbeddedPair(
            client: Contexts.client(Contexts.clientConfiguration(certificate: false)), server: server)
        try pair.shuttle()
        #expect(pair.serverEvents.completed != nil)
        #expect(pair.serverEvents.completed?.peerIdentity == nil)
        #expect(pair.clientEvents.completed?.peerIdentity?.commonName == "cairn-server")
    }

    @Test func missingClientCertificateIsRefused() throws {
        let pair = try EmbeddedPair(
            client: Contexts.client(Contexts.clientConfiguration(certificate: false)),
            server: Contexts.server()
        )
        try pair.shuttle()
        let failure = try #require(pair.serverEvents.failed)
        #expect(failure.reason.contains("peer did not return a certificate"))
        #expect(pair.serverEvents.completed == nil)
        #expect(!pair.server.isActive)
    }

    @Test func clientCertificateFromAnotherCAIsRefused() throws {
        let pair = try EmbeddedPair(
            client: Contexts.client(Contexts.clientConfiguration(untrusted: true)),
            server: Contexts.server()
        )
        try pair.shuttle()
        let failure = try #require(pair.serverEvents.failed)
        #expect(failure.reason.contains("certificate verify failed"))
        #expect(failure.reason.contains("unable to get local issuer certificate"))
        #expect(!pair.server.isActive)
    }

    @Test func revokedClientCertificateIsRefusedWithACRL() throws {
        let fixture = CertificateFixture.shared
        var serverConfiguration = Contexts.serverConfiguration()
        serverConfiguration.crlFile = fixture.revocationList
        var revoked = Contexts.clientConfiguration()
        revoked.certificateChainFile = fixture.revokedClientCertificate
        revoked.privateKeyFile = fixture.revokedClientKey
        let refused = try EmbeddedPair(
            client: Contexts.client(revoked), server: Contexts.server(serverConfiguration))
        try refused.shuttle()
        let failure = try #require(refused.serverEvents.failed)
        #expect(failure.reason.contains("certificate revoked"))

        // The same CRL lets a certificate that is not listed through.
        let accepted = try EmbeddedPair(
            client: Contexts.client(), server: Contexts.server(serverConfiguration))
        try accepted.shuttle()
        #expect(accepted.serverEvents.completed?.peerIdentity?.commonName == "tenant-a-client")
    }

    @Test(arguments: [
        ("wrong.example", "hostname mismatch"),
        ("127.0.0.2", "IP address mismatch"),
    ])
    func clientRefusesAServerCertificateForAnotherName(name: String, expected: String) throws {
        let pair = try EmbeddedPair(client: Contexts.client(), server: Contexts.server(), serverName: name)
        try pair.shuttle()
        let failure = try #require(pair.clientEvents.failed)
        #expect(failure.reason.contains(expected))
        #expect(pair.clientEvents.completed == nil)
        #expect(!pair.client.isActive)
    }

    @Test func clientAcceptsTheServerByIPAddress() throws {
        let pair = try EmbeddedPair(
            client: Contexts.client(), server: Contexts.server(), serverName: "127.0.0.1")
        try pair.shuttle()
        #expect(pair.clientEvents.completed?.peerIdentity?.ipAddresses == ["127.0.0.1"])
    }

    @Test(arguments: [["http/1.1"], []])
    func serverRequiringH2RefusesAClientThatDoesNotOfferIt(offered: [String]) throws {
        var clientConfiguration = Contexts.clientConfiguration()
        clientConfiguration.alpnProtocols = offered
        clientConfiguration.requireALPN = false
        let pair = try EmbeddedPair(client: Contexts.client(clientConfiguration), server: Contexts.server())
        try pair.shuttle()
        let failure = try #require(pair.serverEvents.failed)
        #expect(
            failure.reason.contains("no application protocol") || failure.reason.contains("callback failed"))
        #expect(pair.serverEvents.completed == nil)
        #expect(pair.clientEvents.completed == nil)
    }

    @Test func handshakeTimesOutWhenThePeerSendsNothing() throws {
        var configuration = Contexts.serverConfiguration()
        configuration.handshakeTimeout = .milliseconds(500)
        let server = EmbeddedChannel()
        let events = EventRecorder()
        try server.pipeline.syncOperations.addHandler(TLSHandler(context: Contexts.server(configuration)))
        try server.pipeline.syncOperations.addHandler(events)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        server.embeddedEventLoop.advanceTime(by: .milliseconds(499))
        #expect(events.failed == nil && server.isActive)
        server.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        let failure = try #require(events.failed)
        #expect(failure.reason == "handshake did not complete within 500 ms")
        #expect(!server.isActive)
    }

    @Test func plaintextOnATLSPortIsRefused() throws {
        let server = EmbeddedChannel()
        let events = EventRecorder()
        try server.pipeline.syncOperations.addHandler(TLSHandler(context: Contexts.server()))
        try server.pipeline.syncOperations.addHandler(events)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try server.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
        let failure = try #require(events.failed)
        #expect(failure.reason.contains("http request") || failure.reason.contains("wrong version number"))
        #expect(!server.isActive)
    }

    @Test func closeSendsCloseNotifyAndThePeerAnswersAndCloses() throws {
        let pair = try EmbeddedPair(client: Contexts.client(), server: Contexts.server())
        try pair.shuttle()
        try #require(pair.clientEvents.completed != nil && pair.serverEvents.completed != nil)
        let closed = pair.client.close()
        try pair.shuttle()
        try closed.wait()
        #expect(pair.serverEvents.closeNotifyReceived)
        #expect(!pair.server.isActive)
        #expect(!pair.client.isActive)
        #expect(pair.serverEvents.errors.isEmpty)
    }

    @Test func writesBeyondThePendingBoundFailWithoutClosing() throws {
        var configuration = Contexts.clientConfiguration()
        configuration.pendingWriteBytesMax = 1000
        let pair = try EmbeddedPair(client: Contexts.client(configuration), server: Contexts.server())
        let first = pair.client.write(ByteBuffer(repeating: 1, count: 600))
        let second = pair.client.write(ByteBuffer(repeating: 2, count: 600))
        pair.client.flush()
        #expect(throws: TLSError.self) { try second.wait() }
        try pair.shuttle()
        try first.wait()
        #expect(pair.serverEvents.received == ByteBuffer(repeating: 1, count: 600))
        #expect(pair.client.isActive)
    }
}
