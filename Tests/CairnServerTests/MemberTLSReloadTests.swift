import CairnClient
import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Certificate rotation without a restart: the member's certificate files
/// are replaced and SIGHUP makes new connections present the new
/// certificate, while open connections and the member keep working.
@Suite(.serialized) struct MemberTLSReloadTests {
    /// Copies `pair` over the files the member serves.
    static func install(_ pair: CertificatePair, at served: CertificatePair) throws {
        for (source, target) in [
            (pair.certificateFile, served.certificateFile), (pair.keyFile, served.keyFile),
        ] {
            try? FileManager.default.removeItem(atPath: target)
            try FileManager.default.copyItem(atPath: source, toPath: target)
        }
    }

    /// The subject CN of the certificate a new `openssl s_client` sees.
    static func presentedSubject(_ member: TLSMemberProcess, fixture: MemberTLSTests.Fixture) throws -> String
    {
        let output = try member.sClient([
            "-alpn", "h2", "-CAfile", fixture.authority.certificateFile, "-cert",
            fixture.alice.certificateFile,
            "-key", fixture.alice.keyFile,
        ])
        let subject = output.stdout.split(separator: "\n").first { $0.hasPrefix("subject=") }
        return subject.map(String.init) ?? "no subject in: \(output.stdout)\(output.stderr)"
    }

    @Test func sighupRotatesTheCertificateAndAFailedReloadKeepsTheOldOne() async throws {
        let fixture = try MemberTLSTests.Fixture()
        let second = try fixture.authority.member("member2")
        let directory = fixture.authority.directory
        let served = CertificatePair(
            certificateFile: "\(directory)/serving.pem", keyFile: "\(directory)/serving.key")
        try Self.install(fixture.member, at: served)
        let member = try TLSMemberProcess(tlsArguments: [
            "--cert-file", served.certificateFile, "--key-file", served.keyFile,
            "--trusted-ca-file", fixture.authority.certificateFile, "--client-cert-auth",
        ])
        #expect(try Self.presentedSubject(member, fixture: fixture) == "subject=CN = member1")

        // A client connected before the rotation.
        var configuration = EtcdClientConfiguration()
        configuration.tls = EtcdClientTLS(
            trustedCAFile: fixture.authority.certificateFile, certificateFile: fixture.alice.certificateFile,
            keyFile: fixture.alice.keyFile)
        configuration.callTimeout = .seconds(20)
        let client = try EtcdClient(endpoints: [member.endpoint], configuration: configuration)
        do {
            try await client.put(key: "before", value: "1")

            try Self.install(second, at: served)
            kill(member.process.process.processIdentifier, SIGHUP)
            let reloaded = member.waitForLog("reloaded client TLS certificate", moreThan: 0)
            #expect(reloaded.count == 1 && reloaded[0].contains("CN=member2"), "\(member.process.log)")
            #expect(try Self.presentedSubject(member, fixture: fixture) == "subject=CN = member2")
            // The open connection and new ones keep working.
            try await client.put(key: "after", value: "2")
            #expect(try await client.get("after").kvs.map(\.value) == [Data("2".utf8)])

            // A half-done rotation (the key of another certificate): the
            // reload fails, is logged, and the member keeps member2.
            try FileManager.default.removeItem(atPath: served.keyFile)
            try FileManager.default.copyItem(atPath: fixture.member.keyFile, toPath: served.keyFile)
            kill(member.process.process.processIdentifier, SIGHUP)
            let failed = member.waitForLog("reloading client TLS certificate", moreThan: 0)
            #expect(
                failed.count == 1 && failed[0].contains("failed, still presenting CN=member2")
                    && failed[0].contains("does not match the certificate"), "\(member.process.log)")
            #expect(try Self.presentedSubject(member, fixture: fixture) == "subject=CN = member2")
            #expect(member.process.process.isRunning)
            let put = try member.etcdctl(
                ["put", "later", "3"], caFile: fixture.authority.certificateFile, client: fixture.alice)
            #expect(put.status == 0 && put.stdout == "OK\n", "\(put.stderr)\n\(member.process.log)")
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    /// Peer TLS rotates the same way: after SIGHUP a new peer connection
    /// sees the new certificate, and a restarted member (whose new
    /// connections use it too) rejoins the cluster.
    @Test func sighupRotatesThePeerCertificate() throws {
        let fixture = try MemberTLSTests.Fixture()
        let second = try fixture.authority.member("member2")
        let directory = fixture.authority.directory
        let served = CertificatePair(
            certificateFile: "\(directory)/peer.pem", keyFile: "\(directory)/peer.key")
        try Self.install(fixture.member, at: served)
        let peerArguments = [
            "--peer-cert-file", served.certificateFile, "--peer-key-file", served.keyFile,
            "--peer-trusted-ca-file", fixture.authority.certificateFile, "--peer-client-cert-auth",
        ]
        let cluster = try ClusterProcess(size: 3, extraArguments: peerArguments, peerScheme: "https")
        _ = try cluster.waitForLeader()
        func peerSubject(_ member: MemberProcess) throws -> String {
            let output = try TestProcess.run(
                "openssl",
                [
                    "s_client", "-connect", "127.0.0.1:\(member.peerPort)", "-alpn", "cairn-peer", "-CAfile",
                    fixture.authority.certificateFile, "-cert", fixture.alice.certificateFile, "-key",
                    fixture.alice.keyFile,
                ], input: Data(), timeoutSeconds: 20)
            return output.stdout.split(separator: "\n").first { $0.hasPrefix("subject=") }.map(String.init)
                ?? ""
        }
        #expect(try peerSubject(cluster.members[1]) == "subject=CN = member1")
        try Self.install(second, at: served)
        for member in cluster.members { kill(member.process.process.processIdentifier, SIGHUP) }
        for member in cluster.members {
            for _ in 0..<200 where !member.process.log.contains("reloaded peer client") { usleep(100_000) }
            let log = member.process.log
            #expect(
                log.contains("reloaded peer server TLS certificate") && log.contains("CN=member2"),
                "\(member.name): \(log)")
        }
        #expect(try peerSubject(cluster.members[1]) == "subject=CN = member2")
        try cluster.members[2].restart(after: SIGTERM, extraArguments: peerArguments)
        #expect(try cluster.members[0].run("put", "rotated", "1") == "OK\n")
        #expect(try cluster.members[2].run("get", "rotated", "--print-value-only") == "1\n")
    }
}
