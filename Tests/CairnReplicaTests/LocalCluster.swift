import CairnCore
import CairnMVCC
import CairnRaft
import CairnStateMachine

@testable import CairnReplica

/// Replicas wired together in memory for unit tests: persistence completes at once,
/// messages are delivered in order, unless a test holds them.
final class LocalCluster {
    var replicas: [MemberID: Replica] = [:]
    var now = MonotonicInstant(milliseconds: 1_000)
    var inbox: [Message] = []
    /// Everything each replica reported, in order.
    var responses: [MemberID: [ReplicaResponse]] = [:]
    var reads: [MemberID: [ReadAnswer]] = [:]
    var applied: [MemberID: [ApplyResult]] = [:]
    var removed: Set<MemberID> = []
    var isolated: Set<MemberID> = []

    static func records(_ ids: [UInt64]) -> [MemberRecord] {
        ids.map {
            MemberRecord(id: MemberID($0), name: "m\($0)", peerURLs: ["http://127.0.0.1:\(2379 + $0)"])
        }
    }

    static func config(_ id: UInt64) -> ReplicaConfig {
        var config = ReplicaConfig(memberID: MemberID(id), randomSeed: 7)
        config.raft.electionTimeoutTicks = 10
        config.snapshotEntriesInterval = 0
        return config
    }

    init(ids: [UInt64], configure: (inout ReplicaConfig) -> Void = { _ in }) throws {
        let bootstrap = Bootstrap.newCluster(members: Self.records(ids))
        for id in ids {
            var config = Self.config(id)
            configure(&config)
            replicas[MemberID(id)] = try Replica(config: config, recovered: bootstrap, now: now)
        }
    }

    func replica(_ id: UInt64) -> Replica { replicas[MemberID(id)]! }

    /// Drains every replica's effects and delivers messages until nothing moves.
    func settle(roundsMax: Int = 1_000) {
        for _ in 0..<roundsMax {
            var moved = false
            for id in replicas.keys.sorted() {
                while let effects = replicas[id]!.nextEffects() {
                    moved = true
                    record(effects, of: id)
                }
            }
            let messages = inbox
            inbox = []
            for message in messages {
                moved = true
                let to = MemberID(message.to)
                guard !isolated.contains(to), !isolated.contains(MemberID(message.from)) else { continue }
                replicas[to]?.receive(message)
            }
            if !moved { return }
        }
    }

    func record(_ effects: ReplicaEffects, of id: MemberID) {
        let replica = replicas[id]!
        if effects.persist != nil { replica.persisted() }
        inbox += effects.messages
        responses[id, default: []] += effects.responses
        reads[id, default: []] += effects.reads
        applied[id, default: []] += effects.applied
        if effects.removed { removed.insert(id) }
        if let snapshot = effects.snapshotToSave { replica.snapshotSaved(snapshot.raftSnapshot()) }
    }

    func tick(_ count: Int = 1) {
        for _ in 0..<count {
            now = now.adding(milliseconds: 100)
            for id in replicas.keys.sorted() { replicas[id]!.tick(now: now) }
            settle()
        }
    }

    /// Elects `id` and settles.
    func elect(_ id: UInt64) {
        settle()
        replica(id).campaign()
        settle()
    }

    static func put(_ key: String, _ value: String, lease: LeaseID = .none) -> Command.Operation {
        .put(PutRequest(key: Key(Array(key.utf8)), value: Array(value.utf8), lease: lease))
    }
}
