import ArgumentParser
import CairnRaft
import CairnSim

/// `cairn-sim`: runs seeded cluster simulations (swarm testing) or the Raft benchmark.
struct CairnSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-sim",
        abstract: "Deterministic simulation of Cairn Raft clusters.",
        subcommands: [Swarm.self, Bench.self],
        defaultSubcommand: Swarm.self
    )
}

/// Runs seeds; on failure prints the replay command and exits non-zero.
struct Swarm: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "swarm", abstract: "Run seeds (default).")

    @Option(help: "How many seeds to run, starting at --seed.") var seeds: Int = 1
    @Option(help: "The first seed.") var seed: UInt64 = 1
    @Option(help: "Cluster size (3 or 5).") var nodes: Int = 3
    @Option(help: "Chaos phase length in ticks.") var ticks: Int = 300
    @Option(help: "TEST ONLY: plant a bug (commit-previous-term, vote-without-log-check).")
    var unsafeFault: [String] = []
    @Flag(help: "Print every seed's parameters and statistics.") var verbose = false
    @Flag(help: "Print role changes, partitions and crashes as they happen.") var events = false
    @Flag(
        help:
            "Simulate whole members (CairnReplica with the state machine) and check the clients' history for linearizability."
    )
    var memberCore = false

    func validate() throws {
        guard nodes == 3 || nodes == 5 else { throw ValidationError("--nodes must be 3 or 5") }
        guard seeds > 0, ticks > 0 else { throw ValidationError("--seeds and --ticks must be positive") }
        for name in unsafeFault where SimulationRunner.fault(named: name) == nil {
            throw ValidationError("unknown fault \(name)")
        }
    }

    func run() throws {
        if memberCore { return try runMemberCore() }
        var passed = 0
        var failures: [String] = []
        for offset in 0..<UInt64(seeds) {
            var options = Simulation.Options(seed: seed &+ offset, nodeCount: nodes)
            options.chaosTicks = ticks
            options.faults = Set(unsafeFault.compactMap(SimulationRunner.fault(named:)))
            let outcome = SimulationRunner.run(options, eventLog: events ? { print($0) } : nil)
            if verbose || seeds == 1 {
                print("seed \(outcome.seed): \(outcome.violation ?? "ok") hash=\(outcome.traceHash)")
                print("  \(outcome.parameters)")
                print(
                    "  committed=\(outcome.committedIndex) reads=\(outcome.readsChecked) \(outcome.statistics)"
                )
            }
            if let violation = outcome.violation {
                print("FAIL seed \(outcome.seed): \(violation)")
                print("replay: \(SimulationRunner.replayCommand(options))")
                failures.append(violation)
            } else {
                passed += 1
            }
            if (offset + 1) % 100 == 0 { print("\(offset + 1)/\(seeds) seeds, \(failures.count) failed") }
        }
        print("\(passed) of \(seeds) seeds passed")
        if !failures.isEmpty { throw ExitCode.failure }
    }
}

extension Swarm {
    /// Seeds of `ReplicaSimulation`: each run twice (determinism), checked by
    /// the Raft checker every step, equal hashes, and linearizability.
    func runMemberCore() throws {
        var passed = 0
        for offset in 0..<UInt64(seeds) {
            var options = ReplicaSimulation.Options(seed: seed &+ offset)
            options.nodeCount = nodes
            options.chaosTicks = ticks
            let outcome = ReplicaSimulation.runTwice(options)
            if verbose || seeds == 1 {
                print(
                    "seed \(outcome.seed): \(outcome.violation ?? "ok") hash=\(outcome.traceHash) operations=\(outcome.operations)"
                )
            }
            if let violation = outcome.violation {
                print("FAIL seed \(outcome.seed): \(violation)")
                print(
                    "replay: cairn-sim --member-core --seed \(outcome.seed) --nodes \(nodes) --ticks \(ticks) --verbose"
                )
            } else {
                passed += 1
            }
            if (offset + 1) % 100 == 0 {
                print("\(offset + 1)/\(seeds) seeds, \(Int(offset) + 1 - passed) failed")
            }
        }
        print("\(passed) of \(seeds) member-core seeds passed")
        if passed < seeds { throw ExitCode.failure }
    }
}

/// Committed entries per second for a 3-member in-memory cluster with batching.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure Raft throughput (not a test).")

    @Option(help: "Entries to commit.") var entries: Int = 2_000_000
    @Option(help: "Proposals per batch.") var batch: Int = 1000
    @Option(help: "Payload bytes per entry.") var payloadBytes: Int = 16

    func validate() throws {
        guard entries > 0, batch > 0, payloadBytes >= 0 else {
            throw ValidationError("sizes must be positive")
        }
    }

    func run() throws {
        let benchmark = Benchmark()
        let clock = ContinuousClock()
        var committed = 0
        let elapsed = clock.measure {
            committed = benchmark.run(entries: entries, batch: batch, payloadBytes: payloadBytes)
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = Double(committed) / max(seconds, 1e-9)
        print("committed \(committed) entries (batch \(batch), \(payloadBytes) B) in \(seconds) s")
        print("throughput: \(Int(rate)) entries/s")
    }
}

CairnSimCommand.main()
