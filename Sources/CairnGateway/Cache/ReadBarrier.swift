/// Decides, for each read that could be served from a `PrefixCache`, whether
/// it is served locally, waits, or is forwarded upstream; and shares one
/// leader round trip (the read barrier) among all linearizable reads waiting
/// at that moment. A plain synchronous state machine: the lead calls its
/// event methods from one event loop and performs the returned `Action`s
/// (send the barrier Range, ask the watch coalescer for progress, answer from
/// the cache, forward).
///
/// Why a linearizable read may not join a barrier already in flight: a
/// barrier is a `count_only` linearizable Range on the leader, whose header
/// revision B is at least every revision committed before the leader took
/// its read index. A barrier sent *before* the read arrived may have taken
/// that index before a write that then completed, and was acknowledged to
/// some client, before the read arrived; serving the read at B would then
/// miss a write that precedes it in real time. Only a barrier sent after the
/// read arrived proves B ≥ every write completed before the read began. So a
/// read arriving while barrier g is in flight waits for barrier g + 1, which
/// is sent when g finishes (one barrier in flight at a time; every read that
/// arrived during g shares g + 1). A barrier the lead has been told to start
/// but has not yet sent (`barrierSent` not yet called) can still be joined:
/// a read that arrives before the request leaves certainly precedes it, so a
/// lead that sends at the end of its event-loop turn lets every read of that
/// turn share one round trip.
///
/// Why serving at P ≥ B is linearizable: the cache holds its prefix exactly
/// at P, P was current upstream at some moment no earlier than B's read
/// index (P ≥ B) and no later than the answer (P was observed before it).
///
/// Invariants:
/// 1. At most one barrier is in flight; waiters of barrier g + 1 exist only
///    while g is in flight and sent, and g + 1 starts as soon as g ends.
/// 2. At most `limits.waitersMax` reads wait; a read beyond it is forwarded
///    at once (`.waitersFull`).
/// 3. Every waiting read ends with exactly one `.serve` or `.forward`, no
///    later than its deadline (arrival + `limits.waitMax`) once `tick` runs.
/// 4. `.serve` is emitted only when the cache's known revision is at least
///    the read's target: the barrier revision (linearizable) and the
///    session's floor (both kinds).
/// 5. A read waits only for a barrier sent after it arrived.
/// 6. `waiters` is in arrival order, so (time being monotonic and `waitMax`
///    fixed) in deadline order too.
public struct ReadBarrier: Sendable {
    /// A read admitted by the barrier; the lead maps it to its request.
    public struct ReadID: Hashable, Comparable, Sendable {
        public let rawValue: UInt64
        public static func < (lhs: ReadID, rhs: ReadID) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// One barrier round trip; its completion must carry the same ID.
    public struct BarrierID: Hashable, Sendable {
        public let rawValue: UInt64
    }

    /// The lead's name for one `PrefixCache`.
    public struct CacheID: Hashable, Sendable {
        public let rawValue: Int
        public init(_ rawValue: Int) { self.rawValue = rawValue }
    }

    public struct Limits: Sendable {
        /// Reads waiting (for a barrier or for their cache) at most.
        public var waitersMax: Int
        /// How long a read may wait in total before it is forwarded.
        public var waitMax: Duration
        /// A barrier unanswered for this long counts as failed.
        public var barrierTimeout: Duration
        /// Progress is asked of one cache's watch at most this often.
        public var progressRequestInterval: Duration

        public init(
            waitersMax: Int = 10_000, waitMax: Duration = .milliseconds(100),
            barrierTimeout: Duration = .seconds(1), progressRequestInterval: Duration = .milliseconds(10)
        ) {
            self.waitersMax = waitersMax
            self.waitMax = waitMax
            self.barrierTimeout = barrierTimeout
            self.progressRequestInterval = progressRequestInterval
        }
    }

    /// Why a read goes upstream instead of to the cache.
    public enum ForwardReason: Equatable, Sendable {
        case waitersFull
        case barrierFailed
        case timedOut
        case cacheUnusable
    }

    /// What the lead must do.
    public enum Action: Equatable, Sendable {
        /// Send one `count_only` linearizable Range to the leader, calling
        /// `barrierSent` right before it leaves (reads admitted until then
        /// share it); report its header revision with `barrierCompleted` or
        /// a failure with `barrierFailed`.
        case startBarrier(BarrierID)
        /// Ask the cache's watch for a progress notification (RequestProgress).
        case requestProgress(CacheID)
        /// Answer the read from its cache now (if the cache refuses, forward).
        case serve(ReadID)
        case forward(ReadID, ForwardReason)
    }

    enum Phase: Equatable {
        case awaitingBarrier(UInt64)
        case catchingUp(target: Int64)
    }

    struct Waiter {
        let id: ReadID
        let cache: CacheID
        let floor: Int64
        let deadline: GatewayInstant
        var phase: Phase
    }

    public let limits: Limits
    var nextReadNumber: UInt64 = 1
    var nextBarrierNumber: UInt64 = 1
    var inFlight: (number: UInt64, deadline: GatewayInstant, sent: Bool)?
    /// Waiting reads in arrival order.
    var waiters: [Waiter] = []
    var knownRevisions: [CacheID: Int64] = [:]
    var lastProgressRequests: [CacheID: GatewayInstant] = [:]

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    public var waiterCount: Int { waiters.count }
    public var barrierInFlight: BarrierID? { inFlight.map { BarrierID(rawValue: $0.number) } }

    /// The earliest moment `tick` has something to do, for the lead's timer.
    public var nextDeadline: GatewayInstant? {
        // Invariant 6: the first waiter's deadline is the earliest.
        let earliestWaiter = waiters.first?.deadline
        switch (earliestWaiter, inFlight?.deadline) {
        case (nil, nil): return nil
        case (let waiter?, nil): return waiter
        case (nil, let barrier?): return barrier
        case (let waiter?, let barrier?): return min(waiter, barrier)
        }
    }
}
