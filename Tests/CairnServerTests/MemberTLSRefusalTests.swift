import CairnClient
import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A raw TCP client on loopback, for what no TLS client would send: random
/// bytes, or nothing at all.
struct RawConnection: ~Copyable {
    let descriptor: Int32

    init(port: Int) throws {
        self.descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard self.descriptor >= 0 else { throw TestFailure("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(self.descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(self.descriptor)
            throw TestFailure("connect to 127.0.0.1:\(port) failed: errno \(errno)")
        }
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes {
            Glibc.send(self.descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
    }

    /// Reads (and drops) whatever arrives until the peer closes the
    /// connection; the seconds that took, or nil if it was still open after
    /// `timeoutSeconds`.
    func secondsUntilClosed(timeoutSeconds: Double) -> Double? {
        let start = Date()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date().timeIntervalSince(start) < timeoutSeconds {
            var poller = pollfd(fd: self.descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 200) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(self.descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return Date().timeIntervalSince(start) }
        }
        return nil
    }

    deinit { close(self.descriptor) }
}

extension TLSMemberProcess {
    /// How many times the log says `text` (refusals are counted so that
    /// each probe is seen to add its own line).
    func logCount(_ text: String) -> Int {
        self.process.log.components(separatedBy: text).count - 1
    }

    /// The log's lines that say `text` and none of `excluded`.
    func logLines(_ text: String, excluding excluded: [String] = []) -> [String] {
        self.process.log.split(separator: "\n").map(String.init).filter { line in
            line.contains(text) && !excluded.contains { line.contains($0) }
        }
    }

    /// Waits up to 20 s for more than `count` lines that say `text` and
    /// none of `excluded`; those lines.
    @discardableResult
    func waitForLog(_ text: String, moreThan count: Int, excluding excluded: [String] = []) -> [String] {
        for _ in 0..<200 where self.logLines(text, excluding: excluded).count <= count { usleep(100_000) }
        return self.logLines(text, excluding: excluded)
    }
}

/// The refusals of issue 6 end to end against a real `cairn member` over
/// `https://`: each is logged with its reason, and the member serves a
/// trusted client afterwards.
@Suite(.serialized) struct MemberTLSRefusalTests {
    static let refused = "rejected client connection from \"127.0.0.1:"
    /// What a client closing its own connection mid-handshake logs (the
    /// test's port probe does that); the probes here are refused by OpenSSL.
    static let peerClosed = ["connection closed by the peer during the handshake"]

    @Test func anExpiredClientCertificateIsRefused() throws {
        let fixture = try MemberTLSTests.Fixture()
        let expired = try fixture.authority.expiredClient("carol")
        let member = try TLSMemberProcess(tlsArguments: fixture.memberArguments())
        let ca = fixture.authority.certificateFile
        let output = try member.etcdctl(["put", "k", "v"], caFile: ca, client: expired, refused: true)
        #expect(output.status != 0)
        let lines = member.waitForLog("certificate has expired", moreThan: 0)
        #expect(lines.contains { $0.contains(Self.refused) }, "\(member.process.log)")
        let valid = try member.etcdctl(["put", "k", "v"], caFile: ca, client: fixture.alice)
        #expect(valid.status == 0 && valid.stdout == "OK\n", "\(valid.stderr)\n\(member.process.log)")
        let read = try member.etcdctl(["get", "k", "--print-value-only"], caFile: ca, client: fixture.alice)
        #expect(read.stdout == "v\n")
    }

    @Test func randomBytesPlaintextAndSilentClientsAreDropped() throws {
        let fixture = try MemberTLSTests.Fixture()
        let member = try TLSMemberProcess(tlsArguments: fixture.memberArguments())
        let ca = fixture.authority.certificateFile

        // Random bytes: refused at once, with OpenSSL's reason.
        var generator = SystemRandomNumberGenerator()
        let noise = try RawConnection(port: member.port)
        noise.send((0..<1024).map { _ in UInt8.random(in: 0...255, using: &generator) })
        #expect(noise.secondsUntilClosed(timeoutSeconds: 10) != nil, "random bytes left the connection open")
        let afterNoise = member.waitForLog(Self.refused, moreThan: 0, excluding: Self.peerClosed)
        #expect(afterNoise.count == 1, "\(member.process.log)")

        // Plaintext HTTP/2 (etcdctl to http:// on the TLS port).
        let plaintext = try TestProcess.run(
            "etcdctl",
            [
                "--endpoints=http://127.0.0.1:\(member.port)", "--dial-timeout=2s", "--command-timeout=3s",
                "put", "a", "1",
            ],
            environment: ["ETCDCTL_API": "3"], timeoutSeconds: 20)
        #expect(plaintext.status != 0)
        let afterPlaintext = member.waitForLog(
            Self.refused, moreThan: afterNoise.count, excluding: Self.peerClosed)
        #expect(afterPlaintext.count > afterNoise.count, "\(member.process.log)")

        // A client that connects and says nothing is closed after the
        // handshake timeout (10 s), not kept forever.
        let silent = try RawConnection(port: member.port)
        let seconds = silent.secondsUntilClosed(timeoutSeconds: 30)
        #expect(seconds.map { $0 >= 9 } == true, "closed after \(seconds.map { "\($0) s" } ?? "never")")
        let timedOut = member.waitForLog("handshake did not complete within 10000 ms", moreThan: 0)
        #expect(timedOut.count == 1 && timedOut[0].contains(Self.refused), "\(member.process.log)")

        #expect(member.process.process.isRunning)
        let valid = try member.etcdctl(["put", "still", "serving"], caFile: ca, client: fixture.alice)
        #expect(valid.status == 0 && valid.stdout == "OK\n", "\(valid.stderr)\n\(member.process.log)")
        let keys = try member.etcdctl(["get", "a"], caFile: ca, client: fixture.alice)
        #expect(keys.status == 0 && keys.stdout.isEmpty, "a refused client wrote: \(keys.stdout)")
    }

    @Test func aHostnameMismatchIsAClientError() async throws {
        let fixture = try MemberTLSTests.Fixture()
        // The certificate names localhost only, not 127.0.0.1.
        let named = try fixture.authority.member("named", sans: ["DNS:localhost"], loopback: false)
        let member = try TLSMemberProcess(tlsArguments: [
            "--cert-file", named.certificateFile, "--key-file", named.keyFile,
            "--trusted-ca-file", fixture.authority.certificateFile, "--client-cert-auth",
        ])
        let ca = fixture.authority.certificateFile
        let mismatch = try member.etcdctl(
            ["put", "k", "v"], caFile: ca, client: fixture.alice, refused: true)
        #expect(mismatch.status != 0, "\(mismatch.stdout)")
        member.waitForLog(Self.refused, moreThan: 0)
        #expect(member.logCount(Self.refused) > 0, "\(member.process.log)")

        // Our own client says why.
        var configuration = EtcdClientConfiguration()
        configuration.tls = EtcdClientTLS(
            trustedCAFile: ca, certificateFile: fixture.alice.certificateFile, keyFile: fixture.alice.keyFile)
        configuration.callTimeout = .seconds(10)
        let client = try EtcdClient(endpoints: [member.endpoint], configuration: configuration)
        do {
            try await client.put(key: "k", value: "v")
            Issue.record("a certificate without 127.0.0.1 was accepted for 127.0.0.1")
        } catch {
            #expect("\(error)".contains("mismatch"), "\(error)")
        }
        await client.shutdown()

        // Under the name the certificate carries, the same member serves.
        let byName = try TestProcess.run(
            "etcdctl",
            [
                "--endpoints=https://localhost:\(member.port)", "--dial-timeout=15s", "--command-timeout=20s",
                "--cacert=\(ca)", "--cert=\(fixture.alice.certificateFile)", "--key=\(fixture.alice.keyFile)",
                "put", "k", "v",
            ], environment: ["ETCDCTL_API": "3"], timeoutSeconds: 60)
        #expect(byName.status == 0 && byName.stdout == "OK\n", "\(byName.stderr)\n\(member.process.log)")
    }
}
