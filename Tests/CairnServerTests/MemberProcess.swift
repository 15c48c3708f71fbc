import CairnTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A real `cairn member` process on a fresh loopback port and a fresh data
/// directory, plus `etcdctl` (API v3) pointed at it.
final class MemberProcess: @unchecked Sendable {
    let name: String
    let port: Int
    let peerPort: Int
    let dataDirectory: URL
    private(set) var process: BackgroundProcess
    private let ownsDirectory: Bool
    /// Flags every start of this member passes (cluster flags included).
    private let baseArguments: [String]

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

    /// A single member alone in its cluster.
    convenience init(dataDirectory: URL? = nil, extraArguments: [String] = []) throws {
        try self.init(
            name: "default", port: TestPorts.allocate(), peerPort: TestPorts.allocate(),
            dataDirectory: dataDirectory, clusterArguments: [], extraArguments: extraArguments)
    }

    /// A member with the given ports; `clusterArguments` are its
    /// `--initial-cluster*` flags (empty: a cluster of its own).
    init(
        name: String, port: Int, peerPort: Int, dataDirectory: URL? = nil, clusterArguments: [String],
        extraArguments: [String] = [], waitUntilListening: Bool = true
    ) throws {
        self.name = name
        self.port = port
        self.peerPort = peerPort
        self.ownsDirectory = dataDirectory == nil
        self.dataDirectory =
            dataDirectory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent(
                "cairn-member-\(getpid())-\(port)-\(UInt32.random(in: 0...UInt32.max))")
        self.baseArguments =
            [
                "member", "--name", name, "--data-dir", self.dataDirectory.path, "--listen-client-urls",
                "http://127.0.0.1:\(port)", "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
                "--threads", "2",
            ] + clusterArguments
        self.process = try BackgroundProcess(Self.binary, self.baseArguments + extraArguments, name: name)
        if waitUntilListening { try TestPorts.waitUntilListening(self.port) }
    }

    var peerURL: String { "http://127.0.0.1:\(self.peerPort)" }

    /// Stops the process with `signal` and starts a new one on the same
    /// ports and data directory.
    func restart(after signal: Int32, extraArguments: [String] = []) throws {
        self.process.stop(signal: signal)
        try self.start(extraArguments: extraArguments)
    }

    /// Starts the member again after `stop` (same flags).
    func start(extraArguments: [String] = []) throws {
        self.process = try BackgroundProcess(
            Self.binary, self.baseArguments + extraArguments, name: self.name)
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
