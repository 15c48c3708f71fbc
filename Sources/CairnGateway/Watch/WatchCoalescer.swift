import CairnAPI
import CairnRPC
import NIOConcurrencyHelpers
import NIOCore

/// Shares upstream watches between identical watches of one tenant.
///
/// One per gateway. Client watches (through `WatchSession`) and internal
/// subscribers (the read cache) *subscribe* with a create request already
/// rewritten into the tenant's namespace. Subscriptions with the same
/// `BroadcastKey` (tenant, key, range end, filters, prev_kv) share one
/// upstream watch, a `Broadcast`. A late joiner whose start revision is older
/// than the broadcast's position is served from the broadcast's recent
/// events when they reach back far enough, else from a private catch-up
/// watch that hands it over to the broadcast once it has caught up (a
/// progress request tells when), with no gap and no duplicate.
///
/// Each tenant has one upstream Watch stream (on the connection the injected
/// provider gives, with `cairn-on-behalf-of: <tenant>`), carrying all its
/// broadcasts. When that stream breaks, its broadcasts resume on a new one
/// from their position + 1; after `resumeAttemptsMax` streams in a row that
/// answer nothing, their subscribers are cancelled with a reason.
///
/// Threading: all state lives on `eventLoop`; entry points may be called from
/// any thread and hop there (keeping each caller's order). Deliveries and
/// completions run on `eventLoop`, in order per subscription.
///
/// Properties:
/// 1. Every subscription is a member of exactly one broadcast, the one named
///    by its `broadcastID`, and every member of a broadcast is a subscription.
/// 2. `sharedByKey[k]` names a shared broadcast of key `k` that is not
///    closed; no other broadcast is joinable.
/// 3. A subscriber receives `.created` at most once and before any
///    `.response`, then events strictly increasing in revision, never at or
///    below its `floorRevision` (its start, or the last event it got), and at
///    most one `.ended`, after which nothing.
/// 4. A broadcast without members is not kept: its upstream watch is
///    cancelled (or, still being created, cancelled once its ID is known).
/// 5. A tenant's stream is open only while the tenant has broadcasts.
public final class WatchCoalescer: Sendable {
    /// One subscriber of a broadcast.
    struct Subscription {
        let tenant: String
        let key: BroadcastKey
        var broadcastID: Int
        /// `.created` has been delivered.
        var announced = false
        /// The subscriber asked from "now": its floor is the broadcast's
        /// position when the broadcast first learns it.
        var startsNow: Bool
        /// Events at or below it are never delivered (property 3).
        var floorRevision: Int64
        /// Every event at or below it has been delivered.
        var syncedRevision: Int64
        let progressNotifications: Bool
        let deliver: @Sendable (WatchDelivery) -> Void

        /// The part of a broadcast's `response` this subscriber is owed
        /// (announced, events above its floor) and where to deliver it, its
        /// floor moved past it; nil when nothing is owed. Called in place in
        /// the subscription table, so fan-out copies no subscription.
        mutating func take(_ response: Etcdserverpb_WatchResponse) -> (
            response: Etcdserverpb_WatchResponse, deliver: @Sendable (WatchDelivery) -> Void
        )? {
            guard self.announced else { return nil }
            let floor = self.floorRevision
            var outgoing = response
            if let first = response.events.first, first.kv.modRevision <= floor {
                outgoing.events = response.events.filter { $0.kv.modRevision > floor }
            }
            guard let last = outgoing.events.last else { return nil }
            self.floorRevision = last.kv.modRevision
            self.syncedRevision = max(self.syncedRevision, last.kv.modRevision)
            return (outgoing, self.deliver)
        }

        /// Every event up to `position` has been delivered (or was not owed).
        mutating func synced(to position: Int64) {
            if self.syncedRevision < position { self.syncedRevision = position }
        }
    }

    /// A progress request from a subscriber, answered once the tenant's
    /// stream answered one sent after it.
    struct ProgressWaiter {
        var subscriptions: [WatchSubscriptionID]
        var completion: @Sendable ([WatchSubscriptionID: Int64], Etcdserverpb_ResponseHeader) -> Void
    }

    final class Core {
        var subscriptions: [WatchSubscriptionID: Subscription] = [:]
        var broadcasts: [Int: Broadcast] = [:]
        var sharedByKey: [BroadcastKey: Int] = [:]
        var streams: [String: UpstreamWatchStream] = [:]
        var clientWatchesByTenant: [String: Int] = [:]
        var nextBroadcastID = 0
        var nextStreamGeneration = 0
        var isShutdown = false
        /// The highest compact revision the upstream is known to have (from
        /// its compacted answers, or `noteCompaction`): the recent-event
        /// windows never serve a start revision below it.
        var compactRevision: Int64 = 0
    }

    /// Progress requests waiting per tenant stream; more are answered at once
    /// with what is known (still synced, maybe older).
    static let progressWaitersMax = 10_000

    public let eventLoop: any EventLoop
    let configuration: WatchCoalescerConfiguration
    let upstream: @Sendable () -> RPCConnection?
    let core: NIOLoopBoundBox<Core>
    private let nextSubscriptionID = NIOLockedValueBox(0)
    private let gaugesBox = NIOLockedValueBox<[String: WatchTenantGauges]>([:])

    /// - Parameter upstream: picks the connection for a tenant's (new)
    ///   upstream stream; `nil` when none is usable right now (a failed attempt).
    public init(
        eventLoop: any EventLoop, configuration: WatchCoalescerConfiguration = .init(),
        upstream: @escaping @Sendable () -> RPCConnection?
    ) {
        precondition(configuration.recentEventsMax >= 0, "recentEventsMax must not be negative")
        precondition(configuration.resumeAttemptsMax > 0, "resumeAttemptsMax must be positive")
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.upstream = upstream
        self.core = NIOLoopBoundBox.makeBoxSendingValue(Core(), eventLoop: eventLoop)
    }

    func onLoop(_ body: @escaping @Sendable (Core) -> Void) {
        if self.eventLoop.inEventLoop {
            body(self.core.value)
        } else {
            self.eventLoop.execute { body(self.core.value) }
        }
    }

    // MARK: Public API (any thread)

    /// A fresh subscription ID, so a caller can name its subscription before
    /// the coalescer's loop has seen it.
    public func makeSubscriptionID() -> WatchSubscriptionID {
        self.nextSubscriptionID.withLockedValue { value in
            value += 1
            return value
        }
    }

    /// Starts a subscription: `deliver` then receives `.created`, responses
    /// and finally `.ended` (or only `.ended` when refused).
    /// - Parameters:
    ///   - request: the create request in upstream terms (namespace applied);
    ///     its key shape, filters, prev_kv and start revision count; its
    ///     watch ID, fragment and progress_notify are the subscriber's business.
    ///   - watchesMax: the tenant's cap on open subscriptions; at the cap the
    ///     subscription ends at once with `.watchLimitReached`.
    ///   - progressNotifications: also deliver an empty response whenever the
    ///     synced revision advances without events (the read cache wants
    ///     them; client sessions ask with `requestProgress` instead).
    public func subscribe(
        _ id: WatchSubscriptionID, tenant: String, request: Etcdserverpb_WatchCreateRequest,
        watchesMax: Int = .max, progressNotifications: Bool = false,
        deliver: @escaping @Sendable (WatchDelivery) -> Void
    ) {
        self.onLoop { core in
            guard !core.isShutdown else {
                deliver(.ended(.canceled(reason: WatchReason.gatewayShutdown)))
                return
            }
            let open = core.clientWatchesByTenant[tenant, default: 0]
            guard open < watchesMax else {
                deliver(.ended(.watchLimitReached(reason: WatchReason.watchLimit(watchesMax))))
                return
            }
            core.clientWatchesByTenant[tenant] = open + 1
            let key = BroadcastKey(tenant: tenant, request: request)
            let start = max(0, request.startRevision)
            core.subscriptions[id] = Subscription(
                tenant: tenant, key: key, broadcastID: -1, startsNow: start == 0,
                floorRevision: max(0, start - 1), syncedRevision: max(0, start - 1),
                progressNotifications: progressNotifications, deliver: deliver)
            self.join(id, startRevision: start, core)
            self.publishGauges(tenant, core)
        }
    }

    /// Ends a subscription quietly (no `.ended` is delivered).
    public func unsubscribe(_ id: WatchSubscriptionID) {
        self.onLoop { core in
            guard let subscription = core.subscriptions.removeValue(forKey: id) else { return }
            self.forget(id, subscription, core)
        }
    }

    /// Asks for a revision up to which every listed subscription has been
    /// delivered every event, as fresh as the upstream can tell: the tenant's
    /// stream is asked for progress and `completion` runs after every
    /// delivery that precedes the answer. Subscriptions not yet created (or
    /// gone) are left out of the answer's map; the header is the upstream's.
    public func requestProgress(
        tenant: String, subscriptions: [WatchSubscriptionID],
        completion: @escaping @Sendable ([WatchSubscriptionID: Int64], Etcdserverpb_ResponseHeader) -> Void
    ) {
        self.onLoop { core in
            let waiter = ProgressWaiter(subscriptions: subscriptions, completion: completion)
            self.enqueueProgress(waiter, tenant: tenant, core)
        }
    }

    /// Tells the coalescer the upstream compacted its history up to
    /// `revision` (the gateway forwarded a successful Compact): from then on
    /// a joiner asking for an older start revision is answered with etcd's
    /// compaction cancel rather than from a recent-event window. Compactions
    /// the gateway does not see are learned from the upstream's own
    /// compacted answers.
    public func noteCompaction(revision: Int64) {
        self.onLoop { core in core.compactRevision = max(core.compactRevision, revision) }
    }

    /// Client and upstream watch counts per tenant (tenants with none are left out).
    public func gauges() -> [String: WatchTenantGauges] {
        self.gaugesBox.withLockedValue { $0 }
    }

    /// Ends every subscription and closes every upstream stream; later
    /// subscriptions are refused.
    public func shutdown() {
        self.onLoop { core in
            core.isShutdown = true
            for (tenant, _) in core.streams {
                self.failTenant(tenant, reason: WatchReason.gatewayShutdown, core)
            }
        }
    }

    // MARK: Joining (event loop)

    /// Attaches a subscription to the right broadcast for its start revision
    /// (a new one, the shared one, or a catch-up). Already-announced
    /// subscriptions (re-joining after a compaction elsewhere) stay quiet.
    func join(_ id: WatchSubscriptionID, startRevision: Int64, _ core: Core) {
        guard let subscription = core.subscriptions[id] else { return }
        let key = subscription.key
        guard let sharedID = core.sharedByKey[key], let shared = core.broadcasts[sharedID] else {
            let broadcastID = self.makeBroadcast(key, shared: true, startRevision: startRevision, core)
            self.attach(id, to: broadcastID, core)
            return
        }
        if !shared.positionKnown {
            if startRevision == 0 || (shared.startRevision > 0 && startRevision >= shared.startRevision) {
                self.attach(id, to: sharedID, core)
            } else {
                self.startCatchUp(id, from: startRevision, core)
            }
            return
        }
        if startRevision == 0 || startRevision > shared.position {
            self.attach(id, to: sharedID, core)
        } else if startRevision < core.compactRevision {
            self.end(id, .compacted(compactRevision: core.compactRevision), core)
        } else if shared.recent.covers(from: startRevision) {
            self.attach(id, to: sharedID, core)
            self.replay(id, from: startRevision, of: sharedID, core)
        } else {
            self.startCatchUp(id, from: startRevision, core)
        }
    }

    /// Makes `id` a member of `broadcastID`, announcing it if the broadcast
    /// already knows its position.
    private func attach(_ id: WatchSubscriptionID, to broadcastID: Int, _ core: Core) {
        core.subscriptions[id]?.broadcastID = broadcastID
        core.broadcasts[broadcastID]?.members.insert(id)
        guard let broadcast = core.broadcasts[broadcastID], broadcast.positionKnown else { return }
        self.announce(id, broadcast: broadcast, core)
    }

    /// Delivers `.created` once, with the revision the subscriber sees the
    /// watch created at.
    func announce(_ id: WatchSubscriptionID, broadcast: Broadcast, _ core: Core) {
        guard var subscription = core.subscriptions[id], !subscription.announced else { return }
        subscription.announced = true
        var header = core.streams[subscription.tenant]?.header ?? Etcdserverpb_ResponseHeader()
        if subscription.startsNow {
            // From now: created at the position, so every later event is above it.
            subscription.startsNow = false
            subscription.floorRevision = broadcast.position
            subscription.syncedRevision = broadcast.position
            header.revision = broadcast.position
        } else {
            header.revision = max(header.revision, broadcast.position, subscription.floorRevision)
        }
        core.subscriptions[id] = subscription
        subscription.deliver(.created(header))
    }

    /// Serves a late joiner the broadcast's recent events from its start.
    private func replay(
        _ id: WatchSubscriptionID, from startRevision: Int64, of broadcastID: Int, _ core: Core
    ) {
        guard let broadcast = core.broadcasts[broadcastID] else { return }
        let header = core.streams[broadcast.key.tenant]?.header ?? Etcdserverpb_ResponseHeader()
        for events in broadcast.recent.events(from: startRevision) {
            var response = Etcdserverpb_WatchResponse()
            response.header = header
            response.header.revision = max(header.revision, events.last?.kv.modRevision ?? 0)
            response.events = events
            if let (outgoing, deliver) = core.subscriptions[id]?.take(response) {
                deliver(.response(outgoing))
            }
        }
        core.subscriptions[id]?.syncedRevision = broadcast.position
        if let floor = core.subscriptions[id]?.floorRevision, floor < broadcast.position {
            // The window is complete up to the position: nothing lies between.
            core.subscriptions[id]?.floorRevision = broadcast.position
        }
    }

    private func startCatchUp(_ id: WatchSubscriptionID, from startRevision: Int64, _ core: Core) {
        guard let key = core.subscriptions[id]?.key else { return }
        let broadcastID = self.makeBroadcast(key, shared: false, startRevision: startRevision, core)
        self.attach(id, to: broadcastID, core)
    }

    private func makeBroadcast(_ key: BroadcastKey, shared: Bool, startRevision: Int64, _ core: Core) -> Int {
        core.nextBroadcastID += 1
        let id = core.nextBroadcastID
        core.broadcasts[id] = Broadcast(
            id: id, key: key, isShared: shared, startRevision: startRevision,
            recentEventsMax: self.configuration.recentEventsMax)
        if shared { core.sharedByKey[key] = id }
        self.openUpstreamWatch(id, core)
        return id
    }

    /// Moves a caught-up joiner from its catch-up onto the shared broadcast,
    /// or makes the catch-up the shared broadcast when there is none.
    func checkCatchUp(_ catchUpID: Int, _ core: Core) {
        guard let catchUp = core.broadcasts[catchUpID], !catchUp.isShared, catchUp.watchID != nil,
            let member = catchUp.members.first
        else { return }
        guard let sharedID = core.sharedByKey[catchUp.key], let shared = core.broadcasts[sharedID] else {
            core.broadcasts[catchUpID]?.isShared = true
            core.streams[catchUp.key.tenant]?.catchUpCount -= 1
            core.broadcasts[catchUpID]?.recent = RecentWatchEvents(
                eventsMax: self.configuration.recentEventsMax)
            core.broadcasts[catchUpID]?.recent.reset(floor: catchUp.position)
            core.sharedByKey[catchUp.key] = catchUpID
            self.publishGauges(catchUp.key.tenant, core)
            return
        }
        guard shared.watchID != nil, shared.positionKnown else { return }
        if shared.position <= catchUp.position {
            // Everything up to the catch-up's position was delivered by it, and
            // the broadcast brings everything above its own (lower) position;
            // the member's floor drops what the two have in common.
            core.broadcasts[catchUpID]?.members = []
            core.broadcasts[sharedID]?.members.insert(member)
            core.subscriptions[member]?.broadcastID = sharedID
            self.closeUpstreamWatch(catchUpID, core)
            self.publishGauges(catchUp.key.tenant, core)
        } else if self.configuration.upstreamProgressIsSynced {
            self.requestStreamProgress(tenant: catchUp.key.tenant, core)
        }
    }

    // MARK: Delivery (event loop)

    /// Hands a broadcast's events to all its members, then lets a catch-up
    /// see whether it is done.
    func broadcastEvents(_ response: Etcdserverpb_WatchResponse, _ broadcastID: Int, _ core: Core) {
        guard core.broadcasts[broadcastID] != nil else { return }
        core.broadcasts[broadcastID]?.received(response)
        guard let broadcast = core.broadcasts[broadcastID] else { return }
        let position = broadcast.position
        for member in broadcast.members {
            if let (outgoing, deliver) = core.subscriptions[member]?.take(response) {
                deliver(.response(outgoing))
            }
            core.subscriptions[member]?.synced(to: position)
        }
        if !broadcast.isShared { self.checkCatchUp(broadcastID, core) }
    }

    /// A progress answer for a broadcast: its members are synced up to its
    /// position; those that asked for notifications get one.
    func broadcastProgress(
        _ revision: Int64, _ broadcastID: Int, header: Etcdserverpb_ResponseHeader, _ core: Core
    ) {
        guard var broadcast = core.broadcasts[broadcastID] else { return }
        if self.configuration.upstreamProgressIsSynced { broadcast.progressed(to: revision) }
        core.broadcasts[broadcastID] = broadcast
        for member in broadcast.members {
            guard var subscription = core.subscriptions[member], subscription.announced,
                broadcast.position > subscription.syncedRevision
            else { continue }
            subscription.syncedRevision = broadcast.position
            core.subscriptions[member] = subscription
            if subscription.progressNotifications {
                var response = Etcdserverpb_WatchResponse()
                response.header = header
                response.header.revision = broadcast.position
                response.watchID = -1
                subscription.deliver(.response(response))
            }
        }
        if !broadcast.isShared { self.checkCatchUp(broadcastID, core) }
    }

    // MARK: Leaving and ending (event loop)

    /// Drops a removed subscription from its broadcast and the counts.
    private func forget(_ id: WatchSubscriptionID, _ subscription: Subscription, _ core: Core) {
        let tenant = subscription.tenant
        core.clientWatchesByTenant[tenant, default: 1] -= 1
        if core.clientWatchesByTenant[tenant] == 0 { core.clientWatchesByTenant[tenant] = nil }
        core.broadcasts[subscription.broadcastID]?.members.remove(id)
        if let broadcast = core.broadcasts[subscription.broadcastID], broadcast.members.isEmpty {
            self.closeUpstreamWatch(broadcast.id, core)
        }
        self.publishGauges(tenant, core)
    }

    /// Ends a subscription with `end` (property 3: nothing follows).
    func end(_ id: WatchSubscriptionID, _ end: WatchEnd, _ core: Core) {
        guard let subscription = core.subscriptions.removeValue(forKey: id) else { return }
        subscription.deliver(.ended(end))
        self.forget(id, subscription, core)
    }

    /// The upstream ended a broadcast. After a compaction, members that asked
    /// for nothing below the compact revision re-join from where they are;
    /// the others end as etcd would end them.
    func endBroadcast(_ broadcastID: Int, _ end: WatchEnd, _ core: Core) {
        guard var broadcast = core.broadcasts.removeValue(forKey: broadcastID) else { return }
        if core.sharedByKey[broadcast.key] == broadcastID { core.sharedByKey[broadcast.key] = nil }
        if case .compacted(let compactRevision) = end {
            core.compactRevision = max(core.compactRevision, compactRevision)
        }
        broadcast.state = .closed
        self.detachFromStream(broadcast, core)
        for member in broadcast.members.sorted() {
            guard let subscription = core.subscriptions[member] else { continue }
            if case .compacted(let compactRevision) = end, subscription.announced,
                subscription.floorRevision + 1 >= compactRevision
            {
                self.join(member, startRevision: subscription.floorRevision + 1, core)
            } else {
                self.end(member, end, core)
            }
        }
        self.publishGauges(broadcast.key.tenant, core)
    }

    /// Publishes one tenant's counts for `gauges()`.
    func publishGauges(_ tenant: String, _ core: Core) {
        var gauges = WatchTenantGauges()
        gauges.clientWatches = core.clientWatchesByTenant[tenant, default: 0]
        if let stream = core.streams[tenant] {
            gauges.upstreamWatches = stream.broadcastIDs.count
            gauges.catchUpWatches = stream.catchUpCount
        }
        self.gaugesBox.withLockedValue { all in
            if gauges == WatchTenantGauges() { all[tenant] = nil } else { all[tenant] = gauges }
        }
    }
}
