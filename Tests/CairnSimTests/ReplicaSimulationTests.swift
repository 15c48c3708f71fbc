import CairnCore
import CairnRaft
import CairnReplica
import CairnStateMachine
import Testing

@testable import CairnSim

/// The whole member core in the simulator: Raft, the real state machine, snapshots,
/// crashes, and simulated clients whose history must be linearizable.
@Suite struct ReplicaSimulationTests {
    /// The CI seed budget: a few seconds in a debug build.
    static let seeds: ClosedRange<UInt64> = 1...12

    static func run(_ seed: UInt64, nodeCount: Int = 3) -> (violation: String?, simulation: ReplicaSimulation)
    {
        var options = ReplicaSimulation.Options(seed: seed)
        options.nodeCount = nodeCount
        let simulation = ReplicaSimulation(options: options)
        return (simulation.run(), simulation)
    }

    @Test func seedsKeepEveryInvariantAndALinearizableHistory() {
        var completed = 0
        var installs = 0
        var crashes = 0
        var churn = 0
        var unsyncedLosses = 0
        for seed in Self.seeds {
            let (violation, simulation) = Self.run(seed, nodeCount: seed % 4 == 0 ? 5 : 3)
            #expect(
                violation == nil,
                "\(violation ?? "") [\(simulation.parameters)] replay: \(ReplicaSimulation.replayDescription(simulation.options))"
            )
            completed += simulation.statistics.operationsCompleted
            installs += simulation.statistics.snapshotsInstalled
            crashes += simulation.statistics.crashes
            churn += simulation.statistics.membershipChanges
            unsyncedLosses += simulation.statistics.unsyncedLosses
        }
        // The budget must exercise what it claims to.
        #expect(completed > 200)
        #expect(crashes > 0)
        #expect(installs > 0)
        #expect(churn > 0)
        #expect(unsyncedLosses > 0)
    }

    @Test func theSameSeedGivesTheSameTraceAndHistory() {
        #expect(ReplicaSimulation.runTwice(ReplicaSimulation.Options(seed: 5)).violation == nil)
        let first = Self.run(5).simulation
        let second = Self.run(5).simulation
        #expect(first.trace == second.trace)
        #expect(first.history == second.history)
        #expect(Self.run(6).simulation.trace != first.trace)
    }

    @Test func theHistoryHoldsEveryKindOfOperationAndIndeterminateOnes() {
        let simulation = Self.run(3).simulation
        let history = simulation.history
        #expect(history.contains { if case .get = $0.input { $0.output != nil } else { false } })
        #expect(history.contains { if case .put = $0.input { $0.output != nil } else { false } })
        #expect(history.contains { $0.output == .compareAndSwap(succeeded: true) })
        #expect(history.contains { $0.output == .compareAndSwap(succeeded: false) })
    }
}

/// The history check is not vacuous: serving gets from a member's local state (no ReadIndex
/// round) yields stale reads under partitions and lagging members, and the seeds find them.
@Suite struct ReplicaSimulationPlantedBugTests {
    @Test func servingGetsLocallyIsFoundNotLinearizable() {
        var found = 0
        for seed in ReplicaSimulationTests.seeds {
            var options = ReplicaSimulation.Options(seed: seed)
            options.unsafeServeGetsLocally = true
            if let violation = ReplicaSimulation(options: options).run(),
                violation.contains("not linearizable")
            {
                found += 1
            }
        }
        #expect(found > 0)
    }
}

/// The member core also runs in the Raft simulator (`Simulation`) through `SimulatedNode`:
/// the register workload, ReadIndex reads and membership churn through the member list.
@Suite struct ReplicaInRaftSimulationTests {
    static func factory() -> Simulation.NodeFactory {
        { id, voters, parameters, seed in
            var config = ReplicaConfig(memberID: MemberID(id), randomSeed: seed)
            config.raft.preVote = parameters.preVote
            config.raft.checkQuorum = parameters.checkQuorum
            config.raft.heartbeatIntervalTicks = parameters.heartbeatIntervalTicks
            config.raft.messageBytesMax = parameters.messageBytesMax
            config.raft.inflightMessagesMax = parameters.inflightMessagesMax
            config.raft.uncommittedBytesMax = parameters.uncommittedBytesMax * 8
            // The register checker needs a digest a real state machine does not have, so
            // snapshots (and their installs) are exercised by `ReplicaSimulation` instead.
            config.snapshotEntriesInterval = 0
            let records = voters.sorted().map {
                MemberRecord(id: MemberID($0), name: "m\($0)", peerURLs: ["sim://\($0)"])
            }
            let recovered = voters.contains(id) ? Bootstrap.newCluster(members: records) : RecoveredState()
            guard let node = try? ReplicaSimNode(config: config, recovered: recovered) else {
                preconditionFailure("bootstrap state cannot be corrupt")
            }
            return node
        }
    }

    @Test func seedsKeepEveryRaftInvariantWithTheWholeMemberCore() {
        var churned = 0
        var reads = 0
        for seed: UInt64 in 1...10 {
            let simulation = Simulation(options: Simulation.Options(seed: seed), factory: Self.factory())
            let violation = simulation.run()
            #expect(violation == nil, "seed \(seed): \(violation ?? "") [\(simulation.parameters)]")
            churned += simulation.statistics.membershipChangesProposed
            reads += simulation.checker.readsChecked
        }
        #expect(reads > 0)
        #expect(churned > 0)
    }
}
