import CairnStorage
import Testing

/// Random operation sequences (appends with overwrites, hard states,
/// snapshot markers, syncs, releases, clean reopens and crashes with torn
/// tails) against a reference model of the log. After every crash the
/// recovered log must equal the model's log after some prefix of the
/// records that includes every synced one.
@Suite struct WALModelTests {
    /// The reference: the obvious, slow reading of the record semantics.
    struct ReferenceLog: Equatable {
        var hardState: HardState?
        var snapshot: SnapshotMarker?
        var entries: [LogEntry] = []

        init(_ records: ArraySlice<WALRecord>) {
            for record in records {
                switch record {
                case .entry(let entry):
                    entries.removeAll { $0.index >= entry.index }
                    entries.append(entry)
                case .hardState(let state):
                    hardState = state
                case .snapshotMarker(let marker):
                    snapshot = marker
                    entries.removeAll { $0.index <= marker.index }
                }
            }
        }

        func matches(_ recovery: WALRecovery) -> Bool {
            recovery.hardState == hardState && recovery.snapshot == snapshot && recovery.entries == entries
        }
    }

    struct Generator {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var value = state
            value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
            value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((value ^ (value >> 31)) % UInt64(bound))
        }
    }

    /// A record valid for the model's current log.
    static func randomRecord(_ model: ReferenceLog, term: UInt64, _ random: inout Generator) -> WALRecord {
        let floor = (model.snapshot?.index ?? 0) + 1
        let choice = random.next(100)
        if choice < 8 {
            return .hardState(
                HardState(term: term, vote: UInt64(random.next(3)), commit: UInt64(random.next(50))))
        }
        if choice < 14, let last = model.entries.last {
            let index = UInt64(random.next(Int(last.index - floor + 1))) + floor
            return .snapshotMarker(SnapshotMarker(index: index, term: term))
        }
        var index = model.entries.last.map { $0.index + 1 } ?? floor
        if choice < 24, let first = model.entries.first {
            index = first.index + UInt64(random.next(Int(index - first.index) + 1))
        }
        return .entry(makeEntry(index, term: term, payloadBytes: random.next(120)))
    }

    @Test(arguments: 0..<24)
    func randomHistoriesRecoverASyncedPrefix(seed: Int) throws {
        let counts = try runHistory(seed: seed, faults: false)
        #expect(counts.crashes > 0)
    }

    /// The same with random failed fsyncs and torn writes: after each, the
    /// member dies and restarts, and still loses nothing it synced.
    @Test(arguments: 0..<16)
    func randomHistoriesWithFaultsRecoverASyncedPrefix(seed: Int) throws {
        let counts = try runHistory(seed: 1000 + seed, faults: true)
        #expect(counts.faults > 0)
    }

    /// The histories do reach the rarer paths.
    @Test func historiesReleaseSegments() throws {
        var released = 0
        for seed in 100..<108 { released += try runHistory(seed: seed, faults: false).released }
        #expect(released > 0)
    }

    /// Runs one seeded history; returns how many crashes, injected faults
    /// and released segments it went through.
    private func runHistory(seed: Int, faults: Bool) throws -> (crashes: Int, faults: Int, released: Int) {
        let run = try HistoryRun(seed: seed, faults: faults)
        for _ in 0..<150 {
            guard try run.step() else { break }
        }
        return (run.crashes, run.injected, run.released)
    }
}

/// One seeded history against one simulated disk, with its model.
private final class HistoryRun {
    let seed: Int
    let faults: Bool
    let preallocate: Bool
    let disk: SimulatedFileSystem
    let rates: SimulatedFileSystem.FaultRates
    var random: WALModelTests.Generator
    var log: WriteAheadLog
    var records: [WALRecord] = []
    var synced = 0
    var term: UInt64 = 1
    var crashes = 0
    var injected = 0
    var released = 0

    init(seed: Int, faults: Bool) throws {
        self.seed = seed
        self.faults = faults
        // Odd seeds run with preallocated segments.
        self.preallocate = !seed.isMultiple(of: 2)
        random = WALModelTests.Generator(state: UInt64(seed))
        disk = try makeSimulatedDisk(seed: UInt64(seed))
        rates = SimulatedFileSystem.FaultRates(
            syncFailuresPerMillion: faults ? 30_000 : 0, tornAppendsPerMillion: faults ? 30_000 : 0)
        log = try openWAL(disk, segmentBytesMax: 700, preallocate: preallocate).log
        disk.faultRates = rates
    }

    /// One random operation; false when the history must stop (a failure
    /// was recorded).
    func step() throws -> Bool {
        do {
            switch random.next(100) {
            case 0..<60:
                var batch: [WALRecord] = []
                for _ in 0..<(1 + random.next(5)) {
                    let model = WALModelTests.ReferenceLog(records[...] + batch[...])
                    batch.append(WALModelTests.randomRecord(model, term: term, &random))
                }
                records += batch
                try log.append(batch)
            case 60..<80:
                try log.sync()
                synced = records.count
            case 80..<85:
                if let snapshot = log.snapshot, synced == records.count {
                    released += try log.releaseSegments(upTo: snapshot.index).count
                }
            case 85..<90:
                try log.close()
                let recovery = try reopen()
                #expect(
                    WALModelTests.ReferenceLog(records[...]).matches(recovery), "clean reopen, seed \(seed)")
                synced = records.count
            default:
                return try crashAndRecover()
            }
        } catch let error as StorageError where faults {
            // An injected fault: the WAL refuses further work and the member
            // restarts.
            guard case .failed = log.state else {
                Issue.record("seed \(seed): \(error) without a failed state")
                return false
            }
            injected += 1
            return try crashAndRecover()
        }
        return true
    }

    /// Reopens with faults paused (a restart's own I/O is not under test).
    private func reopen() throws -> WALRecovery {
        disk.faultRates = .init()
        defer { disk.faultRates = rates }
        let (reopened, recovery) = try openWAL(disk, segmentBytesMax: 700, preallocate: preallocate)
        log = reopened
        return recovery
    }

    /// Power cut and restart; false when the recovery matches no prefix
    /// that holds every synced record.
    private func crashAndRecover() throws -> Bool {
        term += 1
        crashes += 1
        disk.crash(tornTails: random.next(2) == 0 ? .seeded : .seededZeroFilled)
        let recovery = try reopen()
        let kept = (synced...records.count).first {
            WALModelTests.ReferenceLog(records[..<$0]).matches(recovery)
        }
        guard let kept else {
            Issue.record("seed \(seed): recovery matches no prefix of \(synced)...\(records.count)")
            return false
        }
        records.removeLast(records.count - kept)
        synced = kept
        return true
    }
}
