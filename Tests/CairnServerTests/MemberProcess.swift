import CairnTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A real `cairn member` process on a fresh loopback port and a fresh data
/// directory, plus `etcdctl` (API v3) pointed at it.
final class MemberProcess: @unchecked Sendable {
    let port: Int
    let dataDirectory: URL
    private(set) var process: BackgroundProcess
    private let ownsDirectory: Bool

    /// The `cairn` executable: `CAIRN_BIN_DIR`, else beside the test bundle.
    static var binary: String {
        if let explicit = ProcessInfo.processInfo.environment["CAIRN_BIN_DIR"] {
            return explicit + "/cairn"
        }
        var candidate = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while candidate.path != "/" {
            candidate.deleteLastPathComponent()
            let path = candidate.appendingPathComponent("cairn").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return TestProcess.repositoryRoot.appendingPathComponent(".build/debug/cairn").path
    }

    init(dataDirectory: URL? = nil, extraArguments: [String] = []) throws {
        self.port = TestPorts.allocate()
        self.ownsDirectory = dataDirectory == nil
        self.dataDirectory =
            dataDirectory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent(
                "cairn-member-\(getpid())-\(self.port)-\(UInt32.random(in: 0...UInt32.max))")
        self.process = try Self.launch(
            port: self.port, dataDirectory: self.dataDirectory, extra: extraArguments)
        try TestPorts.waitUntilListening(self.port)
    }

    private static func launch(port: Int, dataDirectory: URL, extra: [String]) throws -> BackgroundProcess {
        try BackgroundProcess(
            Self.binary,
            [
                "member", "--data-dir", dataDirectory.path, "--listen-client-urls",
                "http://127.0.0.1:\(port)", "--threads", "2",
            ] + extra, name: "member")
    }

    /// Stops the process with `signal` and starts a new one on the same
    /// port and data directory.
    func restart(after signal: Int32) throws {
        self.process.stop(signal: signal)
        self.process = try Self.launch(port: self.port, dataDirectory: self.dataDirectory, extra: [])
        try TestPorts.waitUntilListening(self.port)
    }

    var endpoint: String { "127.0.0.1:\(self.port)" }

    func etcdctl(_ arguments: [String], input: String? = nil) throws -> TestProcess.Output {
        try TestProcess.run(
            "etcdctl",
            ["--endpoints=\(self.endpoint)", "--dial-timeout=5s", "--command-timeout=10s"] + arguments,
            environment: ["ETCDCTL_API": "3"], input: input.map { Data($0.utf8) }, timeoutSeconds: 20)
    }

    func etcdctl(_ arguments: String...) throws -> TestProcess.Output {
        try self.etcdctl(arguments)
    }

    /// etcdctl's stdout, requiring success.
    func run(_ arguments: String...) throws -> String {
        let output = try self.etcdctl(arguments)
        guard output.status == 0 else {
            throw TestFailure(
                "etcdctl \(arguments) failed: \(output.stderr)\nmember log:\n\(self.process.log)")
        }
        return output.stdout
    }

    deinit {
        self.process.stop()
        if self.ownsDirectory { try? FileManager.default.removeItem(at: self.dataDirectory) }
    }
}
