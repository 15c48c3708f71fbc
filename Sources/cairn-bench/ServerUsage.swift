import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// CPU time and resident memory of one server process, read from `/proc`.
///
/// Throughput alone hides how much of the machine a server burns to reach
/// it; CPU per operation is the figure that transfers to a busier machine.
/// Only Linux's `/proc` is read: the benchmark runs where the servers run.
struct ProcessSample: Sendable {
    /// User plus system CPU time of every thread, in seconds.
    var cpuSeconds: Double
    /// Resident set size (`VmRSS`), in KiB.
    var residentKiB: Int

    /// Reads process `pid`; an error names the file when the process is gone.
    static func read(pid: Int32) throws -> ProcessSample {
        let stat = try Self.contents(of: "/proc/\(pid)/stat")
        let status = try Self.contents(of: "/proc/\(pid)/status")
        guard let cpuTicks = Self.cpuTicks(stat: stat), let resident = Self.residentKiB(status: status) else {
            throw BenchError("cannot parse /proc/\(pid)/stat or /proc/\(pid)/status")
        }
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ProcessSample(cpuSeconds: Double(cpuTicks) / ticksPerSecond, residentKiB: resident)
    }

    /// A `/proc` file, read to its end (they report a size of 0).
    static func contents(of path: String) throws -> String {
        let descriptor = Glibc.open(path, O_RDONLY)
        guard descriptor >= 0 else { throw BenchError("cannot open \(path): errno \(errno)") }
        defer { Glibc.close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The
    /// command name (field 2) may hold spaces and parentheses, so fields are
    /// counted from the last `)`.
    static func cpuTicks(stat: String) -> UInt64? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else {
            return nil
        }
        return user + system
    }

    /// The `VmRSS:` line of `/proc/PID/status`, in KiB.
    static func residentKiB(status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap {
                Int($0)
            }
        }
        return nil
    }
}

/// What the servers named by `--pid` spent during a run.
struct ServerUsage: Codable, Sendable {
    /// One server process.
    struct Process: Codable, Sendable {
        var pid: Int32
        var cpuSeconds: Double
        /// CPU time per operation of the run, in microseconds.
        var cpuMicrosecondsPerOperation: Double
        var residentKiBBefore: Int
        var residentKiBAfter: Int
        /// Resident memory at the workload's chosen moment (watch-fanout:
        /// with every watcher established), if it took one.
        var residentKiBLoaded: Int?
    }

    var processes: [Process]
    /// Over every process (the whole cluster when every member's pid is given).
    var cpuMicrosecondsPerOperationSum: Double {
        self.processes.reduce(0) { $0 + $1.cpuMicrosecondsPerOperation }
    }

    var text: String {
        var text = "\nServer usage:\n"
        for process in self.processes {
            text += "  pid \(process.pid):\tCPU \(String(format: "%.3f", process.cpuSeconds)) s, "
            text += "\(String(format: "%.1f", process.cpuMicrosecondsPerOperation)) µs/op; "
            text +=
                "RSS \(process.residentKiBBefore / 1024) MiB before, \(process.residentKiBAfter / 1024) MiB after"
            if let loaded = process.residentKiBLoaded { text += ", \(loaded / 1024) MiB loaded" }
            text += "\n"
        }
        if self.processes.count > 1 {
            text += "  all:\t\(String(format: "%.1f", self.cpuMicrosecondsPerOperationSum)) µs/op\n"
        }
        return text
    }
}

/// Samples the `--pid` processes before, during and after a run.
struct ServerMonitor: Sendable {
    let pids: [Int32]
    let before: [ProcessSample]
    var loaded: [ProcessSample]?

    /// Takes the "before" samples (none when no pid was given).
    init(pids: [Int32]) throws {
        self.pids = pids
        self.before = try pids.map { try ProcessSample.read(pid: $0) }
    }

    /// Records resident memory at the moment the workload cares about; CPU
    /// is then counted from this moment (watch-fanout: setting up the
    /// watchers is not part of the per-event figure).
    mutating func sampleLoaded() throws {
        self.loaded = try self.pids.map { try ProcessSample.read(pid: $0) }
    }

    /// The usage since `init`, spread over `operations`; `nil` without pids.
    func finish(operations: Int) throws -> ServerUsage? {
        guard !self.pids.isEmpty else { return nil }
        let after = try self.pids.map { try ProcessSample.read(pid: $0) }
        let processes = self.pids.indices.map { index in
            let baseline = self.loaded?[index] ?? self.before[index]
            let cpu = after[index].cpuSeconds - baseline.cpuSeconds
            return ServerUsage.Process(
                pid: self.pids[index], cpuSeconds: cpu,
                cpuMicrosecondsPerOperation: operations > 0 ? cpu * 1e6 / Double(operations) : 0,
                residentKiBBefore: self.before[index].residentKiB, residentKiBAfter: after[index].residentKiB,
                residentKiBLoaded: self.loaded?[index].residentKiB)
        }
        return ServerUsage(processes: processes)
    }
}

/// A usage error of the benchmark, printed as is.
struct BenchError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}
