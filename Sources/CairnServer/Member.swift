import CairnCore
import CairnMVCC
import CairnStateMachine
import CairnStorage
import NIOCore
import NIOPosix

/// etcd's alarm types a member raises.
public enum MemberAlarm: Int, Hashable, Sendable {
    /// The store is over `--quota-backend-bytes`: growing writes are refused.
    case noSpace = 1
}

/// A single member's settings, with etcd's flag defaults.
public struct MemberConfiguration: Sendable {
    public var name: String
    /// etcd's `--data-dir`; the WAL, snapshots and identity live under
    /// `<dataDirectory>/member/`.
    public var dataDirectory: String
    /// The URLs this member tells clients to use (MemberList, Status).
    public var clientURLs: [String]
    /// etcd's `--max-request-bytes`: larger commands are refused.
    public var requestBytesMax: Int = 1_572_864
    /// etcd's `--max-txn-ops`.
    public var txnOperationsMax: Int = 128
    /// etcd's `--quota-backend-bytes` (0 = etcd's default of 2 GiB): puts and
    /// txns are refused with "database space exceeded" above it.
    public var quotaBackendBytes: Int = 0
    /// etcd's `--auto-compaction-mode`/`--auto-compaction-retention`; nil = off.
    public var autoCompaction: AutoCompaction?
    /// Applied entries between two snapshots (then old WAL segments go).
    public var snapshotEntriesInterval: UInt64 = Member.snapshotEntriesIntervalDefault

    public init(name: String, dataDirectory: String, clientURLs: [String]) {
        self.name = name
        self.dataDirectory = dataDirectory
        self.clientURLs = clientURLs
    }
}

/// One Cairn member without peers: the durable write path in one place.
///
/// Write path (the order is the durability argument):
/// 1. A request becomes a `Command` on the member's executor and waits in
///    `waiting` (bounded by `waitingWritesMax`: beyond it, "too many
///    requests").
/// 2. When no sync runs, every waiting command is appended to the WAL as
///    the next entries (one `write`, page cache only) and ONE `sync`
///    (fdatasync) starts on the I/O thread pool.
/// 3. While it runs, new requests accumulate in `waiting` (group commit).
/// 4. When the sync returns, the batch is applied in index order to the
///    `StateMachine` and each request is answered: a write is answered only
///    after the sync that covers it. Then the next batch starts (step 2).
/// 5. Every `snapshotEntriesInterval` applied entries a snapshot is saved,
///    a snapshot marker appended and synced, and WAL segments the oldest
///    retained snapshot covers are released.
///
/// Restart: latest snapshot (restored), then the WAL's later entries,
/// replayed in order; a torn tail the WAL cut is logged.
///
/// Properties:
/// 1. All mutable state (state machine, WAL, queues) is touched only on
///    `eventLoop`, a dedicated single thread, except `wal.sync()`, which
///    runs on the thread pool while `phase == .syncing`; the event loop does
///    not touch the WAL in that phase (the hop through the future orders
///    the accesses).
/// 2. `lastAppendedIndex >= stateMachine.appliedIndex`; both only grow.
/// 3. Reads are served from the applied state on `eventLoop`; everything
///    applied is durable, so a single member's reads are linearizable.
public final class Member: @unchecked Sendable {
    /// Applied entries between snapshots by default.
    public static let snapshotEntriesIntervalDefault: UInt64 = 10_000
    /// Writes that may wait for the next sync; beyond it "too many requests".
    public static let waitingWritesMax = 20_000
    /// The term every entry of a single member carries (Raft's first term).
    public static let term: UInt64 = 1
    /// The largest `requestBytesMax`: every command must fit one WAL record
    /// (frame overhead is far below the 1 KiB margin).
    public static let requestBytesLimit = WALOptions().recordBytesMax - 1024
    /// etcd's default backend quota when `--quota-backend-bytes` is 0.
    public static let quotaBackendBytesDefault = 2 * 1024 * 1024 * 1024

    enum Phase {
        case idle
        case syncing
        /// A storage failure: no write is accepted any more.
        case failed(String)
        case stopped
    }

    struct PendingWrite: Sendable {
        var command: Command
        var bytes: [UInt8]
        var promise: EventLoopPromise<ApplyResult>
    }

    /// Lets the WAL cross to the thread pool for `sync` (property 1).
    private final class WALHandle: @unchecked Sendable {
        let log: WriteAheadLog
        init(_ log: WriteAheadLog) { self.log = log }
    }

    public let configuration: MemberConfiguration
    public let memberID: MemberID
    public let clusterID: ClusterID
    /// The member's serial executor.
    public let eventLoop: any EventLoop
    private let loopGroup: MultiThreadedEventLoopGroup
    private let ioPool: NIOThreadPool
    private let wal: WALHandle
    private let snapshots: SnapshotStore
    var stateMachine: StateMachine
    /// Watchers of every watch stream, fed after each applied entry.
    var watchHub: WatchHub
    /// How each watch stream's responses leave the executor.
    var watchDeliveries: [WatchStreamID: WatchDelivery] = [:]
    var nextWatchStreamID: UInt64 = 1
    /// Raised alarms (member-local, not persisted: a restarted member raises
    /// NOSPACE again at its first write over quota).
    var alarms: Set<MemberAlarm> = []
    /// Group-commit figures, logged at shutdown: syncs done, entries they covered.
    var syncsCompleted = 0
    var entriesSynced = 0
    /// Revisions sampled for periodic auto-compaction.
    var revisionSamples = RevisionSamples()
    private var timers: [RepeatedTask] = []
    private var phase = Phase.idle
    private var waiting: [PendingWrite] = []
    private var lastAppendedIndex: UInt64
    private var nextRequestID: UInt64 = 1
    private var lastSnapshotIndex: UInt64
    let logLine: @Sendable (String) -> Void

    /// Opens (or creates) the data directory, recovers the state and
    /// starts the executor. Recovery runs before the member is shared.
    public init(configuration: MemberConfiguration, log: @escaping @Sendable (String) -> Void) throws {
        guard configuration.requestBytesMax <= Self.requestBytesLimit else {
            throw MemberError.requestBytesMaxTooLarge(limit: Self.requestBytesLimit)
        }
        self.configuration = configuration
        self.logLine = log
        let fileSystem = POSIXFileSystem()
        let memberDirectory = configuration.dataDirectory + "/member"
        _ = try fileSystem.createDirectory(configuration.dataDirectory)
        _ = try fileSystem.createDirectory(memberDirectory)
        let identity = try MemberIdentity.loadOrCreate(directory: memberDirectory, fileSystem: fileSystem)
        self.memberID = identity.member
        self.clusterID = identity.cluster
        let recovered = try Self.recover(
            memberDirectory: memberDirectory, fileSystem: fileSystem, configuration: configuration,
            leaseIDSeed: identity.cluster.rawValue, log: log)
        self.snapshots = recovered.snapshots
        self.wal = WALHandle(recovered.wal)
        self.stateMachine = recovered.stateMachine
        self.lastAppendedIndex = recovered.stateMachine.appliedIndex
        self.lastSnapshotIndex = recovered.snapshotIndex
        self.watchHub = WatchHub(revision: recovered.stateMachine.status.revision)
        self.loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.eventLoop = self.loopGroup.next()
        self.ioPool = NIOThreadPool(numberOfThreads: 1)
        self.ioPool.start()
        self.startTimers()
        self.startLeaseTimer()
        self.startAutoCompaction()
    }

    /// The restart order of CairnStorage: snapshot, then later WAL entries.
    private static func recover(
        memberDirectory: String, fileSystem: POSIXFileSystem, configuration: MemberConfiguration,
        leaseIDSeed: UInt64, log: @Sendable (String) -> Void
    ) throws -> (
        wal: WriteAheadLog, snapshots: SnapshotStore, stateMachine: StateMachine, snapshotIndex: UInt64
    ) {
        let snapshots = try SnapshotStore(directory: memberDirectory + "/snap", fileSystem: fileSystem)
        let now = Self.now()
        var stateMachine = StateMachine(
            config: StateMachine.Config(
                storeLimits: MVCCStore.Limits(txnOperationsMax: configuration.txnOperationsMax),
                lessor: Lessor.Config(idSeed: leaseIDSeed)))
        let loaded = try snapshots.loadLatest()
        if let loaded {
            for problem in loaded.skipped { log("skipped damaged snapshot \(problem)") }
            do {
                try stateMachine.restore(loaded.bytes, now: now)
            } catch {
                throw MemberError.snapshotUnusable("\(error)")
            }
            log("restored snapshot at index \(loaded.index)")
        }
        let (wal, recovery) = try WriteAheadLog.open(
            directory: memberDirectory + "/wal", fileSystem: fileSystem, snapshotIndex: loaded?.index)
        if let repair = recovery.tailRepair { log("WAL tail repaired: \(repair)") }
        var replayed = 0
        for entry in recovery.entries where entry.index > stateMachine.appliedIndex {
            _ = stateMachine.apply(index: entry.index, entry: entry.payload, now: now)
            replayed += 1
        }
        log(
            "replayed \(replayed) WAL entries; applied index \(stateMachine.appliedIndex), revision \(stateMachine.status.revision)"
        )
        // A single member is always the lease primary.
        stateMachine.promote(now: now)
        return (wal, snapshots, stateMachine, loaded?.index ?? 0)
    }

    /// Milliseconds of the monotonic clock, for lease expiries.
    static func now() -> MonotonicInstant {
        MonotonicInstant(milliseconds: Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000))
    }

    // MARK: writes

    /// Proposes a write; the future completes once it is durable and applied.
    public func propose(_ operation: Command.Operation) -> EventLoopFuture<ApplyResult> {
        self.eventLoop.flatSubmit { self.enqueue(operation) }
    }

    private func enqueue(_ operation: Command.Operation) -> EventLoopFuture<ApplyResult> {
        switch self.phase {
        case .failed(let cause): return self.eventLoop.makeFailedFuture(MemberError.storageFailed(cause))
        case .stopped: return self.eventLoop.makeFailedFuture(CairnError.stopped)
        case .idle, .syncing: break
        }
        guard self.waiting.count < Self.waitingWritesMax else {
            return self.eventLoop.makeFailedFuture(CairnError.tooManyRequests)
        }
        if self.exceedsQuota(operation) { return self.eventLoop.makeFailedFuture(CairnError.noSpace) }
        let command = Command(
            requester: RequestIdentity(member: self.memberID, id: self.nextRequestID), operation: operation)
        self.nextRequestID += 1
        let bytes = command.encoded()
        guard bytes.count <= self.configuration.requestBytesMax else {
            return self.eventLoop.makeFailedFuture(CairnError.requestTooLarge)
        }
        let promise = self.eventLoop.makePromise(of: ApplyResult.self)
        self.waiting.append(PendingWrite(command: command, bytes: bytes, promise: promise))
        if case .idle = self.phase { self.startBatch() }
        return promise.futureResult
    }

    /// etcd refuses writes that can grow the store once it is over quota,
    /// and keeps refusing them while the NOSPACE alarm is raised (until an
    /// `alarm disarm`), even after compaction.
    private func exceedsQuota(_ operation: Command.Operation) -> Bool {
        switch operation {
        case .put, .txn, .leaseGrant:
            if self.alarms.contains(.noSpace) { return true }
            let quota =
                self.configuration.quotaBackendBytes > 0
                ? self.configuration.quotaBackendBytes : Self.quotaBackendBytesDefault
            guard self.stateMachine.status.approximateSizeBytes > quota else { return false }
            self.alarms.insert(.noSpace)
            self.logLine(
                "NOSPACE alarm raised: size \(self.stateMachine.status.approximateSizeBytes) > quota \(quota)"
            )
            return true
        default:
            return false
        }
    }

    /// Raises (`true`) or clears an alarm and answers the alarms raised after.
    public func alarm(_ alarm: MemberAlarm?, raise: Bool) -> EventLoopFuture<[MemberAlarm]> {
        self.eventLoop.submit {
            if let alarm {
                if raise { self.alarms.insert(alarm) } else { self.alarms.remove(alarm) }
            }
            return self.alarms.sorted { $0.rawValue < $1.rawValue }
        }
    }

    /// Appends every waiting write and starts the one sync that covers them.
    private func startBatch() {
        let batch = self.waiting
        self.waiting.removeAll(keepingCapacity: true)
        let firstIndex = self.lastAppendedIndex + 1
        var records: [WALRecord] = []
        records.reserveCapacity(batch.count)
        for (offset, write) in batch.enumerated() {
            records.append(
                .entry(LogEntry(index: firstIndex + UInt64(offset), term: Self.term, payload: write.bytes)))
        }
        do {
            try self.wal.log.append(records)
        } catch {
            self.fail(cause: "\(error)", batch: batch)
            return
        }
        self.lastAppendedIndex += UInt64(batch.count)
        self.phase = .syncing
        let wal = self.wal
        self.ioPool.runIfActive(eventLoop: self.eventLoop) { try wal.log.sync() }.whenComplete { result in
            switch result {
            case .success: self.applyBatch(batch, firstIndex: firstIndex)
            case .failure(let error): self.fail(cause: "\(error)", batch: batch)
            }
        }
    }

    /// The batch is durable: apply it in order and answer every request.
    private func applyBatch(_ batch: [PendingWrite], firstIndex: UInt64) {
        self.syncsCompleted += 1
        self.entriesSynced += batch.count
        let now = Self.now()
        for (offset, write) in batch.enumerated() {
            let result = self.stateMachine.apply(
                index: firstIndex + UInt64(offset), command: write.command, now: now)
            if !result.events.isEmpty {
                self.watchHub.applied(events: result.events, revision: result.revision)
            }
            write.promise.succeed(result)
        }
        self.stepWatchers()
        if self.stateMachine.appliedIndex - self.lastSnapshotIndex
            >= self.configuration.snapshotEntriesInterval
        {
            self.saveSnapshot()
        }
        if case .failed = self.phase { return }
        self.phase = .idle
        if !self.waiting.isEmpty { self.startBatch() }
    }

    /// Saves a snapshot, records it in the WAL and releases covered segments.
    /// Runs on the executor between batches (no sync in flight).
    private func saveSnapshot() {
        let index = self.stateMachine.appliedIndex
        do {
            try self.snapshots.save(index: index, term: Self.term, bytes: self.stateMachine.snapshot())
            try self.wal.log.append([.snapshotMarker(SnapshotMarker(index: index, term: Self.term))])
            try self.wal.log.sync()
            if let oldest = try self.snapshots.oldestRetainedIndex() {
                let released = try self.wal.log.releaseSegments(upTo: oldest)
                if !released.isEmpty { self.logLine("released WAL segments \(released)") }
            }
            self.lastSnapshotIndex = index
        } catch {
            self.fail(cause: "snapshot at \(index): \(error)", batch: [])
        }
    }

    /// A storage failure: nothing more can be promised durable.
    private func fail(cause: String, batch: [PendingWrite]) {
        self.logLine("storage failed, refusing writes: \(cause)")
        self.phase = .failed(cause)
        let waiting = self.waiting
        self.waiting.removeAll()
        for write in batch + waiting { write.promise.fail(MemberError.storageFailed(cause)) }
    }

    // MARK: reads

    /// Runs `body` on the executor against the applied state.
    public func read<Result: Sendable>(
        _ body: @escaping @Sendable (StateMachine) throws -> Result
    ) -> EventLoopFuture<Result> {
        self.eventLoop.submit { try body(self.stateMachine) }
    }

    /// Keeps repeating timers so shutdown can cancel them (executor only).
    func appendTimers(_ tasks: [RepeatedTask]) { self.timers += tasks }

    // MARK: shutdown

    /// Stops accepting writes once the batch in flight is answered, then
    /// closes the WAL and the executor. Call after the RPC server drained.
    public func shutdown() async {
        while true {
            let done: Bool =
                (try? await self.eventLoop.submit { () -> Bool in
                    if case .syncing = self.phase { return false }
                    self.phase = .stopped
                    self.logLine(
                        "group commit: \(self.entriesSynced) entries in \(self.syncsCompleted) syncs")
                    for write in self.waiting { write.promise.fail(CairnError.stopped) }
                    self.waiting.removeAll()
                    try? self.wal.log.close()
                    for timer in self.timers { timer.cancel() }
                    self.timers.removeAll()
                    return true
                }.get()) ?? true
            if done { break }
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
        try? await self.ioPool.shutdownGracefully()
        try? await self.loopGroup.shutdownGracefully()
    }
}
