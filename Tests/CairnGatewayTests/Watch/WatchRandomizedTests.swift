import CairnAPI
import Foundation
import Testing

@testable import CairnGateway

/// SplitMix64: a small seeded generator, so a failing run replays from its seed.
struct WatchSeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var value = self.state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

/// Random joins, leaves, writes, progress requests and upstream drops; every
/// client watch must see exactly the events of its range after its start
/// revision, in order, without duplicates, and every progress answer must be
/// in sync with the events before it.
@Suite(.serialized)
struct WatchRandomizedTests {
    /// A client watch as the test created it.
    struct Created {
        let client: Int
        let watchID: Int64
        let key: String
        let rangeEnd: String
        let filters: [Int]
        let start: Int64
    }

    static let keys = ["k0", "k1", "k2", "k3"]
    /// Shapes: single keys and the whole `k…` range; filters vary.
    static let shapes: [(key: String, rangeEnd: String)] = [("k0", ""), ("k1", ""), ("k", "l")]

    @Test(arguments: Array(UInt64(1)...12))
    func randomJoinsLeavesWritesAndDrops(seed: UInt64) async throws {
        var random = WatchSeededGenerator(state: seed)
        var configuration = WatchCoalescerConfiguration.fast
        configuration.recentEventsMax = 3
        // A third of the seeds distrust upstream progress (etcd before 3.4.25).
        configuration.upstreamProgressIsSynced = seed % 3 != 0
        try await WatchHarness.with(configuration) { harness in
            // Half the seeds replay history slowly, so catch-ups really lag.
            if seed % 2 == 0 { try await harness.etcd.run { $0.historyEventDelay = .milliseconds(1) } }
            var clients: [WatchTestClient] = []
            for _ in 0..<4 { clients.append(try await harness.client()) }
            var created: [Created] = []
            var nextWatchID = [Int64](repeating: 0, count: clients.count)
            var cancelled: Set<[Int64]> = []
            var revision = try await harness.etcd.revision()
            for _ in 0..<250 {
                switch Int.random(in: 0..<100, using: &random) {
                case 0..<25:
                    let client = Int.random(in: 0..<clients.count, using: &random)
                    let shape = Self.shapes.randomElement(using: &random)!
                    let filters = [[], [], [0], [1]].randomElement(using: &random)!
                    let start =
                        Bool.random(using: &random) ? 0 : Int64.random(in: 1...(revision + 1), using: &random)
                    try await clients[client].create(
                        shape.key, rangeEnd: shape.rangeEnd, start: start, filters: filters)
                    created.append(
                        Created(
                            client: client, watchID: nextWatchID[client], key: shape.key,
                            rangeEnd: shape.rangeEnd, filters: filters, start: start))
                    nextWatchID[client] += 1
                case 25..<35:
                    let open = created.filter { !cancelled.contains([Int64($0.client), $0.watchID]) }
                    guard let victim = open.randomElement(using: &random) else { continue }
                    cancelled.insert([Int64(victim.client), victim.watchID])
                    try await clients[victim.client].cancel(victim.watchID)
                case 35..<45:
                    try await clients.randomElement(using: &random)!.requestProgress()
                case 45..<48:
                    try await harness.etcd.dropStreams()
                case 48..<60:
                    revision = try await harness.etcd.delete(Self.keys.randomElement(using: &random)!)
                default:
                    revision = try await harness.etcd.put(
                        Self.keys.randomElement(using: &random)!,
                        "v\(Int.random(in: 0..<1000, using: &random))")
                }
            }
            let history = try await harness.etcd.run { state in state.history.map(\.event) }
            let all = clients
            let watches = created
            #expect(
                await watchEventually(timeout: .seconds(20)) {
                    watches.allSatisfy { all[$0.client].created($0.watchID) != nil }
                })
            for watch in created where !cancelled.contains([Int64(watch.client), watch.watchID]) {
                let client = clients[watch.client]
                let expected = Self.expected(watch, history: history, client: client)
                let complete = await watchEventually(timeout: .seconds(20)) {
                    client.eventRevisions(watch.watchID) == expected
                }
                #expect(
                    complete,
                    "seed \(seed): watch \(watch) got \(client.eventRevisions(watch.watchID)), expected \(expected)"
                )
            }
            for watch in created where cancelled.contains([Int64(watch.client), watch.watchID]) {
                let client = clients[watch.client]
                let expected = Self.expected(watch, history: history, client: client)
                let got = client.eventRevisions(watch.watchID)
                #expect(
                    Array(expected.prefix(got.count)) == got,
                    "seed \(seed): cancelled watch \(watch) got \(got)")
            }
            for (index, client) in clients.enumerated() {
                let mine = created.filter { $0.client == index }
                Self.checkProgressAnswers(client, mine, history: history, seed: seed)
            }
            for client in clients {
                #expect(!client.responses.contains { $0.canceled && !$0.cancelReason.isEmpty })
            }
        }
    }

    /// The revisions a watch must get: its range and filters, after its
    /// start (for a start of 0, after the revision it was created at).
    static func expected(_ watch: Created, history: [Mvccpb_Event], client: WatchTestClient) -> [Int64] {
        let createdRevision = client.created(watch.watchID)?.header.revision ?? 0
        let after = watch.start == 0 ? createdRevision + 1 : watch.start
        return history.filter { event in
            event.kv.modRevision >= after && Self.matches(watch, event)
        }.map(\.kv.modRevision)
    }

    static func matches(_ watch: Created, _ event: Mvccpb_Event) -> Bool {
        let key = String(decoding: event.kv.key, as: UTF8.self)
        let inRange = watch.rangeEnd.isEmpty ? key == watch.key : (key >= watch.key && key < watch.rangeEnd)
        guard inRange else { return false }
        if event.type == .put && watch.filters.contains(0) { return false }
        if event.type == .delete && watch.filters.contains(1) { return false }
        return true
    }

    /// Every progress answer (`watch_id` -1) with revision R: each watch
    /// created before it and not cancelled before it has had, before it,
    /// every one of its events up to R.
    static func checkProgressAnswers(
        _ client: WatchTestClient, _ watches: [Created], history: [Mvccpb_Event], seed: UInt64
    ) {
        let log = client.responses
        for (index, answer) in log.enumerated() where answer.watchID == -1 && !answer.created {
            let before = log[..<index]
            for watch in watches {
                guard before.contains(where: { $0.created && $0.watchID == watch.watchID }),
                    !before.contains(where: { $0.canceled && $0.watchID == watch.watchID })
                else { continue }
                let due = Self.expected(watch, history: history, client: client).filter {
                    $0 <= answer.header.revision
                }
                let delivered = before.filter { $0.watchID == watch.watchID && !$0.created }
                    .flatMap { $0.events.map(\.kv.modRevision) }
                #expect(
                    Set(due).isSubset(of: Set(delivered)),
                    "seed \(seed): progress \(answer.header.revision) before events \(due) of \(watch)")
            }
        }
    }
}
