import ArgumentParser
import CairnCore
import CairnMVCC

/// `cairn-bench mvcc`: the key space alone (no RPC, no log, no disk), one
/// thread: puts of new keys, overwrites, single-key ranges and prefix
/// ranges, in operations per second. Keys come from a seeded generator, so
/// every run does the same work. Not a test: run it on a quiet machine, in
/// release, and compare medians.
struct MVCCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mvcc",
        abstract: "Measure MVCC put and range operations per second (in memory, one thread)."
    )

    @Option(help: "Distinct keys put per round.")
    var keys = 100_000

    @Option(help: "Bytes per value.")
    var valueBytes = 256

    @Option(help: "Rounds, each on a fresh store; the median is printed last.")
    var rounds = 3

    @Option(help: "Seed of the key generator.")
    var seed: UInt64 = 42

    func validate() throws {
        guard self.keys > 0, self.valueBytes >= 0, self.rounds > 0 else {
            throw ValidationError("--keys and --rounds must be positive, --value-bytes not negative")
        }
    }

    func run() throws {
        var results: [String: [Double]] = [:]
        var order: [String] = []
        for round in 1...self.rounds {
            for (name, rate) in try self.round() {
                if results[name] == nil { order.append(name) }
                results[name, default: []].append(rate)
                print("round \(round) \(name): \(Int(rate)) ops/s")
            }
        }
        print("medians over \(self.rounds) rounds (\(self.keys) keys, \(self.valueBytes)-byte values):")
        for name in order {
            let sorted = results[name, default: []].sorted()
            print("  \(name): \(Int(sorted[sorted.count / 2])) ops/s")
        }
    }

    /// One round on a fresh store: each workload's operations per second.
    private func round() throws -> [(String, Double)] {
        var generator = SplitMix64(seed: self.seed)
        let keys = (0..<self.keys).map { _ in Key("key-\(generator.next() % 1_000_000_000)") }
        let value = [UInt8](repeating: 0x61, count: self.valueBytes)
        let granted: (LeaseID) -> Bool = { _ in true }
        var store = MVCCStore()
        var rates: [(String, Double)] = []
        rates.append(
            (
                "put (new keys)",
                try Self.rate(keys.count) {
                    for key in keys {
                        _ = try store.put(PutRequest(key: key, value: value), isLeaseGranted: granted)
                    }
                }
            ))
        rates.append(
            (
                "put (overwrite)",
                try Self.rate(keys.count) {
                    for key in keys {
                        _ = try store.put(PutRequest(key: key, value: value), isLeaseGranted: granted)
                    }
                }
            ))
        rates.append(
            (
                "range (one key)",
                try Self.rate(keys.count) {
                    for key in keys { _ = try store.range(RangeRequest(key: key)) }
                }
            ))
        let prefixes = keys.prefix(max(1, keys.count / 10)).map { Key(Array($0.bytes.prefix(6))) }
        rates.append(
            (
                "range (prefix, limit 10)",
                try Self.rate(prefixes.count) {
                    for prefix in prefixes {
                        _ = try store.range(
                            RangeRequest(key: prefix, rangeEnd: KeyRange.prefixEnd(of: prefix), limit: 10))
                    }
                }
            ))
        return rates
    }

    /// Runs `body` once and answers `operations` per second of its duration.
    private static func rate(_ operations: Int, _ body: () throws -> Void) rethrows -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try body()
        let elapsed = (clock.now - start).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        return Double(operations) / max(seconds, 1e-9)
    }
}

/// A small seeded generator (SplitMix64): the same keys on every run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { self.state = seed }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = self.state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
