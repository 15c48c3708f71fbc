import CairnAPI
import CairnRPC
import NIOCore
import NIOHPACK

/// A tenant's upstream Watch stream: one bidirectional call carrying every
/// broadcast of the tenant, told apart by upstream watch IDs.
///
/// Lifecycle: `idle` → `open` (a call is running) → `waitingToResume` (it
/// broke; a new call opens after a delay) → `open` …; back to `idle` when the
/// tenant has no broadcasts left or after giving up.
///
/// Properties:
/// 1. `creating` lists, in send order, the broadcasts whose create request
///    went out on the current call and is unanswered (the upstream answers
///    creates in order); a broadcast abandoned meanwhile keeps its place, and
///    the upstream watch its answer names is cancelled at once.
/// 2. Every value of `broadcastByWatchID` is a live broadcast of the tenant.
/// 3. At most one progress request is in flight; waiters that came after it
///    was sent wait for the next one, which is sent when it is answered.
/// 4. `failures` counts calls in a row that ended without any answer.
struct UpstreamWatchStream {
    enum State: Equatable {
        case idle
        case open(generation: Int)
        case waitingToResume
    }

    var state: State = .idle
    var requests: RPCClientStream<Etcdserverpb_WatchRequest>?
    var creating: [Int] = []
    var broadcastByWatchID: [Int64: Int] = [:]
    /// Broadcasts of the tenant, in any state but closed.
    var broadcastIDs: Set<Int> = []
    /// How many of `broadcastIDs` are catch-ups (for the gauges).
    var catchUpCount = 0
    var progressInFlight: [WatchCoalescer.ProgressWaiter]?
    var progressQueued: [WatchCoalescer.ProgressWaiter] = []
    /// The latest upstream header seen (cluster, member, term, revision).
    var header = Etcdserverpb_ResponseHeader()
    var failures = 0
    var answered = false
}

extension WatchCoalescer {
    // MARK: Upstream watches

    /// Creates a broadcast's upstream watch on its tenant's stream, opening
    /// the stream if needed.
    func openUpstreamWatch(_ broadcastID: Int, _ core: Core) {
        guard let broadcast = core.broadcasts[broadcastID] else { return }
        let tenant = broadcast.key.tenant
        var stream = core.streams[tenant] ?? UpstreamWatchStream()
        if stream.broadcastIDs.insert(broadcastID).inserted, !broadcast.isShared { stream.catchUpCount += 1 }
        core.streams[tenant] = stream
        switch stream.state {
        case .open: self.sendCreate(broadcastID, core)
        case .idle: self.openStream(tenant, core)
        case .waitingToResume: core.broadcasts[broadcastID]?.state = .resuming
        }
    }

    /// Cancels a broadcast's upstream watch (property 4 of the coalescer).
    func closeUpstreamWatch(_ broadcastID: Int, _ core: Core) {
        guard var broadcast = core.broadcasts.removeValue(forKey: broadcastID) else { return }
        if core.sharedByKey[broadcast.key] == broadcastID { core.sharedByKey[broadcast.key] = nil }
        if let watchID = broadcast.watchID { self.sendCancel(watchID, tenant: broadcast.key.tenant, core) }
        // A create still unanswered is cancelled when its answer arrives: the
        // broadcast is gone from `broadcasts`, `createdAnswer` sees that.
        broadcast.state = .closed
        self.detachFromStream(broadcast, core)
        self.publishGauges(broadcast.key.tenant, core)
    }

    /// Removes a closed broadcast from its stream; closes the stream when it
    /// carries nothing any more (property 5 of the coalescer).
    func detachFromStream(_ broadcast: Broadcast, _ core: Core) {
        let tenant = broadcast.key.tenant
        guard var stream = core.streams[tenant] else { return }
        if stream.broadcastIDs.remove(broadcast.id) != nil, !broadcast.isShared { stream.catchUpCount -= 1 }
        if let watchID = broadcast.watchID { stream.broadcastByWatchID[watchID] = nil }
        core.streams[tenant] = stream
        guard stream.broadcastIDs.isEmpty else { return }
        stream.requests?.cancel()
        core.streams[tenant] = nil
        let waiters = (stream.progressInFlight ?? []) + stream.progressQueued
        for waiter in waiters { self.complete(waiter, header: stream.header, core) }
    }

    private func sendCreate(_ broadcastID: Int, _ core: Core) {
        guard var broadcast = core.broadcasts[broadcastID] else { return }
        let tenant = broadcast.key.tenant
        broadcast.state = .creating
        core.broadcasts[broadcastID] = broadcast
        core.streams[tenant]?.creating.append(broadcastID)
        var message = Etcdserverpb_WatchRequest()
        message.createRequest = broadcast.key.upstreamRequest(startRevision: broadcast.createStartRevision)
        core.streams[tenant]?.requests?.send(message)
    }

    private func sendCancel(_ watchID: Int64, tenant: String, _ core: Core) {
        var message = Etcdserverpb_WatchRequest()
        message.cancelRequest.watchID = watchID
        core.streams[tenant]?.requests?.send(message)
    }

    // MARK: Progress

    func enqueueProgress(_ waiter: ProgressWaiter, tenant: String, _ core: Core) {
        guard var stream = core.streams[tenant], stream.state != .idle else {
            let header = core.streams[tenant]?.header ?? Etcdserverpb_ResponseHeader()
            self.complete(waiter, header: header, core)
            return
        }
        guard stream.progressQueued.count + (stream.progressInFlight?.count ?? 0) < Self.progressWaitersMax
        else {
            self.complete(waiter, header: stream.header, core)
            return
        }
        stream.progressQueued.append(waiter)
        core.streams[tenant] = stream
        self.requestStreamProgress(tenant: tenant, core)
    }

    /// Sends a progress request unless one is in flight (property 3).
    func requestStreamProgress(tenant: String, _ core: Core) {
        guard var stream = core.streams[tenant], case .open = stream.state, stream.progressInFlight == nil
        else { return }
        stream.progressInFlight = stream.progressQueued
        stream.progressQueued = []
        core.streams[tenant] = stream
        var message = Etcdserverpb_WatchRequest()
        message.progressRequest = Etcdserverpb_WatchProgressRequest()
        stream.requests?.send(message)
    }

    /// Answers a waiter with each listed subscription's synced revision.
    func complete(_ waiter: ProgressWaiter, header: Etcdserverpb_ResponseHeader, _ core: Core) {
        var revisions: [WatchSubscriptionID: Int64] = [:]
        for id in waiter.subscriptions {
            guard let subscription = core.subscriptions[id], subscription.announced else { continue }
            revisions[id] = subscription.syncedRevision
        }
        waiter.completion(revisions, header)
    }

    // MARK: The stream

    func openStream(_ tenant: String, _ core: Core) {
        guard var stream = core.streams[tenant] else { return }
        // Unique across streams: a stream dropped and re-made for the tenant
        // must not take the old call's late callbacks for its own.
        core.nextStreamGeneration += 1
        let generation = core.nextStreamGeneration
        stream.creating = []
        stream.broadcastByWatchID = [:]
        stream.answered = false
        guard let connection = self.upstream() else {
            stream.state = .waitingToResume
            core.streams[tenant] = stream
            self.streamClosed(
                tenant, generation: nil, RPCStatus(.unavailable, "no upstream connection is available"), core)
            return
        }
        stream.state = .open(generation: generation)
        var metadata = HPACKHeaders()
        if !tenant.isEmpty { metadata.add(name: "cairn-on-behalf-of", value: tenant) }
        stream.requests = connection.openStream(
            EtcdWatch.watch, options: RPCCallOptions(metadata: metadata),
            onResponse: { response in
                self.eventLoop.execute {
                    self.received(response, tenant: tenant, generation: generation, self.core.value)
                }
            },
            onClose: { status in
                self.eventLoop.execute {
                    self.streamClosed(tenant, generation: generation, status, self.core.value)
                }
            })
        core.streams[tenant] = stream
        for broadcastID in stream.broadcastIDs.sorted() { self.sendCreate(broadcastID, core) }
        if !stream.progressQueued.isEmpty { self.requestStreamProgress(tenant: tenant, core) }
    }

    private func received(
        _ response: Etcdserverpb_WatchResponse, tenant: String, generation: Int, _ core: Core
    ) {
        guard var stream = core.streams[tenant], stream.state == .open(generation: generation) else { return }
        stream.answered = true
        stream.failures = 0
        if response.hasHeader, response.header.revision >= stream.header.revision {
            stream.header = response.header
        }
        core.streams[tenant] = stream
        if response.created {
            self.createdAnswer(response, tenant: tenant, core)
        } else if response.canceled || response.compactRevision != 0 {
            guard
                let broadcastID = core.streams[tenant]?.broadcastByWatchID.removeValue(
                    forKey: response.watchID)
            else { return }
            self.endBroadcast(broadcastID, Self.upstreamEnd(response), core)
        } else if response.watchID == -1 {
            self.streamProgress(response.header, tenant: tenant, core)
        } else if let broadcastID = stream.broadcastByWatchID[response.watchID] {
            if response.events.isEmpty {
                self.broadcastProgress(response.header.revision, broadcastID, header: response.header, core)
            } else {
                self.broadcastEvents(response, broadcastID, core)
            }
        }
    }

    private static func upstreamEnd(_ response: Etcdserverpb_WatchResponse) -> WatchEnd {
        if response.compactRevision != 0 { return .compacted(compactRevision: response.compactRevision) }
        return .canceled(reason: response.cancelReason)
    }

    private func createdAnswer(_ response: Etcdserverpb_WatchResponse, tenant: String, _ core: Core) {
        guard var stream = core.streams[tenant], !stream.creating.isEmpty else { return }
        let broadcastID = stream.creating.removeFirst()
        core.streams[tenant] = stream
        guard var broadcast = core.broadcasts[broadcastID], broadcast.state == .creating else {
            // Abandoned while being created (property 4 of the coalescer).
            if !response.canceled { self.sendCancel(response.watchID, tenant: tenant, core) }
            return
        }
        if response.canceled || response.compactRevision != 0 {
            self.endBroadcast(broadcastID, Self.upstreamEnd(response), core)
            return
        }
        broadcast.state = .live(watchID: response.watchID)
        broadcast.established(createdRevision: response.header.revision)
        core.broadcasts[broadcastID] = broadcast
        core.streams[tenant]?.broadcastByWatchID[response.watchID] = broadcastID
        for member in broadcast.members.sorted() { self.announce(member, broadcast: broadcast, core) }
        if !broadcast.isShared { self.checkCatchUp(broadcastID, core) }
    }

    /// The answer to a progress request: every live watch on the stream is
    /// synced up to its revision; the waiters it answers are completed.
    private func streamProgress(_ header: Etcdserverpb_ResponseHeader, tenant: String, _ core: Core) {
        guard let stream = core.streams[tenant] else { return }
        for broadcastID in stream.broadcastByWatchID.values.sorted() {
            self.broadcastProgress(header.revision, broadcastID, header: header, core)
        }
        guard var current = core.streams[tenant] else { return }
        let answered = current.progressInFlight ?? []
        current.progressInFlight = nil
        core.streams[tenant] = current
        for waiter in answered { self.complete(waiter, header: header, core) }
        if !current.progressQueued.isEmpty { self.requestStreamProgress(tenant: tenant, core) }
    }

    /// The call ended. Resumable endings put every broadcast in `resuming`
    /// and open a new call after a delay; too many in a row, or a refusal,
    /// cancel the tenant's subscribers.
    func streamClosed(_ tenant: String, generation: Int?, _ status: RPCStatus, _ core: Core) {
        guard var stream = core.streams[tenant] else { return }
        if let generation {
            guard stream.state == .open(generation: generation) else { return }
        }
        stream.requests = nil
        stream.creating = []
        stream.broadcastByWatchID = [:]
        stream.failures = stream.answered ? 1 : stream.failures + 1
        stream.answered = false
        if let inFlight = stream.progressInFlight {
            stream.progressQueued = inFlight + stream.progressQueued
            stream.progressInFlight = nil
        }
        for broadcastID in stream.broadcastIDs { core.broadcasts[broadcastID]?.state = .resuming }
        guard Self.isResumable(status), stream.failures <= self.configuration.resumeAttemptsMax else {
            core.streams[tenant] = stream
            self.failTenant(tenant, reason: WatchReason.upstreamLost(status.description), core)
            return
        }
        stream.state = .waitingToResume
        core.streams[tenant] = stream
        let exponent = min(stream.failures - 1, 16)
        let delay = min(
            self.configuration.resumeDelay.nanoseconds << exponent,
            self.configuration.resumeDelayMax.nanoseconds)
        self.eventLoop.scheduleTask(in: .nanoseconds(delay)) {
            let core = self.core.value
            guard let stream = core.streams[tenant], stream.state == .waitingToResume else { return }
            self.openStream(tenant, core)
        }
    }

    /// Refusals that a new call would only repeat.
    private static func isResumable(_ status: RPCStatus) -> Bool {
        switch status.code {
        case .permissionDenied, .unauthenticated, .invalidArgument, .unimplemented, .failedPrecondition:
            false
        default:
            true
        }
    }

    /// Ends every subscription of a tenant and drops its stream.
    func failTenant(_ tenant: String, reason: String, _ core: Core) {
        guard let stream = core.streams[tenant] else { return }
        stream.requests?.cancel()
        for broadcastID in stream.broadcastIDs.sorted() {
            self.endBroadcast(broadcastID, .canceled(reason: reason), core)
        }
        if let remaining = core.streams.removeValue(forKey: tenant) {
            let waiters = (remaining.progressInFlight ?? []) + remaining.progressQueued
            for waiter in waiters { self.complete(waiter, header: remaining.header, core) }
        }
        self.publishGauges(tenant, core)
    }
}
