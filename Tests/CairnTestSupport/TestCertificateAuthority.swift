import Foundation

/// A certificate and its private key, as PEM files.
public struct CertificatePair: Sendable, Hashable {
    public var certificateFile: String
    public var keyFile: String

    public init(certificateFile: String, keyFile: String) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

/// A test CA in a fresh temporary directory, minted by the repository's own
/// `certs/mint.sh` (so the tests exercise the script operators use). No key
/// is ever committed; the directory is removed when the value is released.
public final class TestCertificateAuthority: Sendable {
    public let directory: String

    /// `ca.pem`: the CA certificate, for `--trusted-ca-file` / `--cacert`.
    public var certificateFile: String { "\(self.directory)/ca.pem" }
    /// `ca.crl`: the CA's revocation list (empty until `revoke`).
    public var revocationListFile: String { "\(self.directory)/ca.crl" }

    public static var script: String {
        TestProcess.repositoryRoot.appendingPathComponent("certs/mint.sh").path
    }

    public init(commonName: String = "Cairn Test CA") throws {
        self.directory =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("cairn-certs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        try self.mint(["ca", commonName])
    }

    /// A member (server and client) certificate for localhost and 127.0.0.1
    /// (unless `loopback` is false) plus `sans`.
    public func member(_ name: String, sans: [String] = [], loopback: Bool = true) throws -> CertificatePair {
        try self.mint(
            ["member", name] + (loopback ? [] : ["--no-loopback"]) + sans.flatMap { ["--san", $0] })
        return self.pair(name)
    }

    /// A gateway certificate (server and client), for localhost and 127.0.0.1 plus `sans`.
    public func gateway(_ name: String, sans: [String] = []) throws -> CertificatePair {
        try self.mint(["gateway", name] + sans.flatMap { ["--san", $0] })
        return self.pair(name)
    }

    /// A client certificate whose CN is `name`, with optional SAN URIs.
    public func client(_ name: String, uris: [String] = []) throws -> CertificatePair {
        try self.mint(["client", name] + uris.flatMap { ["--uri", $0] })
        return self.pair(name)
    }

    /// A client certificate whose validity ended yesterday.
    public func expiredClient(_ name: String) throws -> CertificatePair {
        try self.mint(["client", name], expired: true)
        return self.pair(name)
    }

    /// Revokes `name`'s certificate and rewrites `revocationListFile`.
    public func revoke(_ name: String) throws {
        try self.mint(["revoke", name])
    }

    private func pair(_ name: String) -> CertificatePair {
        CertificatePair(
            certificateFile: "\(self.directory)/\(name).pem", keyFile: "\(self.directory)/\(name).key")
    }

    private func mint(_ arguments: [String], expired: Bool = false) throws {
        let output = try TestProcess.run(
            "bash",
            [Self.script, "-d", self.directory] + (expired ? ["--expired"] : ["--days", "2"]) + arguments)
        guard output.status == 0 else {
            throw TestFailure("certs/mint.sh \(arguments.joined(separator: " ")) failed: \(output.stderr)")
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}
