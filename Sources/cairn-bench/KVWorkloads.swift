import ArgumentParser
import CairnAPI
import CairnClient
import Foundation

/// Runs a closed-loop workload and gathers its result: the common part of
/// the put, range, txn and lease commands.
enum ClosedLoop {
    /// - Parameters:
    ///   - operations: names of the categories `operation` reports, in order
    ///     (one report each).
    static func run(
        workload: String, options: ConnectionOptions, total: Int, rate: Int, operations: [String],
        category: @escaping @Sendable (Int) -> Int = { _ in 0 },
        operation: @escaping @Sendable (LoadDriver.Request) async throws -> Void
    ) async throws -> RunResult {
        let monitor = try ServerMonitor(pids: options.pids)
        let driver = LoadDriver(
            clients: options.clients, total: total, rate: rate, progress: options.makeProgress(total: total))
        let (samples, elapsed) = await driver.run(
            categories: operations.count, category: category, operation: operation)
        let operationCount = samples.latencies.reduce(0) { $0 + $1.count }
        let server = try monitor.finish(operations: operationCount)
        let reports = operations.indices.map { index in
            LatencySummary(
                operation: operations[index], samples: samples.latencies[index],
                errors: samples.errors[index],
                totalSeconds: LoadDriver.seconds(elapsed))
        }
        return RunResult(
            workload: workload, endpoints: options.endpointList, conns: options.conns,
            clients: options.clients,
            reports: reports, server: server)
    }
}

/// `put`: etcd's put benchmark.
struct PutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put", abstract: "Benchmark put.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var keys: KeyOptions

    @Option(help: "Total number of put requests.")
    var total = 10_000

    @Option(help: "Maximum puts per second (0 is no limit).")
    var rate = 0

    func run() async throws {
        let client = try self.connection.makeClient()
        let keySpace = self.keys.keySpace
        let value = self.keys.value
        let result = try await ClosedLoop.run(
            workload: "put", options: self.connection, total: self.total, rate: self.rate, operations: ["put"]
        ) { request in
            try await client.put(key: keySpace.key(ticket: request.ticket), value: value)
        }
        await client.shutdown()
        try result.print(json: self.connection.json)
    }
}

/// `range`: etcd's range benchmark, linearizable or serializable.
struct RangeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "range", abstract: "Benchmark range.")

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The key to read.")
    var key: String

    @Argument(help: "Range end (empty: the key alone).")
    var end: String?

    @Option(help: "Total number of range requests.")
    var total = 10_000

    @Option(help: "Maximum range requests per second (0 is no limit).")
    var rate = 0

    @Option(help: "Linearizable(l) or Serializable(s).")
    var consistency = "l"

    func validate() throws {
        guard self.consistency == "l" || self.consistency == "s" else {
            throw ValidationError("--consistency must be l or s")
        }
    }

    func run() async throws {
        let client = try self.connection.makeClient()
        let serializable = self.consistency == "s"
        let end: KeyRangeEnd = self.end.map { .end(Data($0.utf8)) } ?? .single
        let key = self.key
        let result = try await ClosedLoop.run(
            workload: serializable ? "range-s" : "range-l", options: self.connection, total: self.total,
            rate: self.rate, operations: ["range"]
        ) { _ in
            _ = try await client.get(key, end: end, serializable: serializable)
        }
        await client.shutdown()
        let preamble = serializable ? "bench with serializable range" : "bench with linearizable range"
        try result.print(json: self.connection.json, preamble: [preamble])
    }
}

/// `txn-put`: transactions of `--txn-ops` puts and no comparison (etcd 3.4's).
struct TxnPutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "txn-put", abstract: "Benchmark txn-put.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var keys: KeyOptions

    @Option(help: "Total number of txn requests.")
    var total = 10_000

    @Option(help: "Maximum txns per second (0 is no limit).")
    var rate = 0

    @Option(help: "Number of puts per txn.")
    var txnOps = 1

    func validate() throws {
        guard self.txnOps > 0 else {
            throw ValidationError("expected positive --txn-ops, got (\(self.txnOps))")
        }
    }

    func run() async throws {
        let client = try self.connection.makeClient()
        let keySpace = self.keys.keySpace
        let value = self.keys.value
        let opsPerTxn = self.txnOps
        let result = try await ClosedLoop.run(
            workload: "txn-put", options: self.connection, total: self.total, rate: self.rate,
            operations: ["txn-put"]
        ) { request in
            let puts = (0..<opsPerTxn).map { index in
                let keyIndex = (request.ticket * opsPerTxn + index) % keySpace.keySpaceSize
                return TxnOperation.put(keySpace.key(index: keyIndex), value)
            }
            _ = try await client.txn(if: [], then: puts)
        }
        await client.shutdown()
        try result.print(json: self.connection.json)
    }
}

/// `txn-mixed`: transactions holding one range or one put, mixed by ratio.
struct TxnMixedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn-mixed", abstract: "Benchmark a mixed load of txn-put & txn-range.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var keys: KeyOptions

    @Option(help: "Total number of txn requests.")
    var total = 10_000

    @Option(help: "Maximum txns per second (0 is no limit).")
    var rate = 0

    @Option(help: "Read operation range result limit.")
    var limit: Int64 = 1_000

    @Option(help: "Linearizable(l) or Serializable(s).")
    var consistency = "l"

    @Option(help: "Read/write ops ratio.")
    var rwRatio = 1.0

    func validate() throws {
        guard self.consistency == "l" || self.consistency == "s" else {
            throw ValidationError("--consistency must be l or s")
        }
        guard self.rwRatio >= 0 else { throw ValidationError("--rw-ratio must not be negative") }
    }

    func run() async throws {
        let client = try self.connection.makeClient()
        let keySpace = self.keys.keySpace
        let value = self.keys.value
        var read = Etcdserverpb_RangeRequest()
        // etcd's OpGet("", WithRange(end), WithPrefix(), WithLimit(n)): the
        // prefix of the empty key wins over any end key, i.e. every key from
        // "\0" up to the limit (so this tool has no --end-key).
        read.key = Data([0])
        read.rangeEnd = Data([0])
        read.limit = self.limit
        read.serializable = self.consistency == "s"
        var readMessage = Etcdserverpb_RequestOp()
        readMessage.requestRange = read
        let readOperation = TxnOperation(readMessage)
        let readShare = self.rwRatio / (1 + self.rwRatio)
        let result = try await ClosedLoop.run(
            workload: "txn-mixed", options: self.connection, total: self.total, rate: self.rate,
            operations: ["Read", "Write"], category: { _ in Double.random(in: 0..<1) < readShare ? 0 : 1 },
            operation: { request in
                let operation =
                    request.category == 0
                    ? readOperation : .put(keySpace.key(index: request.ticket % keySpace.keySpaceSize), value)
                _ = try await client.txn(if: [], then: [operation])
            })
        await client.shutdown()
        let preamble = read.serializable ? "bench with serializable range" : "bench with linearizable range"
        try result.print(json: self.connection.json, preamble: [preamble])
    }
}
