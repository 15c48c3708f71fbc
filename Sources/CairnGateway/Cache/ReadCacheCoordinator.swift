import CairnAPI
import Foundation

/// The imperative shell around `PrefixCache` and `ReadBarrier`: owns the
/// caches of one gateway, routes reads to them, performs the barrier's
/// actions through injected closures, and wakes waiting reads as watch
/// responses arrive. It reads no clock and does no I/O itself: the lead
/// injects time, the barrier round trip, progress requests, timers and
/// reloads, and must call every method from one event loop (the type is not
/// Sendable for that reason).
///
/// The lead's part: route each Range it may serve locally to
/// `read(_:session:linearizable:completion:)` (already namespaced, already
/// permission-checked), feed each cache's watch responses to
/// `apply(_:to:)`, call `tick()` when the timer asked for by `scheduleTick`
/// fires, and on `reload` run the cache's `loadRequest()` upstream, hand the
/// response to `loaded(_:response:)` and watch from the returned revision + 1.
public final class ReadCacheCoordinator {
    /// How a read ended: an answer from the cache (the header carries only
    /// the revision; the lead sets cluster and member IDs), or forward it.
    public enum Outcome: Sendable {
        case answered(Etcdserverpb_RangeResponse)
        case forward(ReadBarrier.ForwardReason?)
    }

    /// The injected effects.
    public struct Effects {
        /// Monotonic time.
        public var now: () -> GatewayInstant
        /// Runs a closure later on the same event loop (NIO's
        /// `eventLoop.execute`), so every read of one loop turn shares the
        /// barrier that turn starts.
        public var executeSoon: (@escaping () -> Void) -> Void
        /// One `count_only` linearizable Range on the leader; completes with
        /// its header revision (on the same event loop).
        public var sendBarrier: (@escaping (Result<Int64, any Error>) -> Void) -> Void
        /// Ask the cache's upstream watch for a progress notification.
        public var requestProgress: (ReadBarrier.CacheID) -> Void
        /// Call `tick()` at (or soon after) this instant; replaces any earlier request.
        public var scheduleTick: (GatewayInstant) -> Void
        /// The cache broke: load it again (see the type's comment).
        public var reload: (ReadBarrier.CacheID) -> Void

        public init(
            now: @escaping () -> GatewayInstant, executeSoon: @escaping (@escaping () -> Void) -> Void,
            sendBarrier: @escaping (@escaping (Result<Int64, any Error>) -> Void) -> Void,
            requestProgress: @escaping (ReadBarrier.CacheID) -> Void,
            scheduleTick: @escaping (GatewayInstant) -> Void,
            reload: @escaping (ReadBarrier.CacheID) -> Void
        ) {
            self.now = now
            self.executeSoon = executeSoon
            self.sendBarrier = sendBarrier
            self.requestProgress = requestProgress
            self.scheduleTick = scheduleTick
            self.reload = reload
        }
    }

    private struct PendingRead {
        let cache: ReadBarrier.CacheID
        let session: SessionRevisionFloor
        let completion: Completion
    }

    /// What a waiting read is owed: an answer to its request, or (a group
    /// of reads) the cache itself at a moment it may serve them.
    private enum Completion {
        case answer(Etcdserverpb_RangeRequest, (Outcome) -> Void)
        case cache((PrefixCache?) -> Void)

        func forward(_ reason: ReadBarrier.ForwardReason?) {
            switch self {
            case .answer(_, let completion): completion(.forward(reason))
            case .cache(let completion): completion(nil)
            }
        }
    }

    public private(set) var caches: [ReadBarrier.CacheID: PrefixCache] = [:]
    public private(set) var barrier: ReadBarrier
    private let effects: Effects
    private var pending: [ReadBarrier.ReadID: PendingRead] = [:]
    private var scheduledTick: GatewayInstant?

    public init(limits: ReadBarrier.Limits = .init(), effects: Effects) {
        self.barrier = ReadBarrier(limits: limits)
        self.effects = effects
    }

    /// The barrier's Range: `count_only` and linearizable (never
    /// serializable), so the leader confirms its leadership and the header
    /// carries a revision at least every write committed before it was sent.
    /// `key` should be one the gateway's own identity may read (the barrier
    /// is shared by every tenant, so it is not sent on behalf of one).
    public static func barrierRequest(key: Data) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = key
        request.countOnly = true
        request.serializable = false
        return request
    }

    /// Registers a cache (in `.loading`); the lead then loads it.
    public func addCache(_ id: ReadBarrier.CacheID, _ cache: PrefixCache) {
        caches[id] = cache
    }

    /// The cache whose prefix holds `request`'s whole range, if any.
    public func cache(for request: Etcdserverpb_RangeRequest) -> ReadBarrier.CacheID? {
        caches.first { CacheableRange(request, in: $0.value) != nil }?.key
    }

    /// Serves `request` from its cache when that is exactly right for the
    /// session (linearizable: after a shared barrier), else completes with
    /// `.forward`. `completion` runs exactly once, possibly synchronously.
    /// `request` must already be namespaced and permission-checked; the lead
    /// records the header revision of whatever the client is sent (answer or
    /// forwarded response) in the session with `observe`.
    public func read(
        _ request: Etcdserverpb_RangeRequest, session: SessionRevisionFloor, linearizable: Bool,
        completion: @escaping (Outcome) -> Void
    ) {
        guard let cacheID = cache(for: request) else {
            completion(.forward(nil))
            return
        }
        admit(cacheID, session: session, linearizable: linearizable, .answer(request, completion))
    }

    /// Admits reads of cache `id` that all arrived before this call as one:
    /// `completion` gets the cache as it is at a moment it may serve every
    /// one of them (linearizable: after a barrier sent after this call;
    /// both kinds: at or above `session`'s floor, the highest of theirs),
    /// or nil: forward them. The caller answers each read from that cache
    /// (`PrefixCache.answer`), so a batch of reads costs one admission.
    public func readGroup(
        cache id: ReadBarrier.CacheID, session: SessionRevisionFloor, linearizable: Bool,
        completion: @escaping (PrefixCache?) -> Void
    ) {
        guard caches[id] != nil else {
            completion(nil)
            return
        }
        admit(id, session: session, linearizable: linearizable, .cache(completion))
    }

    private func admit(
        _ cacheID: ReadBarrier.CacheID, session: SessionRevisionFloor, linearizable: Bool,
        _ completion: Completion
    ) {
        guard let cache = caches[cacheID] else {
            completion.forward(nil)
            return
        }
        let now = effects.now()
        let knownRevision = cache.knownRevision
        let admission: (id: ReadBarrier.ReadID, actions: [ReadBarrier.Action])
        if linearizable {
            admission = barrier.linearizableRead(
                cache: cacheID, knownRevision: knownRevision, sessionFloor: session.highestSeen, now: now)
        } else {
            admission = barrier.serializableRead(
                cache: cacheID, knownRevision: knownRevision, sessionFloor: session.highestSeen, now: now)
        }
        pending[admission.id] = PendingRead(cache: cacheID, session: session, completion: completion)
        perform(admission.actions)
    }

    /// Feeds one watch response of cache `id`'s feed (the coalescer's
    /// `.response` deliveries, in order).
    public func apply(_ response: Etcdserverpb_WatchResponse, to id: ReadBarrier.CacheID) {
        guard var cache = caches[id] else { return }
        let outcome = cache.apply(response)
        caches[id] = cache
        handle(outcome, of: id)
    }

    /// The coalescer answered a progress request for cache `id`'s
    /// subscription with `revision` (after delivering everything before it).
    public func progressConfirmed(_ id: ReadBarrier.CacheID, revision: Int64) {
        guard var cache = caches[id] else { return }
        let outcome = cache.noteProgress(revision)
        caches[id] = cache
        handle(outcome, of: id)
    }

    private func handle(_ outcome: PrefixCache.ApplyOutcome, of id: ReadBarrier.CacheID) {
        switch outcome {
        case .advanced(_, let revision):
            perform(barrier.cacheAdvanced(id, to: revision, now: effects.now()))
        case .broke:
            perform(barrier.cacheUnusable(id))
            effects.reload(id)
        case .unchanged, .ignored:
            break
        }
    }

    /// The lead's report that cache `id`'s feed ended (the coalescer's
    /// `.ended`: `.compacted(r)` maps to `.compacted(compactRevision: r)`,
    /// the rest to `.canceled` or `.feedInterrupted`); the cache reloads.
    public func feedInterrupted(
        _ id: ReadBarrier.CacheID, reason: PrefixCache.BrokenReason = .feedInterrupted
    ) {
        guard caches[id] != nil else { return }
        caches[id]?.markBroken(reason)
        perform(barrier.cacheUnusable(id))
        effects.reload(id)
    }

    /// Starts a reload of cache `id` (it answers nothing until `loaded`).
    public func beginReload(_ id: ReadBarrier.CacheID) {
        caches[id]?.beginReload()
        perform(barrier.cacheUnusable(id))
    }

    /// The load Range of cache `id` answered; returns R (watch from R + 1).
    public func loaded(_ id: ReadBarrier.CacheID, response: Etcdserverpb_RangeResponse) throws(PrefixCache
        .LoadError)
        -> Int64
    {
        guard var cache = caches[id] else { throw .notLoading }
        defer { caches[id] = cache }
        return try cache.load(response)
    }

    /// The timer asked for by `scheduleTick` fired.
    public func tick() {
        scheduledTick = nil
        perform(barrier.tick(now: effects.now()))
    }

    private func perform(_ actions: [ReadBarrier.Action]) {
        for action in actions {
            switch action {
            case .startBarrier(let id): startBarrier(id)
            case .requestProgress(let cache): effects.requestProgress(cache)
            case .serve(let read): serve(read)
            case .forward(let read, let reason):
                pending.removeValue(forKey: read)?.completion.forward(reason)
            }
        }
        rescheduleTick()
    }

    private func startBarrier(_ id: ReadBarrier.BarrierID) {
        effects.executeSoon { [self] in
            guard barrier.barrierInFlight == id else { return }
            barrier.barrierSent(id)
            effects.sendBarrier { [self] result in
                switch result {
                case .success(let revision):
                    perform(barrier.barrierCompleted(id, revision: revision, now: effects.now()))
                case .failure: perform(barrier.barrierFailed(id, now: effects.now()))
                }
            }
        }
    }

    /// Answers from the cache; a refusal (the cache broke meanwhile) or an
    /// answer below the session's floor forwards instead.
    private func serve(_ id: ReadBarrier.ReadID) {
        guard let read = pending.removeValue(forKey: id) else { return }
        switch read.completion {
        case .answer(let request, let completion):
            guard let response = caches[read.cache]?.answer(request),
                read.session.admits(response.header.revision)
            else {
                completion(.forward(.cacheUnusable))
                return
            }
            completion(.answered(response))
        case .cache(let completion):
            guard let cache = caches[read.cache], let revision = cache.knownRevision,
                read.session.admits(revision)
            else {
                completion(nil)
                return
            }
            completion(cache)
        }
    }

    private func rescheduleTick() {
        guard let deadline = barrier.nextDeadline else { return }
        if let scheduledTick, scheduledTick <= deadline { return }
        scheduledTick = deadline
        effects.scheduleTick(deadline)
    }
}
