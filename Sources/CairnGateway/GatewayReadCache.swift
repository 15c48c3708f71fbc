import CairnAPI
import CairnRPC
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// The gateway's read cache: the tenants' hot prefixes (`cache:` in the
/// tenants file), each loaded by one Range and then fed only by one watch
/// through the coalescer, plus the read barrier that lets linearizable
/// reads be answered from them (`ReadCacheCoordinator`, DESIGN.md "The read
/// path").
///
/// Everything runs on the coalescer's event loop, as the coordinator
/// requires; reads hop there and their answers hop back.
///
/// Properties:
/// 1. A cache answers only while its feed is the watch started at its load
///    revision + 1; any end of that feed, or a load that fails, reloads it
///    after `reloadDelay`, and a reload unsubscribes the old feed first.
/// 2. Against an upstream whose progress answers are not synced with its
///    events (etcd before 3.4.25), linearizable reads are always forwarded:
///    a cache could otherwise believe itself newer than it is.
/// 3. A linearizable read on a loop of `batches` joins that loop's batch,
///    which goes to the cache's loop at the end of the loop's turn, after
///    the read arrived: the batch's barrier, sent after that, is one every
///    read in it may wait for (`ReadBarrier`'s property 5).
/// 4. `published` holds the live caches as the coordinator last left them
///    (republished on the loop right after every change), so a serializable
///    read on any loop is answered from a state the cache really held, at a
///    revision no lower than the client's session floor (`answerNow`).
final class GatewayReadCache: Sendable {
    /// A cache's place in the gateway: whose it is and what feeds it.
    struct Slot {
        let tenant: String
        let prefix: Data
        /// The prefix as the tenant wrote it in the tenants file.
        let viewPrefix: String
        var subscription: WatchSubscriptionID?
        /// Bumped by every (re)load, so answers of an older load are ignored.
        var generation = 0
    }

    final class State {
        var coordinator: ReadCacheCoordinator?
        var slots: [ReadBarrier.CacheID: Slot] = [:]
        var nextCacheID = 1
        var tick: Scheduled<Void>?
    }

    static let reloadDelay = TimeAmount.seconds(1)
    /// The key the shared barrier reads (`count_only`): with auth on the
    /// members, the gateway's own user needs read permission on it.
    static let barrierKey = Data("cairn-gateway/read-barrier".utf8)

    let eventLoop: any EventLoop
    let upstream: UpstreamCluster
    let watches: WatchCoalescer
    let progressIsSynced: Bool
    private let state: NIOLoopBoundBox<State>
    /// The live caches, for serializable reads without a hop (property 4).
    private let published = NIOLockedValueBox<[PrefixCache]>([])
    /// What each cache holds, refreshed every `statusInterval` for metrics.
    private let statusBox = NIOLockedValueBox<[CacheStatus]>([])
    static let statusInterval = TimeAmount.seconds(1)

    /// One cache as `/metrics` shows it.
    struct CacheStatus: Sendable {
        var tenant: String
        /// The cache prefix in the tenant's view.
        var prefix: String
        /// The revision the cache holds its prefix at; nil while not live.
        var revision: Int64?
        var keys: Int
    }

    /// A read waiting in a loop's batch (property 3).
    struct BatchedRead: Sendable {
        let request: Etcdserverpb_RangeRequest
        let floor: Int64
        let completion: ReadCompletion
    }

    /// The linearizable reads of one loop's turn.
    final class ReadBatch {
        var reads: [BatchedRead] = []
    }

    /// One batch per serving loop, keyed by the loop's identity.
    private let batches: [ObjectIdentifier: NIOLoopBoundBox<ReadBatch>]

    /// - Parameter loops: the loops reads arrive on; their linearizable
    ///   reads go to the cache in batches (others one by one).
    init(
        upstream: UpstreamCluster, watches: WatchCoalescer, progressIsSynced: Bool,
        loops: [any EventLoop] = []
    ) {
        var batches: [ObjectIdentifier: NIOLoopBoundBox<ReadBatch>] = [:]
        for loop in loops {
            batches[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(
                ReadBatch(), eventLoop: loop)
        }
        self.batches = batches
        self.eventLoop = watches.eventLoop
        self.upstream = upstream
        self.watches = watches
        self.progressIsSynced = progressIsSynced
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(), eventLoop: watches.eventLoop)
        self.eventLoop.execute {
            self.state.value.coordinator = ReadCacheCoordinator(effects: self.effects())
        }
        self.eventLoop.scheduleRepeatedTask(initialDelay: Self.statusInterval, delay: Self.statusInterval) {
            _ in
            self.publishStatus()
        }
    }

    /// The caches as of the last refresh.
    var status: [CacheStatus] { self.statusBox.withLockedValue { $0 } }

    private func publishStatus() {
        let state = self.state.value
        guard let coordinator = state.coordinator else { return }
        let status = state.slots.sorted { $0.key.rawValue < $1.key.rawValue }.map { id, slot in
            let cache = coordinator.caches[id]
            return CacheStatus(
                tenant: slot.tenant, prefix: slot.viewPrefix, revision: cache?.knownRevision,
                keys: cache?.entryCount ?? 0)
        }
        self.statusBox.withLockedValue { $0 = status }
    }

    private func effects() -> ReadCacheCoordinator.Effects {
        let eventLoop = self.eventLoop
        return ReadCacheCoordinator.Effects(
            now: { GatewayInstant(nanoseconds: Int64(NIODeadline.now().uptimeNanoseconds)) },
            executeSoon: { body in
                let bound = NIOLoopBound(body, eventLoop: eventLoop)
                eventLoop.execute { bound.value() }
            },
            sendBarrier: { completion in self.sendBarrier(completion) },
            requestProgress: { id in self.requestProgress(id) },
            scheduleTick: { instant in self.scheduleTick(at: instant) },
            reload: { id in self.scheduleReload(id) })
    }

    // MARK: Caches

    /// Adds a cache for every cache prefix of `tenants` not cached yet, and
    /// loads it. (A prefix dropped from the file keeps its cache until restart.)
    func configure(_ tenants: [Tenant]) {
        self.eventLoop.execute {
            let state = self.state.value
            let known = Set(state.slots.values.map { [Data($0.tenant.utf8), $0.prefix] })
            for tenant in tenants {
                for (viewPrefix, prefix) in zip(tenant.cachePrefixes, tenant.upstreamCachePrefixes)
                where !known.contains([Data(tenant.name.utf8), prefix]) {
                    let id = ReadBarrier.CacheID(state.nextCacheID)
                    state.nextCacheID += 1
                    state.slots[id] = Slot(tenant: tenant.name, prefix: prefix, viewPrefix: viewPrefix)
                    state.coordinator?.addCache(id, PrefixCache(prefix: prefix))
                    self.load(id)
                }
            }
        }
    }

    /// Loads cache `id` (one linearizable Range of its prefix, on behalf of
    /// its tenant) and starts its feed from the load's revision + 1.
    private func load(_ id: ReadBarrier.CacheID) {
        let state = self.state.value
        guard var slot = state.slots[id], let coordinator = state.coordinator else { return }
        if let old = slot.subscription { self.watches.unsubscribe(old) }
        slot.subscription = nil
        slot.generation += 1
        state.slots[id] = slot
        coordinator.beginReload(id)
        self.publish()
        let generation = slot.generation
        let request = coordinator.caches[id]?.loadRequest() ?? Etcdserverpb_RangeRequest()
        let options = RPCCallOptions(
            timeout: .seconds(10), metadata: [Gateway.onBehalfOfHeader: slot.tenant])
        self.upstream.connection(for: .leader).unaryFuture(EtcdKV.range, request, options: options)
            .hop(to: self.eventLoop).whenComplete { result in
                let state = self.state.value
                guard let slot = state.slots[id], slot.generation == generation,
                    let coordinator = state.coordinator
                else { return }
                guard case .success(let response) = result,
                    let revision = try? coordinator.loaded(id, response: response)
                else {
                    self.publish()
                    self.scheduleReload(id)
                    return
                }
                self.publish()
                self.feed(id, slot: slot, from: revision + 1)
            }
    }

    private func feed(_ id: ReadBarrier.CacheID, slot: Slot, from revision: Int64) {
        var request = Etcdserverpb_WatchCreateRequest()
        request.key = slot.prefix
        request.rangeEnd = Namespace.prefixEnd(slot.prefix)
        request.startRevision = revision
        let subscription = self.watches.makeSubscriptionID()
        self.state.value.slots[id]?.subscription = subscription
        let generation = slot.generation
        self.watches.subscribe(
            subscription, tenant: slot.tenant, request: request, progressNotifications: true
        ) { delivery in
            // Deliveries run on the coalescer's loop, which is this one.
            self.eventLoop.assertInEventLoop()
            let state = self.state.value
            guard state.slots[id]?.generation == generation, let coordinator = state.coordinator else {
                return
            }
            switch delivery {
            case .created: break
            case .response(let response): coordinator.apply(response, to: id)
            case .ended(.compacted(let revision)):
                coordinator.feedInterrupted(id, reason: .compacted(compactRevision: revision))
            case .ended(.canceled(let reason)), .ended(.watchLimitReached(let reason)):
                coordinator.feedInterrupted(id, reason: .canceled(reason: reason))
            }
            self.publish()
        }
    }

    private func scheduleReload(_ id: ReadBarrier.CacheID) {
        let generation = self.state.value.slots[id]?.generation
        self.eventLoop.scheduleTask(in: Self.reloadDelay) {
            guard self.state.value.slots[id]?.generation == generation else { return }
            self.load(id)
        }
    }

    // MARK: Coordinator effects

    /// The shared barrier, as the gateway itself (no tenant): one
    /// `count_only` linearizable Range on the leader.
    private func sendBarrier(_ completion: @escaping (Result<Int64, any Error>) -> Void) {
        let bound = NIOLoopBound(completion, eventLoop: self.eventLoop)
        self.upstream.connection(for: .leader).unaryFuture(
            EtcdKV.range, ReadCacheCoordinator.barrierRequest(key: Self.barrierKey),
            options: RPCCallOptions(timeout: .seconds(2))
        ).hop(to: self.eventLoop).whenComplete { result in
            bound.value(result.map { $0.header.revision }.mapError { $0 as any Error })
        }
    }

    private func requestProgress(_ id: ReadBarrier.CacheID) {
        guard let slot = self.state.value.slots[id], let subscription = slot.subscription else { return }
        self.watches.requestProgress(tenant: slot.tenant, subscriptions: [subscription]) { revisions, _ in
            self.eventLoop.execute {
                guard let revision = revisions[subscription],
                    self.state.value.slots[id]?.subscription == subscription
                else { return }
                self.state.value.coordinator?.progressConfirmed(id, revision: revision)
                self.publish()
            }
        }
    }

    private func scheduleTick(at instant: GatewayInstant) {
        let state = self.state.value
        state.tick?.cancel()
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        let delay = TimeAmount.nanoseconds(max(0, instant.nanoseconds - now))
        state.tick = self.eventLoop.scheduleTask(in: delay) {
            self.state.value.tick = nil
            self.state.value.coordinator?.tick()
        }
    }

    // MARK: Reads

    /// What became of a read offered to the cache.
    enum Outcome: Sendable {
        /// The cache answered (header: revision only).
        case answered(Etcdserverpb_RangeResponse)
        /// A cache covers the range but could not answer: a miss.
        case missed
        /// No cache covers the range.
        case uncached
    }

    /// Republishes the live caches (property 3); on the loop, after every
    /// change the coordinator may have made to them.
    private func publish() {
        guard let coordinator = self.state.value.coordinator else { return }
        let live = coordinator.caches.values.filter { $0.knownRevision != nil }
        self.published.withLockedValue { $0 = live }
    }

    /// A serializable upstream-form Range answered at once, on the caller's
    /// loop, from a published live cache whose revision is at least `floor`;
    /// nil when none can (then `read` decides: wait, or forward).
    func answerNow(_ request: Etcdserverpb_RangeRequest, floor: Int64) -> Etcdserverpb_RangeResponse? {
        guard request.serializable, request.revision == 0 else { return nil }
        let caches = self.published.withLockedValue { $0 }
        for cache in caches where cache.contains(request.key) {
            guard let revision = cache.knownRevision, revision >= floor else { return nil }
            if let response = cache.answer(request) { return response }
        }
        return nil
    }

    /// Where a read's outcome goes: run on the loop the read was made on.
    typealias ReadCompletion = @Sendable (Outcome) -> Void

    /// Offers an upstream-form Range to the caches; `floor` is the highest
    /// revision the client's session has seen. `completion` runs once, on
    /// `callerLoop` (the caller's own loop; possibly before this returns).
    func read(
        _ request: Etcdserverpb_RangeRequest, floor: Int64, on callerLoop: any EventLoop,
        completion: @escaping ReadCompletion
    ) {
        let linearizable = !request.serializable
        if linearizable && !self.progressIsSynced {
            completion(.uncached)
            return
        }
        if linearizable, let batch = self.batches[ObjectIdentifier(callerLoop)] {
            let reads = batch.value
            reads.reads.append(BatchedRead(request: request, floor: floor, completion: completion))
            if reads.reads.count == 1 {
                callerLoop.execute { self.sendBatch(batch.value, from: callerLoop) }
            }
            return
        }
        let onCaller: ReadCompletion = { outcome in
            if callerLoop.inEventLoop {
                completion(outcome)
            } else {
                callerLoop.execute { completion(outcome) }
            }
        }
        if self.eventLoop.inEventLoop {
            self.readOnLoop(request, floor: floor, linearizable: linearizable, completion: onCaller)
        } else {
            self.eventLoop.execute {
                self.readOnLoop(request, floor: floor, linearizable: linearizable, completion: onCaller)
            }
        }
    }

    /// Hands a loop's batch to the cache's loop (property 3).
    private func sendBatch(_ batch: ReadBatch, from callerLoop: any EventLoop) {
        let reads = batch.reads
        batch.reads = []
        guard !reads.isEmpty else { return }
        self.eventLoop.execute { self.admitBatch(reads, from: callerLoop) }
    }

    /// Admits a batch one cache at a time; each group's reads are answered
    /// on their own loop from the cache the coordinator hands over.
    private func admitBatch(_ reads: [BatchedRead], from callerLoop: any EventLoop) {
        guard let coordinator = self.state.value.coordinator else {
            callerLoop.execute { Self.answer(reads, from: nil, uncached: true) }
            return
        }
        var groups: [ReadBarrier.CacheID: [BatchedRead]] = [:]
        var uncached: [BatchedRead] = []
        for read in reads {
            guard let id = coordinator.cache(for: read.request) else {
                uncached.append(read)
                continue
            }
            groups[id, default: []].append(read)
        }
        if !uncached.isEmpty {
            callerLoop.execute { [uncached] in Self.answer(uncached, from: nil, uncached: true) }
        }
        for (id, group) in groups {
            var session = SessionRevisionFloor()
            for read in group { session.observe(read.floor) }
            coordinator.readGroup(cache: id, session: session, linearizable: true) { cache in
                callerLoop.execute { Self.answer(group, from: cache, uncached: false) }
            }
        }
    }

    /// Answers each read from `cache`; without one, each is `.uncached`
    /// (no cache covers it) or `.missed` (the coordinator said forward).
    private static func answer(_ reads: [BatchedRead], from cache: PrefixCache?, uncached: Bool) {
        for read in reads {
            guard let cache, let revision = cache.knownRevision, revision >= read.floor,
                let response = cache.answer(read.request)
            else {
                read.completion(uncached ? .uncached : .missed)
                continue
            }
            read.completion(.answered(response))
        }
    }

    private func readOnLoop(
        _ request: Etcdserverpb_RangeRequest, floor: Int64, linearizable: Bool,
        completion: @escaping ReadCompletion
    ) {
        guard let coordinator = self.state.value.coordinator else {
            completion(.uncached)
            return
        }
        var session = SessionRevisionFloor()
        session.observe(floor)
        coordinator.read(request, session: session, linearizable: linearizable) { outcome in
            switch outcome {
            case .answered(let response): completion(.answered(response))
            case .forward(nil): completion(.uncached)
            case .forward(.some): completion(.missed)
            }
        }
    }
}

/// What the gateway keeps per client connection: the highest revision the
/// client has been answered, so it is never answered an older one.
final class GatewaySession {
    var floor = SessionRevisionFloor()
    /// The connection's tenant, and the generation of the tenants table it
    /// was looked up in (`Gateway.tenant(of:)`).
    var tenant: (generation: Int, runtime: TenantRuntime)?

    /// The session of the call's connection, created on first use.
    static func of(_ context: RPCContext) -> GatewaySession {
        if let session = context.connectionState as? GatewaySession { return session }
        let session = GatewaySession()
        context.connectionState = session
        return session
    }
}
