import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// Real processes for integration tests: Cairn's own executables, etcd,
/// etcdctl, python3, h2load. Every test talks only to 127.0.0.1.
public enum TestProcess {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// The directory holding the package's built executables: `CAIRN_BIN_DIR`
    /// if set, else the directory of the running test bundle (SwiftPM puts
    /// executables beside it).
    public static var binDirectory: URL {
        if let explicit = ProcessInfo.processInfo.environment["CAIRN_BIN_DIR"] {
            return URL(fileURLWithPath: explicit)
        }
        var candidate = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while candidate.path != "/" {
            candidate.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("cairn-bench").path) {
                return candidate
            }
        }
        return repositoryRoot.appendingPathComponent(".build/debug")
    }

    /// The repository root, found from this source file's location.
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Finds a program on PATH (or an absolute path); `nil` if absent.
    public static func which(_ program: String) -> String? {
        if program.hasPrefix("/") {
            return FileManager.default.isExecutableFile(atPath: program) ? program : nil
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let full = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: full) { return full }
        }
        return nil
    }

    /// Runs a program to completion, with a bound on its running time.
    public static func run(
        _ program: String, _ arguments: [String], environment: [String: String] = [:], input: Data? = nil,
        timeoutSeconds: Double = 60
    ) throws -> Output {
        guard let executable = which(program) else {
            throw TestFailure("\(program) is not installed; run .ci/run or apt-get install it")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let stdout = Pipe()
        let stderr = Pipe()
        let stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(input) }
        try? stdin.fileHandleForWriting.close()
        let outData = NIOLockedValueBox(Data())
        let errData = NIOLockedValueBox(Data())
        let group = DispatchGroup()
        for (pipe, box) in [(stdout, outData), (stderr, errData)] {
            group.enter()
            DispatchQueue.global().async {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                box.withLockedValue { $0 = data }
                group.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            group.wait()
            throw TestFailure("\(program) \(arguments.joined(separator: " ")) ran over \(timeoutSeconds)s")
        }
        process.waitUntilExit()
        group.wait()
        return Output(
            status: process.terminationStatus,
            stdout: String(decoding: outData.withLockedValue { $0 }, as: UTF8.self),
            stderr: String(decoding: errData.withLockedValue { $0 }, as: UTF8.self))
    }
}

/// A failure raised by test support code, with a message that says what to do.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// A server process kept running for a test, killed when the test is done.
public final class BackgroundProcess: @unchecked Sendable {
    public let process: Process
    public let logURL: URL

    /// Starts `program`, sending its output to a log file (shown on failure).
    public init(_ program: String, _ arguments: [String], name: String) throws {
        guard let executable = TestProcess.which(program) else {
            throw TestFailure("\(program) is not installed; run .ci/run or apt-get install it")
        }
        self.logURL = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cairn-test-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log")
        _ = FileManager.default.createFile(atPath: self.logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: self.logURL)
        self.process = Process()
        self.process.executableURL = URL(fileURLWithPath: executable)
        self.process.arguments = arguments
        self.process.standardOutput = log
        self.process.standardError = log
        try self.process.run()
    }

    public var log: String {
        (try? String(contentsOf: self.logURL, encoding: .utf8)) ?? ""
    }

    /// Sends `signal` and waits for the process to exit.
    public func stop(signal: Int32 = SIGKILL) {
        if self.process.isRunning {
            kill(self.process.processIdentifier, signal)
            self.process.waitUntilExit()
        }
    }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(at: self.logURL)
    }
}

/// Hands out loopback ports below 32768 (the kernel's ephemeral range starts
/// there), spread by process ID so concurrent test runs rarely collide, and
/// checked free by binding them.
public enum TestPorts {
    private static let next = NIOLockedValueBox(20_000 + Int(getpid() % 400) * 30)

    public static func allocate() -> Int {
        while true {
            let port = self.next.withLockedValue { value in
                defer { value = value >= 32_000 ? 20_000 : value + 1 }
                return value
            }
            if isFree(port) { return port }
        }
    }

    static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return result == 0
    }

    /// Waits until something accepts TCP connections on `port`.
    public static func waitUntilListening(_ port: Int, timeoutSeconds: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            close(fd)
            if result == 0 { return }
            usleep(20_000)
        }
        throw TestFailure("nothing listens on 127.0.0.1:\(port) after \(timeoutSeconds)s")
    }
}

/// A real single-member etcd 3.4 (Debian `etcd-server`) on loopback, for tests
/// that compare Cairn with etcd or run Cairn's clients against it.
public enum EtcdProcess {
    /// Starts etcd on `clientPort`/`peerPort` with `dataDirectory` and waits
    /// until it accepts connections (it may not have elected itself yet).
    public static func start(clientPort: Int, peerPort: Int, dataDirectory: URL, name: String = "etcd") throws
        -> BackgroundProcess
    {
        let process = try BackgroundProcess(
            "etcd",
            [
                "--name", "test", "--data-dir", dataDirectory.path,
                "--listen-client-urls", "http://127.0.0.1:\(clientPort)",
                "--advertise-client-urls", "http://127.0.0.1:\(clientPort)",
                "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
                "--initial-cluster", "test=http://127.0.0.1:\(peerPort)",
            ], name: name)
        try TestPorts.waitUntilListening(clientPort)
        return process
    }
}
