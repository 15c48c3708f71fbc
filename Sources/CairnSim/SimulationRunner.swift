import CairnRaft

/// Runs seeds the way CI and `cairn-sim` do: each seed twice, comparing trace hashes, so a
/// nondeterministic core (or simulator) is itself a failure.
public enum SimulationRunner {
    /// The outcome of one seed.
    public struct Outcome: Sendable {
        public var seed: UInt64
        public var violation: String?
        public var traceHash: UInt64
        public var parameters: SwarmParameters
        public var statistics: Simulation.Statistics
        public var committedIndex: UInt64
        public var readsChecked: Int
    }

    public static func run(
        _ options: Simulation.Options, checkDeterminism: Bool = true, eventLog: ((String) -> Void)? = nil
    ) -> Outcome {
        let first = Simulation(options: options)
        first.eventLog = eventLog
        var violation = first.run()
        if checkDeterminism {
            let second = Simulation(options: options)
            let secondViolation = second.run()
            if violation == nil && (second.trace != first.trace || secondViolation != nil) {
                violation = "nondeterminism: the same seed produced two different traces"
            }
        }
        return Outcome(
            seed: options.seed, violation: violation, traceHash: first.trace.value,
            parameters: first.parameters,
            statistics: first.statistics, committedIndex: first.checker.referenceLastIndex,
            readsChecked: first.checker.readsChecked)
    }

    /// The one-line command that replays a seed.
    public static func replayCommand(_ options: Simulation.Options) -> String {
        var command = "swift run cairn-sim --seed \(options.seed) --nodes \(options.nodeCount)"
        if options.chaosTicks != Simulation.Options(seed: 0).chaosTicks {
            command += " --ticks \(options.chaosTicks)"
        }
        for fault in options.faults.map(faultName).sorted() { command += " --unsafe-fault \(fault)" }
        return command
    }

    public static func faultName(_ fault: UnsafeTestingFault) -> String {
        switch fault {
        case .commitPreviousTermByCounting: return "commit-previous-term"
        case .voteWithoutLogCheck: return "vote-without-log-check"
        }
    }

    public static func fault(named name: String) -> UnsafeTestingFault? {
        switch name {
        case "commit-previous-term": return .commitPreviousTermByCounting
        case "vote-without-log-check": return .voteWithoutLogCheck
        default: return nil
        }
    }
}
