import CairnTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A real `cairn gateway` in front of a real member over mutual TLS, with
/// tenants `alice` and `bob` and certificates minted by `certs/mint.sh`;
/// `etcdctl` talks to the gateway with a tenant's certificate.
final class GatewayProcess: @unchecked Sendable {
    let authority: TestCertificateAuthority
    /// The Cairn member behind the gateway, or nil in front of etcd.
    let member: TLSMemberProcess?
    /// A real etcd 3.4 behind the gateway (plaintext), when asked for.
    let etcd: BackgroundProcess?
    let etcdDirectory: URL?
    let upstreamEndpoint: String
    let port: Int
    let metricsPort: Int
    let tenantsFile: URL
    let gatewayCertificate: CertificatePair
    let alice: CertificatePair
    let bob: CertificatePair
    /// A client certificate that is no tenant's.
    let stranger: CertificatePair
    private(set) var process: BackgroundProcess

    static let tenants = """
        tenants:
          - name: alice
            identities: ["spiffe://cairn/tenant/alice", "alice"]
            prefix: "tenants/alice/"
            permissions: readwrite
            limits: {requests_per_second: 100000, burst: 100000, watches: 1000, leases: 100, response_bytes: 4194304}
          - name: bob
            identities: ["bob"]
            prefix: "tenants/bob/"
            permissions: readwrite
        """

    /// Starts the member, then the gateway; `tenants` is the tenants file.
    /// - Parameter inFrontOfEtcd: a real etcd 3.4 instead of a Cairn member
    ///   (the gateway must work in front of plain etcd too).
    init(
        tenants: String = GatewayProcess.tenants, gatewayArguments: [String] = [],
        memberArguments: [String] = [],
        inFrontOfEtcd: Bool = false
    ) throws {
        self.authority = try TestCertificateAuthority()
        let memberCertificate = try self.authority.member("member1")
        self.gatewayCertificate = try self.authority.gateway("gateway1")
        self.alice = try self.authority.client("alice", uris: ["spiffe://cairn/tenant/alice"])
        self.bob = try self.authority.client("bob")
        self.stranger = try self.authority.client("stranger")
        if inFrontOfEtcd {
            let clientPort = TestPorts.allocate()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "cairn-gateway-etcd-\(getpid())-\(clientPort)")
            self.etcd = try EtcdProcess.start(
                clientPort: clientPort, peerPort: TestPorts.allocate(), dataDirectory: directory,
                name: "gateway-etcd")
            self.etcdDirectory = directory
            self.member = nil
            self.upstreamEndpoint = "http://127.0.0.1:\(clientPort)"
        } else {
            let member = try TLSMemberProcess(
                tlsArguments: [
                    "--cert-file", memberCertificate.certificateFile, "--key-file", memberCertificate.keyFile,
                    "--trusted-ca-file", self.authority.certificateFile, "--client-cert-auth",
                    "--gateway-identities", "gateway1",
                ] + memberArguments)
            self.member = member
            self.etcd = nil
            self.etcdDirectory = nil
            self.upstreamEndpoint = member.endpoint
        }
        let upstreamTLS =
            inFrontOfEtcd
            ? []
            : [
                "--cert", self.gatewayCertificate.certificateFile, "--key", self.gatewayCertificate.keyFile,
                "--cacert", self.authority.certificateFile,
            ]
        self.port = TestPorts.allocate()
        self.metricsPort = TestPorts.allocate()
        self.tenantsFile = URL(fileURLWithPath: self.authority.directory).appendingPathComponent(
            "tenants.yaml")
        try tenants.write(to: self.tenantsFile, atomically: true, encoding: .utf8)
        self.process = try BackgroundProcess(
            MemberProcess.binary,
            [
                "gateway", "--listen-addr", "127.0.0.1:\(self.port)", "--endpoints", self.upstreamEndpoint,
                "--cert-file", self.gatewayCertificate.certificateFile, "--key-file",
                self.gatewayCertificate.keyFile, "--trusted-ca-file", self.authority.certificateFile,
                "--tenants", self.tenantsFile.path, "--threads", "2",
                "--listen-metrics-urls", "http://127.0.0.1:\(self.metricsPort)",
            ] + upstreamTLS + gatewayArguments, name: "gateway")
        try TestPorts.waitUntilListening(self.port)
    }

    var endpoint: String { "https://127.0.0.1:\(self.port)" }

    /// etcdctl through the gateway as `client` (alice by default).
    func etcdctl(_ arguments: [String], as client: CertificatePair?, input: String? = nil) throws
        -> TestProcess.Output
    {
        var flags = [
            "--endpoints=\(self.endpoint)", "--dial-timeout=5s", "--command-timeout=15s",
            "--cacert=\(self.authority.certificateFile)",
        ]
        if let client { flags += ["--cert=\(client.certificateFile)", "--key=\(client.keyFile)"] }
        return try TestProcess.run(
            "etcdctl", flags + arguments, environment: ["ETCDCTL_API": "3"],
            input: input.map { Data($0.utf8) },
            timeoutSeconds: 40)
    }

    /// etcdctl straight to the member, with the gateway's certificate (no
    /// on-behalf-of header: the member sees the whole key space).
    func memberEtcdctl(_ arguments: String...) throws -> TestProcess.Output {
        guard let member = self.member else {
            return try TestProcess.run(
                "etcdctl", ["--endpoints=\(self.upstreamEndpoint)", "--command-timeout=15s"] + arguments,
                environment: ["ETCDCTL_API": "3"], timeoutSeconds: 40)
        }
        return try member.etcdctl(
            arguments, caFile: self.authority.certificateFile, client: self.gatewayCertificate)
    }

    /// The body of a GET on the gateway's metrics listener (`/metrics`, `/readyz`, …).
    func metrics(_ path: String = "/metrics") throws -> String {
        try TestProcess.run(
            "curl", ["-s", "http://127.0.0.1:\(self.metricsPort)\(path)"], timeoutSeconds: 10
        ).stdout
    }

    /// The value of one series line (`name{labels}`) in `/metrics`, 0 when absent.
    func metric(_ series: String) throws -> Double {
        let line = try self.metrics().split(separator: "\n").first { $0.hasPrefix(series + " ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }

    /// Sends SIGHUP: the gateway re-reads its tenants file and certificates.
    func reload() {
        kill(self.process.process.processIdentifier, SIGHUP)
    }

    deinit {
        self.process.stop()
        self.etcd?.stop()
        if let directory = self.etcdDirectory { try? FileManager.default.removeItem(at: directory) }
    }
}

extension GatewayProcess: EtcdctlTarget {
    var connectionFlags: [String] {
        [
            "--endpoints=\(self.endpoint)", "--cacert=\(self.authority.certificateFile)",
            "--cert=\(self.alice.certificateFile)", "--key=\(self.alice.keyFile)",
        ]
    }

    var logs: String {
        "gateway log:\n\(self.process.log)\nupstream log:\n\(self.member?.process.log ?? self.etcd?.log ?? "")"
    }

    func etcdctl(_ arguments: [String], input: String?) throws -> TestProcess.Output {
        try self.etcdctl(arguments, as: self.alice, input: input)
    }
}
