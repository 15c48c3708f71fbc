import Foundation
import Synchronization

/// A progress bar on a terminal: redrawn at most every `redrawInterval`.
final class Progress: Sendable {
    static let redrawInterval = Duration.milliseconds(200)
    static let barWidth = 50

    let total: Int
    private let completed = Atomic<Int>(0)

    init(total: Int) {
        self.total = total
    }

    func increment() {
        _ = self.completed.wrappingAdd(1, ordering: .relaxed)
    }

    /// Redraws until the task is cancelled, then draws the final state.
    func run() async {
        while !Task.isCancelled {
            self.draw()
            try? await Task.sleep(for: Self.redrawInterval)
        }
        self.draw()
        Self.write("\n")
    }

    private static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    private func draw() {
        let done = Swift.min(self.completed.load(ordering: .relaxed), self.total)
        let filled = self.total > 0 ? done * Self.barWidth / self.total : Self.barWidth
        let bar =
            String(repeating: "=", count: filled) + String(repeating: " ", count: Self.barWidth - filled)
        let percent = self.total > 0 ? done * 100 / self.total : 100
        Self.write("\r\(done) / \(self.total) [\(bar)] \(percent)%")
    }
}

/// Runs a closed loop of `total` operations from `clients` concurrent tasks,
/// like etcd's tool: each task takes the next ticket and runs it, so at most
/// `clients` operations are in flight. With `rate` > 0 ticket `i` does not
/// start before `i / rate` seconds into the run (a global pace, burst 1).
///
/// Latencies are kept per task in plain arrays and merged at the end, so
/// recording costs no lock and no shared cache line per operation; memory is
/// 8 bytes per operation, bounded by `total`.
struct LoadDriver: Sendable {
    /// What one task gathered.
    struct Samples: Sendable {
        /// Latencies in nanoseconds, per category.
        var latencies: [[UInt64]]
        /// Error messages and their counts, per category.
        var errors: [[String: Int]]

        init(categories: Int) {
            self.latencies = Array(repeating: [], count: categories)
            self.errors = Array(repeating: [:], count: categories)
        }

        mutating func merge(_ other: Samples) {
            for category in self.latencies.indices {
                self.latencies[category] += other.latencies[category]
                self.errors[category].merge(other.errors[category], uniquingKeysWith: +)
            }
        }
    }

    /// One operation to perform.
    struct Request: Sendable {
        /// Its number, from 0 to `total - 1`.
        var ticket: Int
        /// Its category, as `category(ticket)` chose.
        var category: Int
        /// The driver task performing it, from 0 to `clients - 1`.
        var client: Int
    }

    let clients: Int
    let total: Int
    let rate: Int
    let progress: Progress?

    /// Runs the load; `operation` performs one request, whose category
    /// (e.g. read or write of txn-mixed, from 0 to `categories - 1`) is
    /// `category(ticket)`. A thrown error counts against that category.
    /// - Returns: every sample and the wall time of the whole run.
    func run(
        categories: Int = 1, category: @escaping @Sendable (Int) -> Int = { _ in 0 },
        operation: @escaping @Sendable (Request) async throws -> Void
    ) async -> (Samples, Duration) {
        let tickets = TicketDispenser()
        let clock = ContinuousClock()
        let start = clock.now
        let progressTask = self.progress.map { progress in Task { await progress.run() } }
        let samples = await withTaskGroup(of: Samples.self) { group in
            for client in 0..<self.clients {
                group.addTask {
                    var local = Samples(categories: categories)
                    while true {
                        let ticket = tickets.next()
                        guard ticket < self.total else { break }
                        if self.rate > 0 {
                            let due = start + .seconds(Double(ticket) / Double(self.rate))
                            if due > clock.now { try? await Task.sleep(until: due, clock: clock) }
                        }
                        let kind = category(ticket)
                        let began = clock.now
                        do {
                            try await operation(Request(ticket: ticket, category: kind, client: client))
                            local.latencies[kind].append(Self.nanoseconds(clock.now - began))
                        } catch {
                            local.errors[kind][String(describing: error), default: 0] += 1
                        }
                        self.progress?.increment()
                    }
                    return local
                }
            }
            var all = Samples(categories: categories)
            for await local in group { all.merge(local) }
            return all
        }
        let elapsed = clock.now - start
        progressTask?.cancel()
        await progressTask?.value
        return (samples, elapsed)
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Hands out request numbers 0, 1, 2… to the driver's tasks.
final class TicketDispenser: Sendable {
    private let counter = Atomic<Int>(0)

    func next() -> Int {
        self.counter.wrappingAdd(1, ordering: .relaxed).oldValue
    }
}
