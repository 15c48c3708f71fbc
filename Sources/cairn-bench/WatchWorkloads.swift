import ArgumentParser
import CairnClient
import Foundation
import Synchronization

/// One event at a time, delivered to many watchers: the rounds of
/// watch-latency and watch-fanout.
///
/// Each round starts just before its put is sent and ends when every
/// watcher has seen one event. Rounds do not overlap, so a watcher's next
/// event always belongs to the current round (as in etcd's watch-latency).
///
/// Properties:
/// 1. `remaining` is the number of watchers that have not yet seen the
///    current round's event; the round's waiter is resumed exactly once,
///    when it reaches 0 or the round is abandoned.
/// 2. Latencies of a round are appended only while that round is open.
final class RoundTracker: Sendable {
    struct State {
        var start = ContinuousClock.now
        var remaining = 0
        var open = false
        var latencies: [UInt64] = []
        var lastDelivery = ContinuousClock.now
        var waiter: CheckedContinuation<Bool, Never>?
    }

    let watchers: Int
    private let state = Mutex(State())

    init(watchers: Int) {
        self.watchers = watchers
    }

    /// Opens a round that starts now.
    func open() {
        self.state.withLock { state in
            state.start = .now
            state.remaining = self.watchers
            state.open = true
        }
    }

    /// A watcher saw the round's event (`events` of them in one response).
    func delivered(events: Int) {
        guard events > 0 else { return }
        let now = ContinuousClock.now
        let waiter = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard state.open else { return nil }
            state.latencies.append(LoadDriver.nanoseconds(now - state.start))
            state.lastDelivery = now
            state.remaining -= 1
            guard state.remaining == 0 else { return nil }
            state.open = false
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: true)
    }

    /// Waits until the round completes (`true`) or is abandoned (`false`).
    /// - Returns: also the time from the round's start to its last delivery.
    func wait() async -> (Bool, Duration) {
        let complete = await withCheckedContinuation { continuation in
            let alreadyDone = self.state.withLock { state -> Bool in
                guard state.open else { return true }
                state.waiter = continuation
                return false
            }
            if alreadyDone { continuation.resume(returning: true) }
        }
        let spread = self.state.withLock { $0.lastDelivery - $0.start }
        return (complete, spread)
    }

    /// Gives up on the round (a watcher missed its event).
    func abandon() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard state.open else { return nil }
            state.open = false
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: false)
    }

    var latencies: [UInt64] { self.state.withLock { $0.latencies } }
}

/// The shared run of watch-latency and watch-fanout.
enum WatchRounds {
    /// Watches created at once while setting up.
    static let creationsInFlightMax = 256
    /// How long a round may wait for its last delivery.
    static let roundTimeout = Duration.seconds(10)

    struct Setup {
        var workload: String
        var watchers: Int
        var rounds: Int
        var putRate: Int
        var key: Data
        var value: Data
        /// Report the round's delivery to all watchers as its own summary.
        var reportFanout: Bool
    }

    static func run(_ setup: Setup, options: ConnectionOptions) async throws -> RunResult {
        var monitor = try ServerMonitor(pids: options.pids)
        let watchClient = try options.makeClient()
        let putClient = try options.makeClient(connections: 1)
        let clock = ContinuousClock()
        let setupStart = clock.now
        let streams = try await Self.createWatches(setup, client: watchClient)
        // Connect the put client before the first round (a read makes no event).
        _ = try await putClient.get(setup.key, serializable: true)
        let setupSeconds = LoadDriver.seconds(clock.now - setupStart)
        try monitor.sampleLoaded()

        let tracker = RoundTracker(watchers: setup.watchers)
        var fanout: [UInt64] = []
        var errors: [String: Int] = [:]
        let progress = options.makeProgress(total: setup.rounds)
        let progressTask = progress.map { progress in Task { await progress.run() } }
        let runStart = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for stream in streams {
                group.addTask {
                    for try await response in stream { tracker.delivered(events: response.events.count) }
                }
            }
            for round in 0..<setup.rounds {
                if setup.putRate > 0 {
                    let due = runStart + .seconds(Double(round) / Double(setup.putRate))
                    if due > clock.now { try await Task.sleep(until: due, clock: clock) }
                }
                tracker.open()
                let timer = Task {
                    try await Task.sleep(for: Self.roundTimeout)
                    tracker.abandon()
                }
                do {
                    try await putClient.put(key: setup.key, value: setup.value)
                } catch {
                    errors[String(describing: error), default: 0] += 1
                    tracker.abandon()
                }
                let (complete, spread) = await tracker.wait()
                timer.cancel()
                if complete {
                    fanout.append(LoadDriver.nanoseconds(spread))
                } else {
                    errors["round timed out before every watcher saw its event", default: 0] += 1
                }
                progress?.increment()
            }
            group.cancelAll()
        }
        let elapsed = LoadDriver.seconds(clock.now - runStart)
        progressTask?.cancel()
        await progressTask?.value
        let latencies = tracker.latencies
        let server = try monitor.finish(operations: latencies.count)
        await watchClient.shutdown()
        await putClient.shutdown()

        var reports = [
            LatencySummary(operation: "watch", samples: latencies, errors: errors, totalSeconds: elapsed)
        ]
        if setup.reportFanout {
            reports.insert(
                LatencySummary(operation: "fanout", samples: fanout, errors: errors, totalSeconds: elapsed),
                at: 0)
        }
        var result = RunResult(
            workload: setup.workload, endpoints: options.endpointList, conns: options.conns,
            clients: setup.watchers, reports: reports, server: server)
        result.details = ["watchers": Double(setup.watchers), "watchSetupSeconds": setupSeconds]
        return result
    }

    /// Creates `setup.watchers` watches of the key, at most
    /// `creationsInFlightMax` at a time.
    static func createWatches(_ setup: Setup, client: EtcdClient) async throws -> [CairnClient.WatchStream] {
        let key = setup.key
        return try await withThrowingTaskGroup(of: CairnClient.WatchStream.self) { group in
            var streams: [CairnClient.WatchStream] = []
            streams.reserveCapacity(setup.watchers)
            var started = 0
            while started < Swift.min(Self.creationsInFlightMax, setup.watchers) {
                group.addTask { try await client.watch(key) }
                started += 1
            }
            while let stream = try await group.next() {
                streams.append(stream)
                if started < setup.watchers {
                    group.addTask { try await client.watch(key) }
                    started += 1
                }
            }
            return streams
        }
    }
}

/// `watch-latency`: put-to-event delay over `--clients` watchers of one key.
///
/// Unlike etcd's tool, which starts the clock when the put has been
/// answered, the clock starts when the put is sent: the figure is what a
/// watcher waits for a write, commit included.
struct WatchLatencyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch-latency",
        abstract: "Benchmark watch latency: from sending a put to each watcher receiving its event.")

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Total number of put requests.")
    var total = 10_000

    @Option(help: "Number of keys to put per second.")
    var putRate = 100

    @Option(help: "Key size of watch response.")
    var keySize = 32

    @Option(help: "Value size of watch response.")
    var valSize = 32

    func run() async throws {
        let setup = WatchRounds.Setup(
            workload: "watch-latency", watchers: self.connection.clients, rounds: self.total,
            putRate: self.putRate, key: KeySpace.randomBytes(self.keySize),
            value: KeySpace.randomBytes(self.valSize),
            reportFanout: false)
        try await WatchRounds.run(setup, options: self.connection).print(json: self.connection.json)
    }
}

/// `watch-fanout`: many watchers of one key; the time for one event to
/// reach all of them, and the server's memory with them in place.
struct WatchFanoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch-fanout",
        abstract: "Benchmark watch fan-out: delivery of one event to N watchers of one key.",
        discussion: """
            Watchers share --conns connections (one watch stream each). Reports the time from sending \
            a put until every watcher has its event ("fanout", one sample per put) and each watcher's \
            delay ("watch"). With --pid, the server's resident memory with every watcher in place, and \
            its CPU per delivered event.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Number of watchers of the key.")
    var watchers = 1_000

    @Option(help: "Number of puts (one event each).")
    var total = 20

    @Option(help: "Puts per second (0: each put right after the previous event reached everyone).")
    var putRate = 0

    @Option(help: "Key size.")
    var keySize = 32

    @Option(help: "Value size.")
    var valSize = 32

    func validate() throws {
        guard self.watchers >= 1 else { throw ValidationError("--watchers must be at least 1") }
    }

    func run() async throws {
        let setup = WatchRounds.Setup(
            workload: "watch-fanout", watchers: self.watchers, rounds: self.total, putRate: self.putRate,
            key: KeySpace.randomBytes(self.keySize), value: KeySpace.randomBytes(self.valSize),
            reportFanout: true)
        try await WatchRounds.run(setup, options: self.connection).print(json: self.connection.json)
    }
}
