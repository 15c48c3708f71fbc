import COpenSSL
import Foundation
import NIOCore
import Testing

@testable import CairnTLS

@Suite("TLSContext configuration errors")
struct TLSContextTests {
    let fixture = CertificateFixture.shared

    @Test func missingCertificateFileNamesTheFile() throws {
        var configuration = Contexts.serverConfiguration()
        configuration.certificateChainFile = "\(fixture.directory)/absent.pem"
        let error = try #require(throws: TLSError.self) {
            try TLSContext(configuration: configuration, role: .server)
        }
        #expect(error.kind == .certificateChain)
        #expect(error.message.contains("absent.pem"))
        #expect(error.message.contains("No such file"))
    }

    @Test func mismatchedKeyIsReported() throws {
        var configuration = Contexts.serverConfiguration()
        configuration.privateKeyFile = fixture.clientKey
        let error = try #require(throws: TLSError.self) {
            try TLSContext(configuration: configuration, role: .server)
        }
        #expect(error.kind == .privateKey)
        #expect(error.message.contains("does not match"))
    }

    @Test func serverWithoutCertificateIsRefused() throws {
        let error = try #require(throws: TLSError.self) {
            try TLSContext(configuration: TLSConfiguration(), role: .server)
        }
        #expect(error.kind == .invalidConfiguration)
    }

    @Test func clientAuthenticationWithoutTrustedCAIsRefused() throws {
        var configuration = Contexts.serverConfiguration()
        configuration.trustedCAFile = nil
        let error = try #require(throws: TLSError.self) {
            try TLSContext(configuration: configuration, role: .server)
        }
        #expect(error.message.contains("trusted CA file"))
    }

    @Test func unusableCipherListIsRefused() throws {
        var configuration = Contexts.serverConfiguration()
        configuration.cipherList = "NO-SUCH-CIPHER"
        let error = try #require(throws: TLSError.self) {
            try TLSContext(configuration: configuration, role: .server)
        }
        #expect(error.kind == .cipherSettings)
        #expect(error.message.contains("NO-SUCH-CIPHER"))
    }

    @Test func tls13FloorOnTheServerNegotiatesTLS13() throws {
        // The client allows TLS 1.2, the server insists on 1.3.
        var server = Contexts.serverConfiguration()
        server.minimumVersion = .tls13
        let pair = try EmbeddedPair(client: Contexts.client(), server: Contexts.server(server))
        try pair.shuttle()
        #expect(pair.clientEvents.completed?.version == .tls13)
    }
}

@Suite("TLS 1.2")
struct TLS12Tests {
    /// A client that speaks at most TLS 1.2 (capped directly on its
    /// `SSL_CTX`, as an old client would be).
    static func tls12OnlyClient() throws -> TLSContext {
        let context = try Contexts.client()
        #expect(cairn_SSL_CTX_set_max_proto_version(context.pointer, TLS1_2_VERSION) == 1)
        return context
    }

    @Test func tls12ClientNegotiatesWithADefaultServer() throws {
        let pair = try EmbeddedPair(client: Self.tls12OnlyClient(), server: Contexts.server())
        try pair.shuttle()
        let server = try #require(pair.serverEvents.completed)
        #expect(server.version == .tls12)
        #expect(server.negotiatedProtocol == "h2")
        #expect(server.peerIdentity?.uris == ["spiffe://cairn/tenant-a"])
        try pair.client.writeAndFlush(ByteBuffer(string: "over 1.2")).wait()
        try pair.shuttle()
        #expect(pair.serverEvents.received == ByteBuffer(string: "over 1.2"))
    }

    @Test func renegotiationAndCompressionAreOffOnBothRoles() throws {
        for context in [try Contexts.server(), try Contexts.client()] {
            let options = SSL_CTX_get_options(context.pointer)
            #expect(options & cairn_SSL_OP_NO_RENEGOTIATION() != 0)
            #expect(options & cairn_SSL_OP_NO_COMPRESSION() != 0)
        }
    }

    @Test func tls13FloorRefusesATLS12Client() throws {
        var configuration = Contexts.serverConfiguration()
        configuration.minimumVersion = .tls13
        let pair = try EmbeddedPair(client: Self.tls12OnlyClient(), server: Contexts.server(configuration))
        try pair.shuttle()
        let failure = try #require(pair.serverEvents.failed)
        #expect(failure.reason.contains("unsupported protocol"))
        #expect(pair.clientEvents.completed == nil)
    }
}

@Suite("TLSStateMachine transitions")
struct TLSStateMachineTests {
    @Test func handshakeThenCloseSendsCloseNotify() {
        var machine = TLSStateMachine()
        #expect(machine.write() == .buffer)
        #expect(machine.start() == .beginHandshake)
        #expect(machine.start() == .none)
        #expect(machine.bytesReceived() == .feedAndHandshake)
        #expect(machine.handshakeStepped(.needsMoreInput) == .wait)
        #expect(machine.handshakeStepped(.complete) == .completeHandshake)
        #expect(machine.write() == .encrypt)
        #expect(machine.handshakeTimedOut(after: "1 ms") == nil)
        #expect(machine.close() == .sendCloseNotifyThenClose)
        #expect(machine.state == .closing)
        #expect(machine.bytesReceived() == .discard)
        #expect(machine.write() == .failClosed)
        #expect(machine.close() == .alreadyClosing)
        #expect(machine.channelInactive() == nil)
        #expect(machine.state == .closed)
    }

    @Test func failuresEndTheHandshakeOnce() {
        var machine = TLSStateMachine()
        _ = machine.start()
        #expect(machine.handshakeStepped(.failed(reason: "bad")) == .failHandshake(reason: "bad"))
        #expect(machine.handshakeTimedOut(after: "1 ms") == nil)
        #expect(machine.channelInactive() == nil)

        var timedOut = TLSStateMachine()
        _ = timedOut.start()
        #expect(
            timedOut.handshakeTimedOut(after: "5 ms")
                == .failHandshake(reason: "handshake did not complete within 5 ms"))
        #expect(timedOut.state == .closed)

        var dropped = TLSStateMachine()
        _ = dropped.start()
        #expect(
            dropped.channelInactive()
                == .failHandshake(reason: "connection closed by the peer during the handshake"))
    }

    @Test func peerCloseNotifyIsAnsweredOnlyWhenActive() {
        var machine = TLSStateMachine()
        _ = machine.start()
        _ = machine.handshakeStepped(.complete)
        #expect(machine.peerSentCloseNotify() == .replyCloseNotifyThenClose)
        #expect(machine.peerSentCloseNotify() == .none)
        let first = machine.recordLayerFailed()
        let second = machine.recordLayerFailed()
        #expect(first && !second)
    }
}

@Suite("TLSContextReloader")
struct TLSContextReloaderTests {
    /// Copies `certificate` and `key` over the server's working files.
    static func install(certificate: String, key: String, into directory: String) throws {
        for (source, name) in [(certificate, "server.pem"), (key, "server.key")] {
            let target = "\(directory)/\(name)"
            if FileManager.default.fileExists(atPath: target) {
                try FileManager.default.removeItem(atPath: target)
            }
            try FileManager.default.copyItem(atPath: source, toPath: target)
        }
    }

    @Test func reloadServesNewCertificatesAndKeepsTheOldOnFailure() throws {
        let fixture = CertificateFixture.shared
        let directory = "\(fixture.directory)/reload-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.install(certificate: fixture.serverCertificate, key: fixture.serverKey, into: directory)
        var configuration = Contexts.serverConfiguration()
        configuration.certificateChainFile = "\(directory)/server.pem"
        configuration.privateKeyFile = "\(directory)/server.key"
        let reloader = try TLSContextReloader(configuration: configuration, role: .server)
        let before = try EmbeddedPair(client: Contexts.client(), server: reloader.current)
        try before.shuttle()
        #expect(before.clientEvents.completed != nil)

        // A broken file: the reload fails and the previous context stays.
        try "not a certificate".write(toFile: "\(directory)/server.pem", atomically: true, encoding: .utf8)
        #expect(throws: TLSError.self) { try reloader.reload() }
        let kept = try EmbeddedPair(client: Contexts.client(), server: reloader.current)
        try kept.shuttle()
        #expect(kept.clientEvents.completed != nil)

        // A certificate from another CA: new connections get it (and this
        // client, trusting only our CA, refuses it).
        try Self.install(
            certificate: fixture.untrustedClientCertificate,
            key: fixture.untrustedClientKey,
            into: directory
        )
        try reloader.reload()
        let after = try EmbeddedPair(client: Contexts.client(), server: reloader.current)
        try after.shuttle()
        #expect(after.clientEvents.failed?.reason.contains("unable to get local issuer certificate") == true)
    }

    @Test func missingRevocationListFileIsReported() throws {
        var configuration = Contexts.serverConfiguration()
        configuration.crlFile = "/nonexistent/cairn.crl"
        let error = try #require(throws: TLSError.self) {
            try TLSContext(configuration: configuration, role: .server)
        }
        #expect(error.kind == .revocationList)
        #expect(error.message.contains("/nonexistent/cairn.crl"))
    }
}
