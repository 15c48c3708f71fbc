import CairnAPI
import CairnClient
import CairnRPC
import CairnSim
import CairnTestSupport
import Foundation
import NIOConcurrencyHelpers
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Jepsen-style: clients read, write and compare-and-swap a few keys
/// through different members while members are killed, paused and
/// restarted; the recorded history must be linearizable and every
/// watcher's events ordered, unique and gap-free against the final history.
@Suite(.serialized) struct HistoryTests {
    static let keys = ["k0", "k1", "k2", "k3", "k4"]

    /// Operations recorded by every client, shared across tasks.
    final class Recorder: Sendable {
        private let operations = NIOLockedValueBox<[KeyValueOperation]>([])
        let start = DispatchTime.now().uptimeNanoseconds
        var now: Int64 { Int64(DispatchTime.now().uptimeNanoseconds - self.start) }
        func record(_ operation: KeyValueOperation) {
            self.operations.withLockedValue { $0.append(operation) }
        }
        var all: [KeyValueOperation] { self.operations.withLockedValue { $0 } }
    }

    @Test func historyUnderKillsAndPausesIsLinearizableAndWatchesAreGapFree() async throws {
        let cluster = try ClusterProcess(size: 3)
        _ = try cluster.waitForLeader()
        let recorder = Recorder()
        var configuration = EtcdClientConfiguration()
        configuration.callTimeout = .seconds(3)
        let clients = try cluster.members.map { member in
            try EtcdClient(endpoints: [member.endpoint], configuration: configuration)
        }
        let watchers = try cluster.members.map { member in
            try EtcdClient(endpoints: [member.endpoint], configuration: EtcdClientConfiguration())
        }
        let stop = NIOLockedValueBox(false)
        // The nemesis blocks (signals, sleeps, restarts): its own thread,
        // never a thread of the concurrency pool.
        let nemesisDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            Self.nemesis(cluster, stop: stop)
            nemesisDone.signal()
        }
        let received = NIOLockedValueBox<[Int: [WatchedEvent]]>([:])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, watcher) in watchers.enumerated() {
                group.addTask {
                    let stream = try await watcher.watch("k", end: .prefix, startRevision: 1)
                    do {
                        for try await response in stream {
                            let events = response.events.map(Self.watched)
                            received.withLockedValue { $0[index, default: []] += events }
                            if stop.withLockedValue({ $0 }) { break }
                        }
                    } catch {
                        // A watch may end when its member dies for good; what it got is checked.
                    }
                }
            }
            for client in 0..<4 {
                group.addTask {
                    try await Self.runClient(
                        client, etcd: clients[client % clients.count], recorder: recorder, stop: stop)
                }
            }
            try await Task.sleep(for: .seconds(12))
            stop.withLockedValue { $0 = true }
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    nemesisDone.wait()
                    continuation.resume()
                }
            }
            // Watchers end on their next event: make one.
            try await Task.sleep(for: .seconds(3))
            let closer = try EtcdClient(endpoints: cluster.members.map(\.endpoint))
            _ = try? await closer.put(key: "k-end", value: "end")
            try await Task.sleep(for: .seconds(2))
            await closer.shutdown()
            for watcher in watchers { await watcher.shutdown() }
            try await group.waitForAll()
        }
        for client in clients { await client.shutdown() }
        let history = recorder.all
        let answered = history.filter { $0.output != nil }.count
        #expect(
            answered > 100, "too few operations completed: \(answered) of \(history.count)\n\(cluster.logs)")
        let watchedCount = received.withLockedValue { $0.values.map(\.count) }
        print(
            "history: \(answered) answered, \(history.count - answered) indeterminate operations; watchers got \(watchedCount) events"
        )
        let verdict = LinearizabilityChecker(searchStepsMax: 20_000_000).check(history)
        #expect(
            verdict == .linearizable,
            "\(verdict): \(answered) answered of \(history.count) operations\n\(cluster.logs)")
        // The final history of the prefix, from a healthy member.
        let reader = try EtcdClient(endpoints: cluster.members.map(\.endpoint))
        let final = try await Self.fullHistory(reader)
        await reader.shutdown()
        let watch = WatchChecker.Watch(key: Array("k".utf8), rangeEnd: Array("l".utf8), startRevision: 1)
        for (index, events) in received.withLockedValue({ $0 }) {
            let problem = WatchChecker.check(watch: watch, received: events, history: final)
            #expect(problem == nil, "watcher \(index): \(problem ?? "")")
        }
    }

    /// What a call came to: an answer, no answer (it may or may not have
    /// taken effect), or never sent (the connection was down: it did not).
    enum Outcome<Value> {
        case answered(Value)
        case indeterminate
        case notSent
    }

    static func outcome<Value>(_ call: () async throws -> Value) async -> Outcome<Value> {
        do {
            return .answered(try await call())
        } catch let status as RPCStatus
            where status.code == .unavailable && status.message.hasPrefix("connection error:")
        {
            try? await Task.sleep(for: .milliseconds(50))
            return .notSent
        } catch {
            try? await Task.sleep(for: .milliseconds(50))
            return .indeterminate
        }
    }

    /// Random gets, puts and compare-and-swaps on `keys` until `stop`.
    static func runClient(
        _ client: Int, etcd: EtcdClient, recorder: Recorder, stop: NIOLockedValueBox<Bool>
    ) async throws {
        var generator = SystemRandomNumberGenerator()
        var sequence = 0
        var lastSeen: [String: String?] = [:]
        while !stop.withLockedValue({ $0 }) {
            sequence += 1
            let key = keys.randomElement(using: &generator)!
            let call = recorder.now
            let input: KeyValueOperation.Input
            let output: KeyValueOperation.Output?
            switch Int.random(in: 0..<3, using: &generator) {
            case 0:
                input = .get(key: key)
                switch await outcome({ try await etcd.get(key) }) {
                case .answered(let response):
                    let value = response.kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
                    lastSeen[key] = value
                    output = .get(value: value)
                case .indeterminate, .notSent: continue  // a read without an answer constrains nothing
                }
            case 1:
                let value = "c\(client)-\(sequence)"
                input = .put(key: key, value: value)
                switch await outcome({ try await etcd.put(key: key, value: value) }) {
                case .answered: output = .put
                case .indeterminate: output = nil
                case .notSent: continue
                }
            default:
                let expected = lastSeen[key] ?? nil
                let value = "c\(client)-\(sequence)"
                input = .compareAndSwap(key: key, expected: expected, new: value)
                let compare: TxnCompare =
                    expected.map { TxnCompare.value(key, .equal, $0) }
                    ?? TxnCompare.createRevision(key, .equal, 0)
                switch await outcome({ try await etcd.txn(if: [compare], then: [.put(key, value)]) }) {
                case .answered(let response): output = .compareAndSwap(succeeded: response.succeeded)
                case .indeterminate: output = nil
                case .notSent: continue
                }
            }
            recorder.record(
                KeyValueOperation(
                    client: client, input: input, output: output, callTime: call,
                    returnTime: output == nil ? nil : recorder.now))
        }
    }

    /// Every 1.5 s one fault, at most one member down at a time: kill -9
    /// and restart, or SIGSTOP then SIGCONT.
    static func nemesis(_ cluster: ClusterProcess, stop: NIOLockedValueBox<Bool>) {
        var round = 0
        while !stop.withLockedValue({ $0 }) {
            usleep(1_500_000)
            if stop.withLockedValue({ $0 }) { break }
            let member = cluster.members[round % cluster.members.count]
            if round % 2 == 0 {
                member.process.stop(signal: SIGKILL)
                usleep(800_000)
                try? member.start()
            } else {
                kill(member.process.process.processIdentifier, SIGSTOP)
                usleep(1_500_000)
                kill(member.process.process.processIdentifier, SIGCONT)
            }
            round += 1
        }
    }

    /// The prefix's whole history: a watch from revision 1 on a healthy
    /// member, read until the current revision.
    static func fullHistory(_ client: EtcdClient) async throws -> [WatchedEvent] {
        let current = try await client.get("k", end: .prefix, countOnly: true).header.revision
        var events: [WatchedEvent] = []
        let stream = try await client.watch("k", end: .prefix, startRevision: 1)
        for try await response in stream {
            events += response.events.map(watched)
            if (events.last?.revision ?? 0) >= current { break }
        }
        return events
    }

    static func watched(_ event: Mvccpb_Event) -> WatchedEvent {
        WatchedEvent(
            revision: event.kv.modRevision, key: Array(event.kv.key),
            kind: event.type == .put ? .put : .delete, value: Array(event.kv.value))
    }

    /// The checker must be able to fail: a read that returns a value
    /// overwritten before the read began is rejected.
    @Test func checkerRejectsAStaleRead() {
        let history = [
            KeyValueOperation(
                client: 0, input: .put(key: "k", value: "1"), output: .put, callTime: 0, returnTime: 1),
            KeyValueOperation(
                client: 0, input: .put(key: "k", value: "2"), output: .put, callTime: 2, returnTime: 3),
            KeyValueOperation(
                client: 1, input: .get(key: "k"), output: .get(value: "1"), callTime: 4, returnTime: 5),
        ]
        #expect(LinearizabilityChecker().check(history) == .notLinearizable(key: "k"))
    }
}
