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

    init(upstream: UpstreamCluster, watches: WatchCoalescer, progressIsSynced: Bool) {
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
                    self.scheduleReload(id)
                    return
                }
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

    /// Offers an upstream-form Range to the caches; `floor` is the highest
    /// revision the client's session has seen.
    func read(_ request: Etcdserverpb_RangeRequest, floor: Int64) -> EventLoopFuture<Outcome> {
        let linearizable = !request.serializable
        if linearizable && !self.progressIsSynced {
            return self.eventLoop.makeSucceededFuture(.uncached)
        }
        let promise = self.eventLoop.makePromise(of: Outcome.self)
        self.eventLoop.execute {
            guard let coordinator = self.state.value.coordinator else {
                promise.succeed(.uncached)
                return
            }
            var session = SessionRevisionFloor()
            session.observe(floor)
            coordinator.read(request, session: session, linearizable: linearizable) { outcome in
                switch outcome {
                case .answered(let response): promise.succeed(.answered(response))
                case .forward(nil): promise.succeed(.uncached)
                case .forward(.some): promise.succeed(.missed)
                }
            }
        }
        return promise.futureResult
    }
}

/// What the gateway keeps per client connection: the highest revision the
/// client has been answered, so it is never answered an older one.
final class GatewaySession {
    var floor = SessionRevisionFloor()

    /// The session of the call's connection, created on first use.
    static func of(_ context: RPCContext) -> GatewaySession {
        if let session = context.connectionState as? GatewaySession { return session }
        let session = GatewaySession()
        context.connectionState = session
        return session
    }
}
