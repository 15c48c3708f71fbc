import CairnClient
import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real `cairn member` serving `https://` client URLs, started with etcd's
/// TLS flags, driven by the real `etcdctl`, `openssl s_client` and
/// `EtcdClient`. Certificates come from `certs/mint.sh` in a temp dir.
final class TLSMemberProcess: @unchecked Sendable {
    let port: Int
    let dataDirectory: URL
    let process: BackgroundProcess

    /// Starts a member on https://127.0.0.1:PORT with `tlsArguments`.
    init(tlsArguments: [String]) throws {
        self.port = TestPorts.allocate()
        self.dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cairn-tls-member-\(getpid())-\(self.port)-\(UInt32.random(in: 0...UInt32.max))")
        self.process = try BackgroundProcess(
            MemberProcess.binary,
            Self.baseArguments(port: self.port, dataDirectory: self.dataDirectory) + tlsArguments,
            name: "tls-member")
        try TestPorts.waitUntilListening(self.port)
    }

    static func baseArguments(port: Int, dataDirectory: URL) -> [String] {
        var arguments = [
            "member", "--data-dir", dataDirectory.path, "--listen-client-urls", "https://127.0.0.1:\(port)",
            "--threads", "2",
        ]
        // Clustered members also listen for peers: keep that port private too.
        if Self.hasPeerListener {
            arguments += ["--listen-peer-urls", "http://127.0.0.1:\(TestPorts.allocate())"]
        }
        return arguments
    }

    /// Whether this build of `cairn member` takes `--listen-peer-urls`.
    static let hasPeerListener: Bool = {
        let help = try? TestProcess.run(MemberProcess.binary, ["member", "--help"], timeoutSeconds: 20)
        return help?.stdout.contains("--listen-peer-urls") ?? false
    }()

    var endpoint: String { "https://127.0.0.1:\(self.port)" }

    /// etcdctl with `--cacert` and, when given, `--cert`/`--key`. Calls
    /// expected to be `refused` get short timeouts (etcdctl retries a refused
    /// handshake until its command timeout); the others leave room for a
    /// loaded machine.
    func etcdctl(
        _ arguments: [String], caFile: String, client: CertificatePair?, refused: Bool = false
    ) throws -> TestProcess.Output {
        var flags = [
            "--endpoints=\(self.endpoint)", refused ? "--dial-timeout=3s" : "--dial-timeout=15s",
            refused ? "--command-timeout=5s" : "--command-timeout=20s", "--cacert=\(caFile)",
        ]
        if let client { flags += ["--cert=\(client.certificateFile)", "--key=\(client.keyFile)"] }
        return try TestProcess.run(
            "etcdctl", flags + arguments, environment: ["ETCDCTL_API": "3"], timeoutSeconds: 60)
    }

    /// `openssl s_client` handshake output (it exits once stdin is closed).
    func sClient(_ arguments: [String]) throws -> TestProcess.Output {
        try TestProcess.run(
            "openssl", ["s_client", "-connect", "127.0.0.1:\(self.port)"] + arguments, input: Data(),
            timeoutSeconds: 20)
    }

    /// The member's log once it contains `text` (or after 20 s, for the
    /// failure message): refusals are logged as they happen.
    func log(waitingFor text: String) -> String {
        for _ in 0..<200 {
            let log = self.process.log
            if log.contains(text) { return log }
            usleep(100_000)
        }
        return self.process.log
    }

    deinit {
        self.process.stop()
        try? FileManager.default.removeItem(at: self.dataDirectory)
    }
}

@Suite(.serialized) struct MemberTLSTests {
    /// The CA, the member's certificate, clients `alice` and `bob` (revoked
    /// in the CRL), and `mallory` from a CA the member does not trust.
    final class Fixture: Sendable {
        let authority: TestCertificateAuthority
        let otherAuthority: TestCertificateAuthority
        let member: CertificatePair
        let alice: CertificatePair
        let bob: CertificatePair
        let mallory: CertificatePair

        init() throws {
            self.authority = try TestCertificateAuthority()
            self.otherAuthority = try TestCertificateAuthority(commonName: "Other CA")
            self.member = try self.authority.member("member1")
            self.alice = try self.authority.client("alice")
            self.bob = try self.authority.client("bob")
            self.mallory = try self.otherAuthority.client("mallory")
            try self.authority.revoke("bob")
        }

        /// etcd's flags for https with client certificate authentication.
        func memberArguments(crl: Bool = false) -> [String] {
            [
                "--cert-file", self.member.certificateFile, "--key-file", self.member.keyFile,
                "--trusted-ca-file", self.authority.certificateFile, "--client-cert-auth",
            ] + (crl ? ["--client-crl-file", self.authority.revocationListFile] : [])
        }
    }

    @Test func etcdctlPutsAndGetsOverMutualTLSAndStrangersAreRefused() throws {
        let fixture = try Fixture()
        let member = try TLSMemberProcess(tlsArguments: fixture.memberArguments())
        let ca = fixture.authority.certificateFile
        let put = try member.etcdctl(["put", "greeting", "hello"], caFile: ca, client: fixture.alice)
        #expect(put.status == 0, "\(put.stderr)\n\(member.process.log)")
        #expect(put.stdout == "OK\n")
        let get = try member.etcdctl(["get", "greeting"], caFile: ca, client: fixture.alice)
        #expect(get.stdout == "greeting\nhello\n")

        let anonymous = try member.etcdctl(["put", "a", "1"], caFile: ca, client: nil, refused: true)
        #expect(anonymous.status != 0)
        let stranger = try member.etcdctl(
            ["put", "a", "1"], caFile: ca, client: fixture.mallory, refused: true)
        #expect(stranger.status != 0)
        // Plaintext HTTP/2 and random bytes on the TLS port.
        let plaintext = try TestProcess.run(
            "etcdctl", ["--endpoints=http://127.0.0.1:\(member.port)", "--dial-timeout=2s", "put", "a", "1"],
            environment: ["ETCDCTL_API": "3"], timeoutSeconds: 20)
        #expect(plaintext.status != 0)
        // Each refusal is logged with its reason; the member keeps serving.
        #expect(member.log(waitingFor: "rejected client connection from \"127.0.0.1:").contains("rejected"))
        let anonymousLog = member.log(waitingFor: "peer did not return a certificate")
        #expect(anonymousLog.contains("peer did not return a certificate"), "\(anonymousLog)")
        let strangerLog = member.log(waitingFor: "certificate verify failed")
        #expect(strangerLog.contains("certificate verify failed"), "\(strangerLog)\n\(stranger.stderr)")
        #expect(member.process.process.isRunning)
        let after = try member.etcdctl(
            ["get", "greeting", "--print-value-only"], caFile: ca, client: fixture.alice)
        #expect(after.stdout == "hello\n", "\(after.stderr)\n\(member.process.log)")
        // Nothing was written by a refused client.
        let keys = try member.etcdctl(["get", "a"], caFile: ca, client: fixture.alice)
        #expect(keys.status == 0 && keys.stdout.isEmpty)
    }

    @Test func aTrustedCAAloneRequiresClientCertificatesAsInEtcd() throws {
        let fixture = try Fixture()
        let member = try TLSMemberProcess(tlsArguments: [
            "--cert-file", fixture.member.certificateFile, "--key-file", fixture.member.keyFile,
            "--trusted-ca-file", fixture.authority.certificateFile,
        ])
        let ca = fixture.authority.certificateFile
        #expect(
            try member.etcdctl(["put", "k", "v"], caFile: ca, client: nil, refused: true).status != 0)
        let valid = try member.etcdctl(["put", "k", "v"], caFile: ca, client: fixture.alice)
        #expect(valid.status == 0, "\(valid.stderr)\n\(member.process.log)")
        // Without a trusted CA, TLS alone: anyone may connect.
        let open = try TLSMemberProcess(tlsArguments: [
            "--cert-file", fixture.member.certificateFile, "--key-file", fixture.member.keyFile,
        ])
        #expect(try open.etcdctl(["put", "k", "v"], caFile: ca, client: nil).status == 0)
    }

    @Test func aRevokedClientCertificateIsRefused() throws {
        let fixture = try Fixture()
        let member = try TLSMemberProcess(tlsArguments: fixture.memberArguments(crl: true))
        let ca = fixture.authority.certificateFile
        let revoked = try member.etcdctl(
            ["put", "k", "v"], caFile: ca, client: fixture.bob, refused: true)
        #expect(revoked.status != 0)
        #expect(member.log(waitingFor: "certificate revoked").contains("certificate revoked"))
        let valid = try member.etcdctl(["put", "k", "v"], caFile: ca, client: fixture.alice)
        #expect(valid.status == 0, "\(valid.stderr)\n\(member.process.log)")
    }

    @Test func tlsVersionsAndALPN() throws {
        let fixture = try Fixture()
        let ca = fixture.authority.certificateFile
        let client = ["-cert", fixture.alice.certificateFile, "-key", fixture.alice.keyFile, "-CAfile", ca]
        // Default floor TLS 1.2: both versions work, ALPN h2 is agreed.
        let member = try TLSMemberProcess(tlsArguments: fixture.memberArguments())
        let tls12 = try member.sClient(["-tls1_2", "-alpn", "h2"] + client)
        #expect(tls12.stdout.contains("New, TLSv1.2"), "\(tls12.stdout)\(tls12.stderr)")
        #expect(tls12.stdout.contains("ALPN protocol: h2"))
        #expect(tls12.stdout.contains("Verify return code: 0 (ok)"))
        let tls13 = try member.sClient(["-tls1_3", "-alpn", "h2"] + client)
        #expect(tls13.stdout.contains("New, TLSv1.3"), "\(tls13.stdout)\(tls13.stderr)")
        #expect(tls13.stdout.contains("ALPN protocol: h2"))
        // gRPC needs h2: a client offering no ALPN is refused.
        let noALPN = try member.sClient(["-tls1_2"] + client)
        #expect(!noALPN.stdout.contains("New, TLSv1.2"))

        // --tls-min-version TLS1.3 refuses TLS 1.2; etcdctl (TLS 1.3) works.
        let strict = try TLSMemberProcess(
            tlsArguments: fixture.memberArguments() + ["--tls-min-version", "TLS1.3"])
        let refused = try strict.sClient(["-tls1_2", "-alpn", "h2"] + client)
        #expect(!refused.stdout.contains("New, TLSv1.2"))
        #expect(try strict.sClient(["-tls1_3", "-alpn", "h2"] + client).stdout.contains("New, TLSv1.3"))
        let put = try strict.etcdctl(["put", "k", "v"], caFile: ca, client: fixture.alice)
        #expect(put.status == 0, "\(put.stderr)\n\(strict.process.log)")
    }

    @Test func cipherSuitesRestrictTLS12() throws {
        let fixture = try Fixture()
        let client = [
            "-tls1_2", "-alpn", "h2", "-cert", fixture.alice.certificateFile, "-key", fixture.alice.keyFile,
        ]
        let member = try TLSMemberProcess(
            tlsArguments: fixture.memberArguments() + [
                "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            ])
        let allowed = try member.sClient(client + ["-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])
        #expect(allowed.stdout.contains("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"), "\(allowed.stdout)")
        let other = try member.sClient(client + ["-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"])
        #expect(!other.stdout.contains("New, TLSv1.2"))
    }

    @Test func startupRefusesIncompleteOrInvalidTLSSettings() throws {
        let fixture = try Fixture()
        let cases: [(arguments: [String], message: String)] = [
            (
                [],
                "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:"
            ),
            (
                fixture.memberArguments() + ["--tls-min-version", "TLS1.1"],
                "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"
            ),
            (
                fixture.memberArguments() + ["--cipher-suites", "TLS_FANCY"],
                "unexpected TLS cipher suite \"TLS_FANCY\""
            ),
            (
                fixture.memberArguments() + [
                    "--tls-min-version", "TLS1.3", "--cipher-suites",
                    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                ],
                "cipher suites cannot be configured when only TLS1.3 is enabled"
            ),
            (
                ["--cert-file", fixture.member.certificateFile, "--key-file", fixture.alice.keyFile],
                "does not match the certificate"
            ),
        ]
        for (arguments, message) in cases {
            let port = TestPorts.allocate()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "cairn-tls-refused-\(getpid())-\(port)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let output = try TestProcess.run(
                MemberProcess.binary,
                TLSMemberProcess.baseArguments(port: port, dataDirectory: directory) + arguments,
                timeoutSeconds: 30)
            #expect(output.status != 0)
            #expect(output.stderr.contains(message), "\(arguments): \(output.stderr)")
        }
    }

    @Test func etcdClientOverTLS() async throws {
        let fixture = try Fixture()
        let member = try TLSMemberProcess(tlsArguments: fixture.memberArguments())
        let tls = EtcdClientTLS(
            trustedCAFile: fixture.authority.certificateFile, certificateFile: fixture.alice.certificateFile,
            keyFile: fixture.alice.keyFile)
        var configuration = EtcdClientConfiguration()
        configuration.tls = tls
        configuration.callTimeout = .seconds(20)
        let client = try EtcdClient(endpoints: [member.endpoint], configuration: configuration)
        do {
            try await client.put(key: "swift", value: "over tls")
            let response = try await client.get("swift")
            #expect(response.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["over tls"])
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()

        // A server name the member's certificate does not carry is an error.
        var mismatched = configuration
        mismatched.tls?.serverName = "elsewhere.example"
        let wrongName = try EtcdClient(endpoints: [member.endpoint], configuration: mismatched)
        do {
            try await wrongName.put(key: "swift", value: "x")
            Issue.record("a hostname mismatch was accepted")
        } catch {
            #expect("\(error)".contains("hostname mismatch"), "\(error)")
        }
        await wrongName.shutdown()
    }
}
