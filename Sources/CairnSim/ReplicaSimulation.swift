import CairnCore
import CairnMVCC
import CairnRaft
import CairnReplica
import CairnStateMachine

/// One seeded run of a cluster of whole member cores (`ReplicaSimNode`) on a virtual clock,
/// with key-value clients: puts, linearizable gets and compare-and-swap txns on a few keys,
/// sent to random members. The network drops, duplicates, delays, reorders and partitions;
/// members crash (losing what was not persisted) and restart from their durable state.
///
/// Checked: every Raft property of `Checker` after every step; after healing, that an
/// operation completes (liveness) and that members at the same applied index hold the same
/// key space (HashKV); at the end, that the clients' history is linearizable.
///
/// Same seed, same run: every choice comes from one `SplitMix64`; `trace` fingerprints it.
public final class ReplicaSimulation {
    /// What to run.
    public struct Options: Sendable {
        public var seed: UInt64
        public var nodeCount = 3
        public var chaosTicks = 200
        /// After healing, some client operation must complete within this many ticks.
        public var livenessTicksMax = 400
        /// Ticks run after liveness so every member applies everything (for the hash check).
        public var settleTicks = 40
        public var clientCount = 4
        public var keys = ["a", "b", "c"]
        /// A client gives up on an answer after this many ticks (the operation stays
        /// indeterminate in the history) and issues its next operation.
        public var requestTimeoutTicks = 60
        /// TEST ONLY: gets are served from the member's local state without a ReadIndex
        /// round (serializable, not linearizable), to prove the history check notices.
        public var unsafeServeGetsLocally = false

        public init(seed: UInt64) { self.seed = seed }
    }

    private enum Event {
        case deliver(Message)
        case persisted(NodeID)
        case restart(NodeID)
    }

    private struct Pending {
        var operation: Int
        var member: NodeID
        var requestID: UInt64
        var deadlineTick: Int
    }

    let options: Options
    public let parameters: SwarmParameters
    private var random: SplitMix64
    private var nodes: [NodeID: ReplicaSimNode] = [:]
    private let ids: [NodeID]
    private let extraMember: NodeID?
    private var down: Set<NodeID> = []
    private var persisting: Set<NodeID> = []
    private var group: [NodeID: Int] = [:]
    private var events: [Int: [Event]] = [:]
    private var now = 0
    private var healed = false
    private var healTime: Int64 = .max
    public private(set) var checker = Checker()
    public private(set) var trace = TraceHash()
    /// The clients' history, for the linearizability checker.
    public private(set) var history: [KeyValueOperation] = []
    private var pending: [Int: Pending] = [:]
    /// Operations the state machine refused (they changed nothing): left out of the check.
    private var failedOperations: Set<Int> = []
    private var nextRequestID: UInt64 = 1
    private var nextValue = 1
    private var livenessReached = false
    public private(set) var statistics = Statistics()

    /// Counters reported after a run.
    public struct Statistics: Sendable {
        public var operationsCompleted = 0
        public var operationsIndeterminate = 0
        public var crashes = 0
        public var partitions = 0
        public var snapshotsInstalled = 0
        public var membershipChanges = 0
        /// Crashes that lost an unsynced hard state write.
        public var unsyncedLosses = 0
    }

    public init(options: Options) {
        self.options = options
        random = SplitMix64(seed: options.seed)
        parameters = SwarmParameters(random: &random)
        let voters = (1...NodeID(max(options.nodeCount, 1))).map { $0 }
        // With membership churn one more member starts empty and joins (by snapshot when the
        // log was compacted), as `member add` and a new process with
        // `--initial-cluster-state existing` do.
        extraMember = parameters.membershipChangePerMille > 0 ? NodeID(voters.count + 1) : nil
        ids = voters + (extraMember.map { [$0] } ?? [])
        let records = voters.map { MemberRecord(id: MemberID($0), name: "m\($0)", peerURLs: ["sim://\($0)"]) }
        let bootstrap = Bootstrap.newCluster(members: records)
        for id in ids {
            var config = ReplicaConfig(memberID: MemberID(id), randomSeed: options.seed)
            config.raft.preVote = parameters.preVote
            config.raft.checkQuorum = parameters.checkQuorum
            config.raft.heartbeatIntervalTicks = parameters.heartbeatIntervalTicks
            config.raft.messageBytesMax = parameters.messageBytesMax
            config.raft.inflightMessagesMax = parameters.inflightMessagesMax
            config.raft.uncommittedBytesMax = parameters.uncommittedBytesMax * 8
            config.snapshotEntriesInterval = UInt64(parameters.compactEveryEntries)
            config.catchUpEntries = 2
            config.readRoundTimeoutTicks = 15
            // Bootstrap entries are a value every member writes alike: this cannot fail.
            nodes[id] = try? ReplicaSimNode(
                config: config, recovered: id == extraMember ? RecoveredState() : bootstrap)
        }
    }

    /// Runs to the end or the first violation; returns the violation, if any.
    public func run() -> String? {
        let chaosSteps = options.chaosTicks * SwarmParameters.stepsPerTick
        let livenessSteps = options.livenessTicksMax * SwarmParameters.stepsPerTick
        while now < chaosSteps + livenessSteps && !livenessReached {
            if now == chaosSteps { heal() }
            step()
            if let violation = checker.violation { return violation }
            now += 1
        }
        guard livenessReached else {
            return
                "liveness: no client operation completed within \(options.livenessTicksMax) ticks after healing"
        }
        let end = now + options.settleTicks * SwarmParameters.stepsPerTick
        while now < end {
            step()
            if let violation = checker.violation { return violation }
            now += 1
        }
        if let violation = checkHashes() { return violation }
        for (_, waiting) in pending { history[waiting.operation].returnTime = nil }
        let checked = history.indices.filter { !failedOperations.contains($0) }.map { history[$0] }
        switch LinearizabilityChecker().check(checked) {
        case .linearizable: return nil
        case .notLinearizable(let key): return "history on key \(key) is not linearizable"
        case .unknown(let key): return "linearizability search on key \(key) ran out of steps"
        }
    }

    // MARK: one step

    private func step() {
        if now % SwarmParameters.stepsPerTick == 0 {
            trace.add(1, UInt64(now))
            for id in ids where !down.contains(id) { nodes[id]?.tick() }
            if !healed { injectFaults() }
            clientActions()
        }
        var position = 0
        while let bucket = events[now], position < bucket.count {
            handle(bucket[position])
            position += 1
        }
        events[now] = nil
        for id in ids where !down.contains(id) && !persisting.contains(id) {
            guard let node = nodes[id], node.startPersist() else { continue }
            for message in node.takeMessagesToSend() { send(message) }
            persisting.insert(id)
            let delay = parameters.persistDelayStepsMax == 0 ? 0 : roll(parameters.persistDelayStepsMax + 1)
            if delay == 0 { handle(.persisted(id)) } else { schedule(.persisted(id), after: delay) }
        }
        checkStatuses()
    }

    private func handle(_ event: Event) {
        switch event {
        case .deliver(let message):
            guard !down.contains(message.to), connected(message.from, message.to) else { return }
            trace.add(2, message.from, message.to, UInt64(message.kind.rawValue), message.term, message.index)
            nodes[message.to]?.receive(message)
        case .persisted(let id):
            guard persisting.remove(id) != nil, !down.contains(id), let node = nodes[id] else { return }
            for segment in node.finishPersistSegments() {
                if let index = segment.installedSnapshot {
                    statistics.snapshotsInstalled += 1
                    trace.add(12, id, index)
                    checker.nodeRestarted(id, appliedIndex: index)
                }
                trace.add(
                    3, id, UInt64(segment.effects.messages.count), UInt64(segment.effects.applied.count))
                checker.check(effects: segment.effects, of: id)
                for message in segment.effects.messages { send(message) }
            }
            for answer in node.takeAnswers() { answered(answer, by: id) }
        case .restart(let id):
            guard down.remove(id) != nil, let node = nodes[id] else { return }
            trace.add(4, id)
            node.restart()
            checker.nodeRestarted(id, appliedIndex: node.status.appliedIndex)
            checker.forgetCommitProgress(of: id)
        }
    }

    private func checkStatuses() {
        // Electability assumes a fixed membership.
        if extraMember == nil { checker.checkElectability(ids.compactMap { nodes[$0] }) }
        for id in ids where !down.contains(id) {
            guard let member = nodes[id] else { continue }
            checker.check(status: member.status, of: id, member: member)
        }
    }

    /// Members that applied the same entries hold the same key space.
    private func checkHashes() -> String? {
        var byIndex: [UInt64: (NodeID, KeySpaceHash)] = [:]
        for id in ids {
            guard let replica = nodes[id]?.replica, let hash = try? replica.stateMachine.hash() else {
                continue
            }
            if let (other, otherHash) = byIndex[replica.appliedIndex], otherHash != hash {
                return "members \(other) and \(id) differ at applied index \(replica.appliedIndex)"
            }
            byIndex[replica.appliedIndex] = (id, hash)
        }
        return nil
    }

    // MARK: network and faults

    /// Duplicates Raft's own messages (idempotent: appends, votes, heartbeats, read
    /// confirmations) but never a forwarded proposal: like etcd, the leader appends every
    /// `.propose` it receives, so a copy would commit the client's command twice, and the
    /// real peer transport never duplicates (`PeerTransport`: "never duplicated").
    private func send(_ message: Message) {
        if !healed && roll(1000) < parameters.dropPerMille { return }
        schedule(.deliver(message), after: 1 + roll(parameters.messageDelayStepsMax))
        // The roll comes first so every other seed draws the same random sequence as before.
        if !healed && roll(1000) < parameters.duplicatePerMille && message.kind != .propose {
            schedule(.deliver(message), after: 1 + roll(parameters.messageDelayStepsMax))
        }
    }

    private func connected(_ from: NodeID, _ to: NodeID) -> Bool {
        group[from, default: 0] == group[to, default: 0]
    }

    private func schedule(_ event: Event, after steps: Int) { events[now + steps, default: []].append(event) }

    private func roll(_ bound: Int) -> Int { bound <= 1 ? 0 : Int(random.next() % UInt64(bound)) }

    private func injectFaults() {
        if roll(1000) < parameters.partitionPerMille {
            statistics.partitions += 1
            group = [:]
            for id in ids where roll(2) == 1 { group[id] = 1 }
            trace.add(5, UInt64(group.count))
        } else if !group.isEmpty && roll(1000) < parameters.healPerMille {
            group = [:]
            trace.add(6)
        }
        if roll(1000) < parameters.crashPerMille + parameters.leaderCrashPerMille / 2 {
            crash(ids[roll(ids.count)])
        }
        if roll(1000) < parameters.membershipChangePerMille { changeMembership() }
    }

    /// Cycles the extra member through learner, voter and removed, as an operator would.
    private func changeMembership() {
        guard let extra = extraMember,
            let leader = ids.first(where: { !down.contains($0) && nodes[$0]?.status.role == .leader }),
            let node = nodes[leader], let membership = node.membership
        else { return }
        let change = SwarmParameters.nextMembershipChange(of: extra, in: membership)
        if node.proposeMembershipChange(change) {
            statistics.membershipChanges += 1
            trace.add(11, UInt64(change.kind.rawValue))
        }
    }

    private func crash(_ id: NodeID) {
        guard !down.contains(id) else { return }
        statistics.crashes += 1
        down.insert(id)
        persisting.remove(id)
        let lossesBefore = nodes[id]?.unsyncedLosses ?? 0
        nodes[id]?.crash()
        statistics.unsyncedLosses += (nodes[id]?.unsyncedLosses ?? 0) - lossesBefore
        trace.add(7, id)
        for (client, waiting) in pending where waiting.member == id { giveUp(client) }
        schedule(
            .restart(id), after: (1 + roll(parameters.restartDelayTicksMax)) * SwarmParameters.stepsPerTick)
    }

    private func heal() {
        healed = true
        healTime = Int64(now)
        group = [:]
        for id in ids.sorted() where down.contains(id) { handle(.restart(id)) }
        trace.add(9)
    }

    // MARK: clients

    private func clientActions() {
        let tick = now / SwarmParameters.stepsPerTick
        for client in 0..<options.clientCount {
            if let waiting = pending[client], waiting.deadlineTick <= tick { giveUp(client) }
            guard pending[client] == nil, roll(1000) < max(parameters.proposePerMille, 300) else { continue }
            issue(client)
        }
    }

    private func issue(_ client: Int) {
        let key = options.keys[roll(options.keys.count)]
        let input: KeyValueOperation.Input
        switch roll(10) {
        case 0..<4: input = .get(key: key)
        case 4..<7: input = .put(key: key, value: "v\(nextValue)")
        default:
            // Expect a value the key may hold: a recent one, or absent.
            let recent = nextValue > 1 ? "v\(nextValue - 1 - roll(min(nextValue - 1, 4)))" : nil
            input = .compareAndSwap(key: key, expected: roll(4) == 0 ? nil : recent, new: "v\(nextValue)")
        }
        nextValue += 1
        let live = ids.filter { !down.contains($0) }
        guard !live.isEmpty, let node = nodes[live[roll(live.count)]] else { return }
        let requestID = nextRequestID
        nextRequestID += 1
        if options.unsafeServeGetsLocally, case .get(let key) = input {
            let value = node.readLocally(key: Key(key)).map { String(decoding: $0, as: UTF8.self) }
            history.append(
                KeyValueOperation(
                    client: client, input: input, output: .get(value: value), callTime: Int64(now),
                    returnTime: Int64(now)))
            return
        }
        guard Self.submit(input, to: node, requestID: requestID) else { return }
        trace.add(8, UInt64(client), requestID)
        history.append(
            KeyValueOperation(
                client: client, input: input, output: nil, callTime: Int64(now), returnTime: nil))
        pending[client] = Pending(
            operation: history.count - 1, member: node.id, requestID: requestID,
            deadlineTick: now / SwarmParameters.stepsPerTick + options.requestTimeoutTicks)
    }

    static func submit(_ input: KeyValueOperation.Input, to node: ReplicaSimNode, requestID: UInt64) -> Bool {
        switch input {
        case .get(let key):
            return node.read(key: Key(key), readID: requestID)
        case .put(let key, let value):
            return node.submit(
                .put(PutRequest(key: Key(key), value: Array(value.utf8))), requestID: requestID)
        case .compareAndSwap(let key, let expected, let new):
            let compare =
                expected.map { Compare(key: Key(key), target: .value(Array($0.utf8)), result: .equal) }
                ?? Compare(key: Key(key), target: .version(0), result: .equal)
            let txn = TxnRequest(
                compare: [compare], success: [.put(PutRequest(key: Key(key), value: Array(new.utf8)))])
            return node.submit(.txn(txn), requestID: requestID)
        }
    }

    /// No answer in time: the operation stays in the history without an output.
    private func giveUp(_ client: Int) {
        guard pending.removeValue(forKey: client) != nil else { return }
        statistics.operationsIndeterminate += 1
    }

    private func answered(_ answer: ReplicaSimNode.Answer, by member: NodeID) {
        let requestID: UInt64
        switch answer {
        case .applied(let id, _), .failed(let id, _), .read(let id, _, _), .readFailed(let id, _):
            requestID = id
        }
        guard
            let (client, waiting) = pending.first(where: {
                $0.value.requestID == requestID && $0.value.member == member
            })
        else { return }
        pending[client] = nil
        trace.add(10, UInt64(client), requestID)
        var operation = history[waiting.operation]
        switch answer {
        case .applied(_, let result):
            guard let output = Self.output(of: result, for: operation.input) else {
                failedOperations.insert(waiting.operation)  // refused by the state machine: no effect
                return
            }
            operation.output = output
        case .read(_, _, let value):
            operation.output = .get(value: value.map { String(decoding: $0, as: UTF8.self) })
        case .failed, .readFailed:
            statistics.operationsIndeterminate += 1
            return
        }
        operation.returnTime = Int64(now)
        history[waiting.operation] = operation
        statistics.operationsCompleted += 1
        if operation.callTime >= healTime { livenessReached = true }
    }

    static func output(of result: ApplyResult, for input: KeyValueOperation.Input) -> KeyValueOperation
        .Output?
    {
        switch (result.response, input) {
        case (.put, .put): return .put
        case (.txn(let response), .compareAndSwap): return .compareAndSwap(succeeded: response.succeeded)
        default: return nil
        }
    }
}

extension ReplicaSimulation {
    /// The outcome of one seed run twice (a different trace the second time is itself a
    /// failure: nondeterminism makes every other failure unreplayable).
    public struct Outcome: Sendable {
        public var seed: UInt64
        public var violation: String?
        public var traceHash: UInt64
        public var parameters: SwarmParameters
        public var statistics: Statistics
        public var operations: Int
    }

    /// Runs `options` twice and compares the traces, as CI and a swarm should.
    public static func runTwice(_ options: Options) -> Outcome {
        let first = ReplicaSimulation(options: options)
        var violation = first.run()
        let second = ReplicaSimulation(options: options)
        let secondViolation = second.run()
        if violation == nil && (second.trace != first.trace || secondViolation != nil) {
            violation = "nondeterminism: the same seed produced two different traces"
        }
        return Outcome(
            seed: options.seed, violation: violation, traceHash: first.trace.value,
            parameters: first.parameters,
            statistics: first.statistics, operations: first.history.count)
    }

    /// How to replay a failing seed from a test run.
    public static func replayDescription(_ options: Options) -> String {
        "ReplicaSimulation(options: .init(seed: \(options.seed)), nodeCount \(options.nodeCount), "
            + "chaosTicks \(options.chaosTicks)).run()"
    }
}
