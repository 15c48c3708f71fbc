import CairnRaft

/// One seeded run of a whole cluster on a virtual clock, in one thread: a chaos phase
/// (lossy, duplicating, reordering network; partitions; crashes that lose un-persisted
/// state; client writes and reads) checked after every step, then a liveness phase
/// (everything heals; a leader must be elected and a write commit within a bound).
///
/// Same seed, same run: every random choice comes from one `SplitMix64`, and the trace
/// hash fingerprints the whole event sequence.
public final class Simulation {
    /// How to build a member: the simulator does not care what is inside.
    public typealias NodeFactory =
        (_ id: NodeID, _ voters: Set<NodeID>, _ parameters: SwarmParameters, _ seed: UInt64) ->
        any SimulatedNode

    /// What to run.
    public struct Options: Sendable {
        public var seed: UInt64
        public var nodeCount: Int = 3
        public var chaosTicks: Int = 300
        /// The liveness bound: after healing, a write must commit within this many ticks. It
        /// covers an election plus draining the bounded backlog (`uncommittedBytesMax`) at one
        /// entry per round trip, the slowest swarm setting.
        public var livenessTicksMax: Int = 500
        /// TEST ONLY: bugs planted in every node, to prove the checkers notice.
        public var faults: Set<UnsafeTestingFault> = []

        public init(seed: UInt64, nodeCount: Int = 3) {
            self.seed = seed
            self.nodeCount = nodeCount
        }
    }

    private enum Event {
        case deliver(Message)
        case persisted(NodeID)
        case restart(NodeID)
    }

    let options: Options
    public let parameters: SwarmParameters
    private var random: SplitMix64
    private var nodes: [NodeID: any SimulatedNode] = [:]
    private let ids: [NodeID]
    private let laggard: NodeID
    private let extraMember: NodeID?
    private var down: Set<NodeID> = []
    private var persisting: Set<NodeID> = []
    private var group: [NodeID: Int] = [:]
    private var events: [Int: [Event]] = [:]
    private struct Link: Hashable {
        var from: NodeID
        var to: NodeID
    }
    private var lastArrival: [Link: Int] = [:]
    private var now = 0
    private var healed = false
    public private(set) var checker = Checker()
    public private(set) var trace = TraceHash()
    private var nextValue: UInt64 = 1
    private var nextReadID: UInt64 = 1
    private var livenessFloorValue: UInt64 = .max
    private var livenessReached = false
    private let livenessRetryTicks = 30
    public private(set) var statistics = Statistics()
    /// Receives a line per notable event (role changes, partitions, crashes) when set.
    public var eventLog: ((String) -> Void)?
    private var lastRoles: [NodeID: (Role, UInt64)] = [:]

    /// Counters reported after a run.
    public struct Statistics: Sendable {
        public var messagesSent = 0
        public var messagesDropped = 0
        public var crashes = 0
        public var partitions = 0
        public var writesAccepted = 0
        public var readsServed = 0
        public var membershipChangesProposed = 0
        public var livenessTicks = 0
        /// TEST ONLY: decisions changed by planted faults, summed over members.
        public var unsafeFaultActivations = 0
    }

    public init(options: Options, factory: NodeFactory? = nil) {
        self.options = options
        random = SplitMix64(seed: options.seed)
        parameters = SwarmParameters(random: &random)
        let voters = Set((1...NodeID(max(options.nodeCount, 1))).map { $0 })
        // With membership churn, one more member starts outside the configuration.
        extraMember = parameters.membershipChangePerMille > 0 ? NodeID(voters.count + 1) : nil
        ids = voters.sorted() + (extraMember.map { [$0] } ?? [])
        laggard = 1 + random.next() % UInt64(ids.count)
        let build = factory ?? Self.raftNodeFactory(faults: options.faults)
        for id in ids { nodes[id] = build(id, voters, parameters, options.seed) }
    }

    /// The default member: a bare `RaftNode` with the swarm's tunables.
    public static func raftNodeFactory(faults: Set<UnsafeTestingFault>) -> NodeFactory {
        { id, voters, parameters, seed in
            var config = RaftConfig(id: id, randomSeed: seed)
            config.preVote = parameters.preVote
            config.checkQuorum = parameters.checkQuorum
            config.heartbeatIntervalTicks = parameters.heartbeatIntervalTicks
            config.messageBytesMax = parameters.messageBytesMax
            config.inflightMessagesMax = parameters.inflightMessagesMax
            config.unsafeTestingFaults = faults
            // A small backlog bound keeps the liveness bound meaningful under slow networks.
            config.uncommittedBytesMax = parameters.uncommittedBytesMax
            return RaftSimNode(
                config: config, voters: voters, compactEveryEntries: parameters.compactEveryEntries)
        }
    }

    /// Runs to the end (or the first violation). Returns the violation, if any.
    public func run() -> String? {
        defer {
            statistics.unsafeFaultActivations = ids.compactMap { nodes[$0]?.status.unsafeFaultActivations }
                .reduce(0, +)
        }
        let chaosSteps = options.chaosTicks * SwarmParameters.stepsPerTick
        let totalSteps = chaosSteps + options.livenessTicksMax * SwarmParameters.stepsPerTick
        while now < totalSteps {
            if now == chaosSteps { heal() }
            step()
            if let violation = checker.violation { return violation }
            if livenessReached { return nil }
            now += 1
        }
        let states = ids.compactMap { id in
            nodes[id].map { node in
                let progress = (node as? RaftSimNode)?.progressDescription ?? ""
                return
                    "\(id): \(node.status.role) term \(node.status.term) commit \(node.status.committedIndex) "
                    + "last \(node.status.lastIndex) \(progress)"
            }
        }.joined(separator: "; ")
        return
            "liveness: no write committed within \(options.livenessTicksMax) ticks after healing; \(states)"
    }

    // MARK: one step

    private func step() {
        if now % SwarmParameters.stepsPerTick == 0 {
            trace.add(1, UInt64(now))
            if healed { statistics.livenessTicks += 1 }
            for id in ids where !down.contains(id) { nodes[id]?.tick() }
            if !healed { injectFaults() }
            clientActions()
        }
        var position = 0
        while let bucket = events[now], position < bucket.count {
            handle(bucket[position])
            position += 1
            checkStatuses()
        }
        events[now] = nil
        for id in ids where !down.contains(id) && !persisting.contains(id) {
            guard let node = nodes[id], node.startPersist() else { continue }
            persisting.insert(id)
            let delay = parameters.persistDelayStepsMax == 0 ? 0 : roll(parameters.persistDelayStepsMax + 1)
            if delay == 0 {
                handle(.persisted(id))
            } else {
                schedule(.persisted(id), after: delay)
            }
        }
        checkStatuses()
    }

    private func handle(_ event: Event) {
        switch event {
        case .deliver(let message):
            guard !down.contains(message.to), connected(message.from, message.to) else {
                statistics.messagesDropped += 1
                return
            }
            trace.add(2, message.from, message.to, UInt64(message.kind.rawValue), message.term, message.index)
            nodes[message.to]?.receive(message)
        case .persisted(let id):
            guard persisting.remove(id) != nil, !down.contains(id), let node = nodes[id] else { return }
            let effects = node.finishPersist()
            trace.add(3, id, UInt64(effects.messages.count), UInt64(effects.applied.count))
            checker.check(effects: effects, of: id)
            for message in effects.messages { send(message) }
            for read in effects.reads { readServed(read) }
            if effects.applied.contains(where: { $0.value >= livenessFloorValue }) { livenessReached = true }
        case .restart(let id):
            guard down.remove(id) != nil, let node = nodes[id] else { return }
            trace.add(4, id)
            node.restart()
            checker.nodeRestarted(id, appliedIndex: node.status.appliedIndex)
            checker.forgetCommitProgress(of: id)
        }
    }

    private func readServed(_ read: NodeEffects.Read) {
        statistics.readsServed += 1
        trace.add(10, read.readID, read.readIndex)
    }

    private func checkStatuses() {
        if parameters.membershipChangePerMille == 0 {
            checker.checkElectability(ids.compactMap { nodes[$0] })
        }
        for id in ids where !down.contains(id) {
            guard let member = nodes[id] else { continue }
            let status = member.status
            checker.check(status: status, of: id, member: member)
            if let eventLog, lastRoles[id].map({ $0 != (status.role, status.term) }) ?? true {
                lastRoles[id] = (status.role, status.term)
                eventLog(
                    "t\(now / SwarmParameters.stepsPerTick) node \(id) \(status.role) term \(status.term) "
                        + "last \(status.lastIndex) commit \(status.committedIndex)")
            }
        }
    }

    // MARK: network

    private func send(_ message: Message) {
        statistics.messagesSent += 1
        let dropPerMille =
            parameters.dropPerMille + (message.to == laggard ? parameters.laggardDropPerMille : 0)
        if !healed && roll(1000) < dropPerMille {
            statistics.messagesDropped += 1
            return
        }
        schedule(.deliver(message), after: linkDelay(from: message.from, to: message.to))
        if !healed && roll(1000) < parameters.duplicatePerMille {
            schedule(.deliver(message), after: 1 + roll(parameters.messageDelayStepsMax))
        }
    }

    /// Links are mostly FIFO, like the streams a real transport uses; a message overtakes
    /// earlier ones only with the swarm's reorder rate (a reconnection, a retry).
    private func linkDelay(from: NodeID, to: NodeID) -> Int {
        let delay = 1 + roll(parameters.messageDelayStepsMax)
        let link = Link(from: from, to: to)
        if roll(1000) < parameters.reorderPerMille { return delay }
        let arrival = max(now + delay, lastArrival[link, default: 0])
        lastArrival[link] = arrival
        return arrival - now
    }

    private func connected(_ from: NodeID, _ to: NodeID) -> Bool {
        group[from, default: 0] == group[to, default: 0]
    }

    private func schedule(_ event: Event, after steps: Int) {
        events[now + steps, default: []].append(event)
    }

    /// A uniform draw in `0..<bound`.
    private func roll(_ bound: Int) -> Int { bound <= 1 ? 0 : Int(random.next() % UInt64(bound)) }

    // MARK: faults and clients

    private func injectFaults() {
        if roll(1000) < parameters.partitionPerMille {
            // A new split, possibly straight from another one: a node that was cut off
            // (and is behind) can land on the majority side while the leader is cut off.
            statistics.partitions += 1
            group = [:]
            for id in ids where roll(2) == 1 { group[id] = 1 }
            trace.add(5, UInt64(group.count))
        } else if roll(1000) < parameters.leaderIsolationPerMille,
            let leader = ids.first(where: { !down.contains($0) && nodes[$0]?.status.role == .leader })
        {
            statistics.partitions += 1
            group = [leader: 1]
            trace.add(5, leader)
            eventLog?("t\(now / SwarmParameters.stepsPerTick) isolate leader \(leader)")
        } else if !group.isEmpty && roll(1000) < parameters.healPerMille {
            group = [:]
            trace.add(6)
            eventLog?("t\(now / SwarmParameters.stepsPerTick) heal")
        }
        if roll(1000) < parameters.crashPerMille { crash(ids[roll(ids.count)]) }
        if roll(1000) < parameters.leaderCrashPerMille,
            let leader = ids.first(where: { !down.contains($0) && nodes[$0]?.status.role == .leader })
        {
            crash(leader)
        }
    }

    /// Stops `id`, losing what it had not persisted, and schedules its restart.
    private func crash(_ id: NodeID) {
        guard !down.contains(id) else { return }
        statistics.crashes += 1
        down.insert(id)
        persisting.remove(id)
        nodes[id]?.crash()
        trace.add(7, id)
        eventLog?("t\(now / SwarmParameters.stepsPerTick) crash \(id)")
        let ticks = 1 + roll(parameters.restartDelayTicksMax)
        schedule(.restart(id), after: ticks * SwarmParameters.stepsPerTick)
    }

    private func clientActions() {
        // A client retries a write that did not commit in time (its leader may have lost
        // the entry to a newer leader, which Raft allows for uncommitted entries).
        let livenessWritePending =
            healed && (nextValue == livenessFloorValue || statistics.livenessTicks % livenessRetryTicks == 0)
        // After healing, only the one write whose commit proves liveness is proposed.
        if healed ? livenessWritePending : roll(1000) < parameters.proposePerMille {
            let value = nextValue
            if submit({ $0.proposeWrite(value) }) {
                nextValue += 1
                statistics.writesAccepted += 1
                trace.add(8, value)
                if healed {
                    eventLog?("t\(now / SwarmParameters.stepsPerTick) liveness write \(value) accepted")
                }
            }
        }
        if !healed && roll(1000) < parameters.membershipChangePerMille { changeMembership() }
        if !healed && roll(1000) < parameters.readPerMille {
            let readID = nextReadID
            nextReadID += 1
            let knownCommitted = ids.filter { !down.contains($0) }.compactMap {
                nodes[$0]?.status.committedIndex
            }.max()
            checker.readRequested(readID, knownCommitted: knownCommitted ?? 0)
            if !submit({ $0.requestRead(readID) }) { checker.readRefused(readID) }
        }
    }

    /// Cycles the extra member through learner, voter and removed, as an operator would.
    private func changeMembership() {
        guard let extra = extraMember,
            let leader = ids.first(where: { !down.contains($0) && nodes[$0]?.status.role == .leader }),
            let node = nodes[leader], let membership = node.membership
        else { return }
        let change = SwarmParameters.nextMembershipChange(of: extra, in: membership)
        if node.proposeMembershipChange(change) {
            statistics.membershipChangesProposed += 1
            trace.add(11, UInt64(change.kind.rawValue))
            eventLog?("t\(now / SwarmParameters.stepsPerTick) propose \(change.kind) \(extra) at \(leader)")
        }
    }

    /// A client tries a random live member, then the leader it names.
    private func submit(_ request: (any SimulatedNode) -> Bool) -> Bool {
        let live = ids.filter { !down.contains($0) }
        guard !live.isEmpty, let first = nodes[live[roll(live.count)]] else { return false }
        if request(first) { return true }
        let hint = first.status.leader
        guard hint != noNode, hint != first.id, !down.contains(hint), let leader = nodes[hint] else {
            return false
        }
        return request(leader)
    }

    /// Ends the chaos: no more partitions, crashes or message loss; everyone restarts.
    private func heal() {
        healed = true
        group = [:]
        for id in ids.sorted() where down.contains(id) { handle(.restart(id)) }
        livenessFloorValue = nextValue
        trace.add(9)
    }
}

/// FNV-1a over 64-bit words: a fingerprint of a run's event sequence.
public struct TraceHash: Sendable, Hashable {
    public private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    public init() {}

    mutating func add(_ words: UInt64...) {
        for word in words {
            for shift in stride(from: 0, to: 64, by: 8) {
                value ^= (word >> UInt64(shift)) & 0xFF
                value &*= 0x100_0000_01B3
            }
        }
    }
}
