import Foundation

/// Certificates minted with the `openssl` command in a fresh temporary
/// directory when the tests start; no key is ever committed.
struct CertificateFixture: Sendable {
    let directory: String
    let caCertificate: String
    let serverCertificate: String
    let serverKey: String
    let clientCertificate: String
    let clientKey: String
    let untrustedClientCertificate: String
    let untrustedClientKey: String
    /// A client certificate from the trusted CA, revoked in `revocationList`.
    let revokedClientCertificate: String
    let revokedClientKey: String
    let revocationList: String

    /// Minted once per test process; every test reads the same files.
    static let shared: CertificateFixture = {
        do {
            return try CertificateFixture()
        } catch {
            fatalError("cannot mint test certificates with the openssl command: \(error)")
        }
    }()

    private init() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("cairn-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.directory = directory
        func path(_ name: String) -> String { "\(directory)/\(name)" }
        try Self.mintCA(directory: directory, name: "ca", commonName: "Cairn Test CA")
        try Self.mintCA(directory: directory, name: "other-ca", commonName: "Untrusted Test CA")
        try Self.mintLeaf(
            directory: directory, name: "server", ca: "ca", commonName: "cairn-server",
            extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        )
        try Self.mintLeaf(
            directory: directory, name: "client", ca: "ca", commonName: "tenant-a-client",
            extensions: "subjectAltName=URI:spiffe://cairn/tenant-a\nextendedKeyUsage=clientAuth\n"
        )
        try Self.mintLeaf(
            directory: directory, name: "intruder", ca: "other-ca", commonName: "intruder",
            extensions: "subjectAltName=URI:spiffe://cairn/tenant-a\nextendedKeyUsage=clientAuth\n"
        )
        try Self.mintLeaf(
            directory: directory, name: "revoked", ca: "ca", commonName: "revoked-client",
            extensions: "extendedKeyUsage=clientAuth\n"
        )
        try Self.revoke(directory: directory, name: "revoked", ca: "ca")
        caCertificate = path("ca.pem")
        serverCertificate = path("server.pem")
        serverKey = path("server.key")
        clientCertificate = path("client.pem")
        clientKey = path("client.key")
        untrustedClientCertificate = path("intruder.pem")
        untrustedClientKey = path("intruder.key")
        revokedClientCertificate = path("revoked.pem")
        revokedClientKey = path("revoked.key")
        revocationList = path("ca.crl")
    }

    private static func mintCA(directory: String, name: String, commonName: String) throws {
        let config = """
            [req]
            distinguished_name = dn
            x509_extensions = v3_ca
            prompt = no
            [dn]
            CN = \(commonName)
            [v3_ca]
            basicConstraints = critical, CA:TRUE
            keyUsage = critical, keyCertSign, cRLSign
            subjectKeyIdentifier = hash

            """
        try config.write(toFile: "\(directory)/\(name).cnf", atomically: true, encoding: .utf8)
        try openssl(
            in: directory,
            "req", "-x509", "-config", "\(name).cnf", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "\(name).key", "-out", "\(name).pem", "-days", "2"
        )
    }

    private static func mintLeaf(
        directory: String,
        name: String,
        ca: String,
        commonName: String,
        extensions: String
    ) throws {
        let config = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = \(commonName)\n"
        try config.write(toFile: "\(directory)/\(name).cnf", atomically: true, encoding: .utf8)
        let allExtensions = extensions + "basicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid\n"
        try allExtensions.write(toFile: "\(directory)/\(name).ext", atomically: true, encoding: .utf8)
        try openssl(
            in: directory,
            "req", "-new", "-config", "\(name).cnf", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "\(name).key", "-out", "\(name).csr"
        )
        try openssl(
            in: directory,
            "x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key",
            "-CAcreateserial",
            "-days", "2", "-out", "\(name).pem", "-extfile", "\(name).ext"
        )
    }

    /// Revokes `name` and writes the CA's CRL to `<ca>.crl`.
    private static func revoke(directory: String, name: String, ca: String) throws {
        let config = """
            [ca]
            default_ca = test_ca
            [test_ca]
            database = \(ca)-index.txt
            crlnumber = \(ca)-crlnumber
            default_md = sha256
            default_crl_days = 2

            """
        try config.write(toFile: "\(directory)/\(ca)-db.cnf", atomically: true, encoding: .utf8)
        try "".write(toFile: "\(directory)/\(ca)-index.txt", atomically: true, encoding: .utf8)
        try "01\n".write(toFile: "\(directory)/\(ca)-crlnumber", atomically: true, encoding: .utf8)
        let signer = ["-config", "\(ca)-db.cnf", "-keyfile", "\(ca).key", "-cert", "\(ca).pem"]
        try openssl(in: directory, arguments: ["ca"] + signer + ["-revoke", "\(name).pem"])
        try openssl(in: directory, arguments: ["ca"] + signer + ["-gencrl", "-out", "\(ca).crl"])
    }

    struct OpenSSLCommandFailed: Error {
        var arguments: [String]
        var status: Int32
        var output: String
    }

    private static func openssl(in directory: String, _ arguments: String...) throws {
        try openssl(in: directory, arguments: arguments)
    }

    private static func openssl(in directory: String, arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw OpenSSLCommandFailed(
                arguments: arguments,
                status: process.terminationStatus,
                output: String(decoding: output, as: UTF8.self)
            )
        }
    }
}
