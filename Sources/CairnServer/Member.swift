import CairnCore
import CairnMVCC
import CairnMetrics
import CairnPeer
import CairnRPC
import CairnRaft
import CairnReplica
import CairnStateMachine
import CairnStorage
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Prometheus

/// A member's settings, with etcd's flag defaults.
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
    /// How the member joins or bootstraps its cluster, and its peer URLs.
    public var cluster: ClusterBootstrap
    /// Front-of-pipeline handlers for peer connections (TLS); nil = plaintext.
    public var peerChannelInitializer: PeerChannelInitializer?
    /// Client-role TLS for this member's calls to another member's
    /// `https://` client URL (lease keep-alives and membership changes a
    /// follower forwards to its leader); nil = such URLs are not dialled.
    public var clientForwardingTLS: RPCTLS?
    /// The Prometheus series this member keeps (etcd's names).
    public var metrics = MemberMetrics()

    public init(name: String, dataDirectory: String, clientURLs: [String], cluster: ClusterBootstrap? = nil) {
        self.name = name
        self.dataDirectory = dataDirectory
        self.clientURLs = clientURLs
        self.cluster = cluster ?? .single(name: name)
    }

    /// etcd's request timeout: 5 s plus two election timeouts ("request timed out").
    var requestTimeout: TimeAmount {
        .milliseconds(Int64(5_000 + 2 * self.cluster.electionTimeoutMilliseconds))
    }
}

/// One Cairn member: the shell around `CairnReplica` (real clock, disk,
/// sockets), on one serial executor.
///
/// Write path (the order is the durability argument; it lives in
/// `Replica.nextEffects`, the shell only performs it, see `drive()`):
/// 1. A request becomes a proposal to the replica with a request ID and
///    waits in `pendingRequests` (bounded by `pendingRequestsMax`; beyond it
///    "too many requests"; after `requestTimeout`, "request timed out").
/// 2. The replica hands over hard state and entries to persist. When no
///    persist runs, they are appended to the WAL and ONE fsync covers them,
///    on the I/O thread; requests arriving meanwhile wait inside Raft for
///    the next batch (group commit).
/// 3. Once durable, `persisted()`; the replica then releases messages to
///    peers, applies committed entries, and answers this member's requests.
/// 4. Snapshots of the state machine are serialized and saved on the I/O
///    pool (never on the executor); a WAL snapshot marker follows with the
///    next persist, and segments the oldest retained snapshot covers go.
///
/// Restart: latest snapshot, then the WAL's hard state and later entries,
/// handed to a new `Replica`; a torn tail the WAL cut is logged.
///
/// Properties:
/// 1. All mutable state (replica, WAL, queues) is touched only on
///    `eventLoop`, except while `persistInFlight`: then only the I/O job
///    touches the WAL (the future's hop orders the accesses).
/// 2. Nothing is sent to a peer or answered to a client before the
///    persistence it depends on completed (the replica's contract).
/// 3. Serializable reads run on the applied state on `eventLoop`;
///    linearizable reads wait for the replica's ReadIndex round.
public final class Member: @unchecked Sendable {
    /// Applied entries between snapshots by default: etcd's `--snapshot-count`
    /// default. A snapshot serializes the whole key space, so under a steady
    /// write load a smaller interval costs CPU per write in proportion to the
    /// number of keys (a profile of 1,024 clients putting into 100,000 keys
    /// spent a fifth of the leader's CPU on snapshots at 10,000).
    public static let snapshotEntriesIntervalDefault: UInt64 = 100_000
    /// Requests (writes and linearizable reads) that may wait for an answer;
    /// beyond it "too many requests".
    public static let pendingRequestsMax = 20_000
    /// The largest `requestBytesMax`: every command must fit one WAL record
    /// (frame overhead is far below the 1 KiB margin).
    public static let requestBytesLimit = WALOptions().recordBytesMax - 1024
    /// etcd's default backend quota when `--quota-backend-bytes` is 0.
    public static let quotaBackendBytesDefault = 2 * 1024 * 1024 * 1024

    enum Phase {
        case running
        /// A storage failure: no write is accepted any more.
        case failed(String)
        case stopped
    }

    /// A client request waiting for the replica's answer.
    struct PendingRequest {
        var promise: EventLoopPromise<ReplicaResponse.Outcome>
        var deadline: NIODeadline
    }

    /// A request waiting for a leader before it can be proposed.
    struct ParkedRequest {
        var submit: (UInt64) throws -> Void
        var promise: EventLoopPromise<ReplicaResponse.Outcome>
        var deadline: NIODeadline
    }

    /// A linearizable read waiting for its read index to be applied.
    struct PendingRead {
        var run: (StateMachine) -> Void
        var fail: (any Error) -> Void
        var deadline: NIODeadline
    }

    /// Lets the WAL and snapshot store cross to the I/O pool (property 1).
    final class StorageHandle: @unchecked Sendable {
        let log: WriteAheadLog
        let snapshots: SnapshotStore
        init(log: WriteAheadLog, snapshots: SnapshotStore) {
            self.log = log
            self.snapshots = snapshots
        }
    }

    public let configuration: MemberConfiguration
    public let memberID: MemberID
    public let clusterID: ClusterID
    /// The member's serial executor.
    public let eventLoop: any EventLoop
    let loopGroup: MultiThreadedEventLoopGroup
    let ioPool: NIOThreadPool
    /// Set when `shutdown()` begins: pollers of the member's state stop
    /// instead of scheduling work on an event loop about to shut down.
    let shuttingDown = NIOLockedValueBox(false)
    let storage: StorageHandle
    /// The member core; touched only on `eventLoop`.
    let replica: Replica
    /// Peer connections; set once `startPeers` ran.
    var transport: PeerTransport?
    /// A client of the leader for forwarded keep-alives and membership calls.
    var forwardingClient: (member: MemberID, client: RPCClient)?
    /// The term, readable from any thread for response headers.
    let termBox = NIOLockedValueBox<UInt64>(0)
    /// Whether this member's name and client URLs are in the applied member list.
    var attributesPublished = false
    var publishingAttributes = false
    /// The peers the transport was last pointed at.
    var connectedPeers: [UInt64: PeerURL] = [:]
    /// Watchers of every watch stream, fed after each applied entry.
    var watchHub: WatchHub
    /// How each watch stream's responses leave the executor.
    var watchDeliveries: [WatchStreamID: WatchDelivery] = [:]
    var nextWatchStreamID: UInt64 = 1
    /// Group-commit figures, logged at shutdown: syncs done, entries they covered.
    var syncsCompleted = 0
    var entriesSynced = 0
    /// The applied index at the last heap trim (`MemberMemory.swift`).
    var heapTrimmedAt: UInt64 = 0
    /// Revisions sampled for periodic auto-compaction.
    var revisionSamples = RevisionSamples()
    var timers: [RepeatedTask] = []
    var phase = Phase.running
    var persistInFlight = false
    /// `flushSnapshotMarkers` owns the WAL; the replica's effects wait.
    var markerFlushInFlight = false
    /// Defragment calls waiting for their snapshot's segments to go.
    var defragmentWaiters: [(index: UInt64, promise: EventLoopPromise<Void>)] = []
    var snapshotSaveInFlight = false
    /// Markers of snapshots saved since the last persist (appended with the next one).
    var snapshotMarkers: [SnapshotMarker] = []
    var pendingRequests: [UInt64: PendingRequest] = [:]
    var pendingReads: [UInt64: PendingRead] = [:]
    /// Requests made while no leader was known (bounded with the others).
    var parkedRequests: [ParkedRequest] = []
    /// Linearizable reads refused for want of a leader, asked again later.
    var parkedReads: [UInt64] = []
    var nextRequestID: UInt64 = 1
    /// Heartbeat round trips to peers while leading (metrics only).
    var peerRoundTrips = PeerRoundTrips()
    var peerRoundTripHistograms: [UInt64: ValueHistogram] = [:]
    /// The leader the last soft state named (leader changes seen).
    var lastSoftStateLeader: UInt64 = 0
    /// Set when the replica reported this member removed from the cluster.
    var removedFromCluster = false
    /// Told, on the executor, every applied entry's effects (the auth shell
    /// registers replicated simple tokens); registered from any thread.
    let appliedEffectObservers = NIOLockedValueBox<[@Sendable ([ApplyResult.Effect]) -> Void]>([])
    /// Where log records go (see `MemberLogSink`).
    let logSink: MemberLogSink

    /// The current Raft term (response headers; any thread).
    public var raftTerm: UInt64 { self.termBox.withLockedValue { $0 } }

    /// The applied state (a value: readers get a consistent copy).
    var stateMachine: StateMachine { self.replica.stateMachine }

    /// Opens (or creates) the data directory, recovers or bootstraps the
    /// state and starts the executor. Peers start with `startPeers`.
    public init(configuration: MemberConfiguration, log: @escaping MemberLogSink) throws {
        guard configuration.requestBytesMax <= Self.requestBytesLimit else {
            throw MemberError.requestBytesMaxTooLarge(limit: Self.requestBytesLimit)
        }
        self.configuration = configuration
        self.logSink = log
        let opened = try MemberRecovery.open(configuration: configuration) { line in log(.info, line, [:]) }
        self.memberID = opened.identity.member
        self.clusterID = opened.identity.cluster
        self.storage = StorageHandle(log: opened.wal, snapshots: opened.snapshots)
        self.replica = opened.replica
        self.watchHub = WatchHub(revision: opened.replica.stateMachine.status.revision)
        self.loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.eventLoop = self.loopGroup.next()
        self.ioPool = NIOThreadPool(numberOfThreads: 2)
        self.ioPool.start()
        self.startTimers()
        self.startReplicaTimers()
        self.startHeapTrims()
        self.startAutoCompaction()
    }

    /// Milliseconds of the monotonic clock, for lease expiries.
    static func now() -> MonotonicInstant {
        MonotonicInstant(milliseconds: Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000))
    }

    // MARK: writes

    /// Proposes a write; the future completes once it is applied here.
    public func propose(_ operation: Command.Operation) -> EventLoopFuture<ApplyResult> {
        self.eventLoop.flatSubmit { self.proposeOnExecutor(operation) }
    }

    /// `propose` for a caller already on `eventLoop` (a write whose
    /// authorization just ran there): no second trip through the loop's
    /// task queue.
    func proposeOnExecutor(_ operation: Command.Operation) -> EventLoopFuture<ApplyResult> {
        self.eventLoop.preconditionInEventLoop()
        if self.exceedsQuota(operation) { return self.eventLoop.makeFailedFuture(CairnError.noSpace) }
        let command = Command(
            requester: RequestIdentity(member: self.memberID, id: self.nextRequestID), operation: operation)
        guard command.encoded().count <= self.configuration.requestBytesMax else {
            return self.eventLoop.makeFailedFuture(CairnError.requestTooLarge)
        }
        return self.request { requestID in try self.replica.propose(operation, requestID: requestID) }
            .flatMapThrowing { outcome in
                guard case .applied(let result) = outcome else {
                    throw RPCStatusError.unexpected("\(outcome)")
                }
                return result
            }
    }

    /// etcd refuses writes that can grow the store once it is over quota,
    /// and keeps refusing them while any member's NOSPACE alarm is raised
    /// (until an `alarm disarm`), even after compaction. Like etcd's quota
    /// check, each refusal over quota proposes the alarm (idempotent) until
    /// it is applied.
    private func exceedsQuota(_ operation: Command.Operation) -> Bool {
        switch operation {
        case .put, .txn, .leaseGrant:
            if self.stateMachine.alarms.isRaised(.noSpace) { return true }
            let quota =
                self.configuration.quotaBackendBytes > 0
                ? self.configuration.quotaBackendBytes : Self.quotaBackendBytesDefault
            guard self.stateMachine.status.approximateSizeBytes > quota else { return false }
            self.logLine(
                "raising NOSPACE alarm: size \(self.stateMachine.status.approximateSizeBytes) > quota \(quota)",
                level: .warning)
            self.alarm(AlarmMember(member: self.memberID, type: .noSpace), raise: true).whenFailure { error in
                self.logLine("raising NOSPACE alarm failed: \(error)", level: .error)
            }
            return true
        default:
            return false
        }
    }

    /// Proposes raising (`true`) or clearing an alarm. Alarms are
    /// replicated, so the answer (the alarms changed) comes once applied.
    public func alarm(_ alarm: AlarmMember, raise: Bool) -> EventLoopFuture<ApplyResult> {
        self.propose(.alarm(AlarmChange(raise ? .activate : .deactivate, alarm)))
    }

    // MARK: reads

    /// Runs `body` on the executor against the applied state (serializable).
    public func read<Result: Sendable>(
        _ body: @escaping @Sendable (StateMachine) throws -> Result
    ) -> EventLoopFuture<Result> {
        self.eventLoop.submit { try body(self.stateMachine) }
    }

    /// Runs `body` once the replica confirmed a read index (a heartbeat
    /// quorum of the leader) and applied up to it: a linearizable read.
    /// Concurrent reads share one ReadIndex round.
    public func linearizableRead<Result: Sendable>(
        _ body: @escaping @Sendable (StateMachine) throws -> Result
    ) -> EventLoopFuture<Result> {
        self.eventLoop.flatSubmit {
            let promise = self.eventLoop.makePromise(of: Result.self)
            if case .failed(let cause) = self.phase {
                promise.fail(MemberError.storageFailed(cause))
                return promise.futureResult
            }
            guard self.pendingReads.count + self.pendingRequests.count < Self.pendingRequestsMax else {
                promise.fail(CairnError.tooManyRequests)
                return promise.futureResult
            }
            let readID = self.nextRequestID
            self.nextRequestID += 1
            self.pendingReads[readID] = PendingRead(
                run: { stateMachine in
                    do {
                        promise.succeed(try body(stateMachine))
                    } catch {
                        promise.fail(error)
                    }
                },
                fail: { error in promise.fail(error) },
                deadline: .now() + self.configuration.requestTimeout)
            do {
                try self.replica.read(readID: readID)
            } catch ReplicaError.notLeader(leader: nil), ReplicaError.raft(.notLeader(leader: noNode)) {
                self.parkedReads.append(readID)
            } catch {
                self.pendingReads.removeValue(forKey: readID)
                promise.fail(Self.cairnError(error))
            }
            self.drive()
            return promise.futureResult
        }
    }

    /// Keeps repeating timers so shutdown can cancel them (executor only).
    func appendTimers(_ tasks: [RepeatedTask]) { self.timers += tasks }

    /// Returns once this member's name and client URLs are in the applied
    /// member list; etcd serves clients only from then on, so MemberList
    /// never shows a serving member "unstarted".
    public func waitUntilReady() async {
        while !self.shuttingDown.withLockedValue({ $0 }),
            !((try? await self.eventLoop.submit { self.attributesPublished || self.removedFromCluster }
                .get()) ?? true)
        {
            try? await Task.sleep(nanoseconds: 5_000_000)
        }
    }

    /// Returns once the cluster removed this member; etcd then stops the
    /// member's process ("the member has been permanently removed").
    public func waitUntilRemoved() async {
        while !self.shuttingDown.withLockedValue({ $0 }),
            !((try? await self.eventLoop.submit { self.removedFromCluster }.get()) ?? true)
        {
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
    }

    // MARK: shutdown

    /// A leader hands leadership to another voter before it stops (etcd
    /// does on SIGTERM), so the cluster does not wait an election timeout.
    public func handOverLeadership() async {
        let target: MemberID? = try? await self.eventLoop.submit { () -> MemberID? in
            guard self.replica.role == .leader else { return nil }
            let others = self.replica.confState.voters.filter { $0 != self.memberID.rawValue }.sorted()
            guard let first = others.first else { return nil }
            try? self.replica.transferLeadership(to: MemberID(first))
            self.drive()
            return MemberID(first)
        }.get()
        guard let target else { return }
        self.logLine("handing leadership over to \(target) before stopping")
        let deadline =
            NIODeadline.now() + .milliseconds(Int64(self.configuration.cluster.electionTimeoutMilliseconds))
        while NIODeadline.now() < deadline {
            let leading = (try? await self.eventLoop.submit { self.replica.role == .leader }.get()) ?? false
            if !leading { return }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    /// Stops accepting requests once the persist in flight is done, then
    /// closes the peers, the WAL and the executor. Call after the RPC
    /// server drained.
    public func shutdown() async {
        self.shuttingDown.withLockedValue { $0 = true }
        while true {
            let done: Bool =
                (try? await self.eventLoop.submit { () -> Bool in
                    if self.persistInFlight || self.markerFlushInFlight { return false }
                    self.phase = .stopped
                    self.logLine(
                        "group commit: \(self.entriesSynced) entries in \(self.syncsCompleted) syncs")
                    self.failPending(CairnError.stopped)
                    for timer in self.timers { timer.cancel() }
                    self.timers.removeAll()
                    return true
                }.get()) ?? true
            if done { break }
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
        if let transport = try? await self.eventLoop.submit({ self.transport }).get() {
            await transport.shutdown()
        }
        try? await self.ioPool.shutdownGracefully()
        try? await self.eventLoop.submit { try? self.storage.log.close() }.get()
        try? await self.loopGroup.shutdownGracefully()
    }
}

/// A replica answer the services did not expect (a programming error
/// surfaced as an internal status, never a crash).
enum RPCStatusError: Error, CustomStringConvertible {
    case unexpected(String)
    var description: String {
        switch self {
        case .unexpected(let what): "unexpected replica answer \(what)"
        }
    }
}
