import ArgumentParser
import CairnClient
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Flags every load workload shares, named as etcd's `benchmark` tool names
/// them so that one command line drives either tool.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "gRPC endpoints, comma-separated (host:port or http(s)://host:port).")
    var endpoints = "127.0.0.1:2379"

    @Option(help: "gRPC connections to each endpoint (calls spread over them round-robin).")
    var conns = 1

    @Option(help: "Total number of gRPC clients (concurrent requests).")
    var clients = 1

    @Option(help: "Verify certificates of HTTPS-enabled servers using this CA bundle.")
    var cacert: String?

    @Option(help: "Identify HTTPS client using this SSL certificate file.")
    var cert: String?

    @Option(help: "Identify HTTPS client using this SSL key file.")
    var key: String?

    @Flag(help: "Print the results as one JSON object instead of etcd's text layout.")
    var json = false

    @Option(
        name: .customLong("pid"),
        help: "A server process to sample (CPU per operation, resident memory); repeat for each member.")
    var pids: [Int32] = []

    func validate() throws {
        guard self.conns >= 1 else { throw ValidationError("--conns must be at least 1") }
        guard self.clients >= 1 else { throw ValidationError("--clients must be at least 1") }
        guard self.endpointList.count >= 1 else { throw ValidationError("--endpoints is empty") }
    }

    var endpointList: [String] {
        self.endpoints.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty
        }
    }

    /// A client over `conns` connections to each endpoint (calls spread
    /// round-robin over them, as clientv3's balancer spreads them).
    func makeClient(connections: Int? = nil) throws -> EtcdClient {
        var configuration = EtcdClientConfiguration()
        configuration.connectionsPerEndpoint = connections ?? self.conns
        configuration.callTimeout = .seconds(30)
        if self.cacert != nil || self.cert != nil || self.key != nil {
            configuration.tls = EtcdClientTLS(
                trustedCAFile: self.cacert, certificateFile: self.cert, keyFile: self.key)
        }
        return try EtcdClient(endpoints: self.endpointList, configuration: configuration)
    }

    /// A progress bar on stdout when it is a terminal and the output is text.
    func makeProgress(total: Int) -> Progress? {
        self.json || isatty(STDOUT_FILENO) == 0 ? nil : Progress(total: total)
    }
}

/// Flags of the workloads that write keys (etcd's put family).
struct KeyOptions: ParsableArguments {
    @Option(help: "Key size of a request, in bytes.")
    var keySize = 8

    @Option(help: "Value size of a request, in bytes.")
    var valSize = 8

    @Option(help: "Maximum possible keys.")
    var keySpaceSize = 1

    @Flag(help: "Use sequential keys.")
    var sequentialKeys = false

    func validate() throws {
        guard self.keySpaceSize > 0 else {
            throw ValidationError("expected positive --key-space-size, got (\(self.keySpaceSize))")
        }
        guard self.keySize >= KeySpace.varintLength(of: Int64(self.keySpaceSize - 1)) else {
            throw ValidationError("--key-size \(self.keySize) cannot hold \(self.keySpaceSize) distinct keys")
        }
        guard self.valSize >= 0 else { throw ValidationError("--val-size must not be negative") }
    }

    var keySpace: KeySpace {
        KeySpace(keySize: self.keySize, keySpaceSize: self.keySpaceSize, sequential: self.sequentialKeys)
    }

    /// One random value used by every request of a run, as etcd's tool does.
    var value: Data { KeySpace.randomBytes(self.valSize) }
}

/// Keys as etcd's tool makes them: the key's index, zigzag-varint encoded at
/// the start of `keySize` zero bytes.
struct KeySpace: Sendable {
    let keySize: Int
    let keySpaceSize: Int
    let sequential: Bool

    /// The key of request number `ticket`.
    func key(ticket: Int) -> Data {
        let index = self.sequential ? ticket % self.keySpaceSize : Int.random(in: 0..<self.keySpaceSize)
        return self.key(index: index)
    }

    func key(index: Int) -> Data {
        var bytes = [UInt8](repeating: 0, count: self.keySize)
        var zigzag = UInt64(bitPattern: (Int64(index) << 1) ^ (Int64(index) >> 63))
        var position = 0
        while position < bytes.count {
            let low = UInt8(zigzag & 0x7F)
            zigzag >>= 7
            bytes[position] = zigzag == 0 ? low : low | 0x80
            position += 1
            if zigzag == 0 { break }
        }
        return Data(bytes)
    }

    /// Bytes of the zigzag varint of `value`.
    static func varintLength(of value: Int64) -> Int {
        var zigzag = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        var length = 1
        while zigzag >= 0x80 {
            zigzag >>= 7
            length += 1
        }
        return length
    }

    static func randomBytes(_ count: Int) -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }
}

/// The result of one workload run: what `--json` prints.
struct RunResult: Codable, Sendable {
    var workload: String
    var endpoints: [String]
    var conns: Int
    var clients: Int
    var reports: [LatencySummary]
    var server: ServerUsage?
    /// Figures particular to the workload (watch-fanout: watchers, setup time).
    var details: [String: Double] = [:]

    /// Prints the run as JSON or as etcd's text.
    func print(json: Bool, preamble: [String] = []) throws {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            Swift.print(String(decoding: try encoder.encode(self), as: UTF8.self))
            return
        }
        for line in preamble { Swift.print(line) }
        for report in self.reports {
            if self.reports.count > 1 {
                Swift.print(
                    "Total \(report.operation) Ops: \(report.count + report.errors.values.reduce(0, +))")
                Swift.print("Details:", terminator: "")
            }
            Swift.print(report.text)
        }
        for (name, value) in self.details.sorted(by: { $0.key < $1.key }) {
            let text = value == value.rounded() ? String(Int(value)) : String(format: "%.4f", value)
            Swift.print("  \(name):\t\(text)")
        }
        if let server { Swift.print(server.text) }
    }
}
