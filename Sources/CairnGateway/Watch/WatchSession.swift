import CairnAPI
import CairnRPC
import Foundation
import NIOCore

/// One client's Watch stream on the gateway, as etcd's server would run it,
/// with its watches served by the shared `WatchCoalescer`.
///
/// It gives the client etcd's stream semantics on top of shared upstream
/// watches: its own watch IDs (allocated per stream as etcd does, or chosen
/// by the client), `created` answers in the order of the creates (etcd's
/// clients match them first-in first-out), no response of a watch before
/// its `created`, cancel, RequestProgress answered with a revision synced
/// with this client's own events, periodic `progress_notify`, and fragments
/// when the client asked for them. Responses are rewritten by `outbound`
/// (the tenant's prefix stripped) on the way out.
///
/// Lives on its writer's event loop (the client connection's); coalescer
/// deliveries hop there in order.
///
/// Properties:
/// 1. Control answers (created, refused creates, progress answers) leave in
///    the order of the requests that caused them: `control` holds them, and
///    a watch's responses wait in its `held` list until its created is out.
/// 2. A watch's responses waiting in `held` and `outbound` number at most
///    `clientBufferedResponsesMax`; past it the watch is cancelled with
///    `WatchReason.tooSlow` (the client's other watches are untouched).
/// 3. `outbound` is empty whenever the writer is writable (it drains on
///    `onWritable`), so responses leave in the order they were produced.
/// 4. Once `closed`, every subscription has been given back and nothing is
///    sent.
public final class WatchSession: RPCStreamHandler {
    public typealias Request = Etcdserverpb_WatchRequest
    public typealias Inbound = (Etcdserverpb_WatchCreateRequest) throws(RPCStatus) ->
        Etcdserverpb_WatchCreateRequest
    public typealias Outbound = (Etcdserverpb_WatchResponse) -> Etcdserverpb_WatchResponse

    enum State {
        case open
        case closed
    }

    /// One client watch from its create to its cancel.
    struct ClientWatch {
        let subscriptionID: WatchSubscriptionID
        let progressNotify: Bool
        let fragment: Bool
        /// Its created answer left: responses may follow directly.
        var active = false
        /// Responses produced before its created could leave (property 1).
        var held: [Etcdserverpb_WatchResponse] = []
        /// Of its responses, how many wait in `outbound`.
        var queued = 0
        /// An event went out since the last progress tick (etcd elides the
        /// next periodic notification then).
        var eventsSinceTick = false
    }

    /// A slot in the control order (property 1).
    enum ControlSlot {
        /// A create: its answer leaves once the coalescer created the watch.
        case create(watchID: Int64, answer: Etcdserverpb_WatchResponse?)
        /// A ready answer (a refused create).
        case answer(Etcdserverpb_WatchResponse)
        /// A progress request: asked of the coalescer once it is first in
        /// line (so every earlier create is answered), answered when it replies.
        case progress(answer: Etcdserverpb_WatchResponse?, asked: Bool)
    }

    let writer: any WatchResponseWriter
    let coalescer: WatchCoalescer
    let tenant: String
    let watchesMax: Int
    let configuration: WatchSessionConfiguration
    let inbound: Inbound
    let outbound: Outbound
    let onWatchLimitReached: () -> Void
    var state = State.open
    var watches: [Int64: ClientWatch] = [:]
    var watchBySubscription: [WatchSubscriptionID: Int64] = [:]
    var control: [ControlSlot] = []
    var outboundQueue: [(watchID: Int64?, response: Etcdserverpb_WatchResponse)] = []
    var outboundHead = 0
    var nextWatchID: Int64 = 0
    /// The latest upstream header this session saw, for answers it makes itself.
    var header = Etcdserverpb_ResponseHeader()
    var progressTask: Scheduled<Void>?

    /// - Parameters:
    ///   - inbound: rewrites a create into the tenant's namespace; a thrown
    ///     status refuses that create as etcd refuses a forbidden one.
    ///   - outbound: rewrites every response on its way to the client.
    ///   - watchesMax: the tenant's cap on open watches (all its sessions).
    ///   - onWatchLimitReached: counts a create refused at that cap (metrics).
    public init(
        writer: any WatchResponseWriter, coalescer: WatchCoalescer, tenant: String, watchesMax: Int = .max,
        configuration: WatchSessionConfiguration = .init(), inbound: @escaping Inbound,
        outbound: @escaping Outbound, onWatchLimitReached: @escaping () -> Void = {}
    ) {
        self.writer = writer
        self.coalescer = coalescer
        self.tenant = tenant
        self.watchesMax = watchesMax
        self.configuration = configuration
        self.inbound = inbound
        self.outbound = outbound
        self.onWatchLimitReached = onWatchLimitReached
        writer.onWritable = { [weak self] in self?.drain() }
    }

    /// The periodic progress tick runs only while a watch of the stream
    /// asked for progress notifications: streams without one (most) keep
    /// no timer.
    private func scheduleProgressTick() {
        self.progressTask = self.writer.eventLoop.assumeIsolated().scheduleTask(
            in: self.configuration.progressNotifyInterval
        ) { [weak self] in
            guard let self, case .open = self.state else { return }
            self.progressTick()
            if self.watches.values.contains(where: \.progressNotify) {
                self.scheduleProgressTick()
            } else {
                self.progressTask = nil
            }
        }
    }

    // MARK: RPCStreamHandler

    public func received(_ request: Etcdserverpb_WatchRequest) {
        guard case .open = self.state else { return }
        switch request.requestUnion {
        case .createRequest(let create): self.create(create)
        case .cancelRequest(let cancel): self.cancel(cancel.watchID)
        case .progressRequest:
            self.control.append(.progress(answer: nil, asked: false))
            self.flushControl()
        case nil: break
        }
    }

    /// etcd keeps serving watches after the client half-closes.
    public func receivedEnd() {}

    public func cancelled() {
        self.close()
    }

    // MARK: Requests

    private func create(_ request: Etcdserverpb_WatchCreateRequest) {
        if Self.isEmptyRange(request) {
            self.refuse(watchID: -1, reason: WatchReason.emptyRange)
            return
        }
        let watchID: Int64
        if request.watchID != 0 {
            guard self.watches[request.watchID] == nil else {
                self.refuse(watchID: -1, reason: WatchReason.duplicateWatchID)
                return
            }
            watchID = request.watchID
        } else {
            while self.watches[self.nextWatchID] != nil { self.nextWatchID += 1 }
            watchID = self.nextWatchID
            self.nextWatchID += 1
        }
        let upstream: Etcdserverpb_WatchCreateRequest
        do throws(RPCStatus) {
            upstream = try self.inbound(request)
        } catch {
            self.refuse(watchID: request.watchID, reason: WatchReason.grpcText(error))
            return
        }
        let subscriptionID = self.coalescer.makeSubscriptionID()
        self.watches[watchID] = ClientWatch(
            subscriptionID: subscriptionID, progressNotify: request.progressNotify, fragment: request.fragment
        )
        self.watchBySubscription[subscriptionID] = watchID
        if request.progressNotify && self.progressTask == nil { self.scheduleProgressTick() }
        self.control.append(.create(watchID: watchID, answer: nil))
        let session = NIOLoopBound(self, eventLoop: self.writer.eventLoop)
        let eventLoop = self.writer.eventLoop
        self.coalescer.subscribe(
            subscriptionID, tenant: self.tenant, request: upstream, watchesMax: self.watchesMax
        ) { delivery in
            eventLoop.execute { session.value.delivered(delivery, subscriptionID: subscriptionID) }
        }
    }

    /// etcd's normalisation: an empty key is `\0`; a range end of `\0` means
    /// "every key from key on"; a key at or past a real range end is empty.
    static func isEmptyRange(_ request: Etcdserverpb_WatchCreateRequest) -> Bool {
        let key = request.key.isEmpty ? Data([0]) : request.key
        let end = request.rangeEnd
        guard !end.isEmpty, end != Data([0]) else { return false }
        return !key.lexicographicallyPrecedes(end)
    }

    private func refuse(watchID: Int64, reason: String) {
        var response = Etcdserverpb_WatchResponse()
        response.header = self.header
        response.watchID = watchID
        response.created = true
        response.canceled = true
        response.cancelReason = reason
        self.control.append(.answer(response))
        self.flushControl()
    }

    private func cancel(_ watchID: Int64) {
        guard let watch = self.watches.removeValue(forKey: watchID) else { return }
        self.watchBySubscription[watch.subscriptionID] = nil
        self.coalescer.unsubscribe(watch.subscriptionID)
        var canceled = Etcdserverpb_WatchResponse()
        canceled.header = self.header
        canceled.watchID = watchID
        canceled.canceled = true
        if watch.active {
            // At once, where its events stop: a progress answer still in line
            // no longer covers this watch.
            self.emit(canceled, watchID: nil)
            return
        }
        // Not yet answered: its created (made up if the coalescer has not
        // answered) then the cancel, in the create's place.
        guard let index = self.createSlotIndex(watchID) else { return }
        guard case .create(_, let answer) = self.control[index] else { return }
        var created = answer ?? Etcdserverpb_WatchResponse()
        if answer == nil {
            created.header = self.header
            created.watchID = watchID
            created.created = true
        }
        self.control[index] = .answer(created)
        self.control.insert(.answer(canceled), at: index + 1)
        self.flushControl()
    }

    private func createSlotIndex(_ watchID: Int64) -> Int? {
        self.control.firstIndex {
            if case .create(let id, _) = $0 { return id == watchID }
            return false
        }
    }

    // MARK: Deliveries from the coalescer

    func delivered(_ delivery: WatchDelivery, subscriptionID: WatchSubscriptionID) {
        guard case .open = self.state, let watchID = self.watchBySubscription[subscriptionID] else { return }
        switch delivery {
        case .created(let header):
            self.header = header
            var created = Etcdserverpb_WatchResponse()
            created.header = header
            created.watchID = watchID
            created.created = true
            if let index = self.createSlotIndex(watchID) {
                self.control[index] = .create(watchID: watchID, answer: created)
            }
            self.flushControl()
        case .response(let response):
            if response.header.revision >= self.header.revision { self.header = response.header }
            var outgoing = response
            outgoing.watchID = watchID
            self.produce(outgoing, for: watchID)
        case .ended(let end):
            self.ended(watchID, end)
        }
    }

    /// A watch's response: straight out once the watch is active, else held.
    private func produce(_ response: Etcdserverpb_WatchResponse, for watchID: Int64) {
        guard var watch = self.watches[watchID] else { return }
        if !response.events.isEmpty { watch.eventsSinceTick = true }
        if watch.active {
            self.watches[watchID] = watch
            self.emit(response, watchID: watchID)
            return
        }
        watch.held.append(response)
        self.watches[watchID] = watch
        if watch.held.count > self.configuration.clientBufferedResponsesMax { self.tooSlow(watchID) }
    }

    private func ended(_ watchID: Int64, _ end: WatchEnd) {
        guard let watch = self.watches.removeValue(forKey: watchID) else { return }
        self.watchBySubscription[watch.subscriptionID] = nil
        var response = Etcdserverpb_WatchResponse()
        response.header = self.header
        response.watchID = watchID
        response.canceled = true
        switch end {
        case .compacted(let compactRevision):
            response.compactRevision = compactRevision
        case .canceled(let reason):
            response.cancelReason = reason
        case .watchLimitReached(let reason):
            response.cancelReason = reason
            self.onWatchLimitReached()
        }
        if watch.active {
            self.emit(response, watchID: nil)
            return
        }
        guard let index = self.createSlotIndex(watchID), case .create(_, let answer) = self.control[index]
        else {
            return
        }
        if let answer {
            // Created, waiting its turn: the created, what it held, then the end.
            self.control[index] = .answer(answer)
            let tail = watch.held.map { ControlSlot.answer($0) } + [.answer(response)]
            self.control.insert(contentsOf: tail, at: index + 1)
        } else if case .compacted = end {
            // etcd answers created first, then the compaction cancel.
            var created = Etcdserverpb_WatchResponse()
            created.header = self.header
            created.watchID = watchID
            created.created = true
            self.control[index] = .answer(created)
            self.control.insert(.answer(response), at: index + 1)
        } else {
            // A refused create: one answer, created and canceled.
            response.created = true
            response.watchID = -1
            self.control[index] = .answer(response)
        }
        self.flushControl()
    }

    /// Sends control answers that are first in line (property 1).
    private func flushControl() {
        while case .open = self.state, let first = self.control.first {
            switch first {
            case .create(let watchID, let answer):
                guard let answer else { return }
                self.control.removeFirst()
                self.emit(answer, watchID: nil)
                self.activate(watchID)
            case .answer(let answer):
                self.control.removeFirst()
                self.emit(answer, watchID: nil)
            case .progress(let answer, let asked):
                if let answer {
                    self.control.removeFirst()
                    self.emit(answer, watchID: nil)
                } else {
                    if !asked { self.askProgress() }
                    return
                }
            }
        }
    }

    private func activate(_ watchID: Int64) {
        guard var watch = self.watches[watchID] else { return }
        let held = watch.held
        watch.held = []
        watch.active = true
        self.watches[watchID] = watch
        for response in held { self.emit(response, watchID: watchID) }
    }

    /// Asks the coalescer for the progress answer at the head of `control`.
    private func askProgress() {
        self.control[0] = .progress(answer: nil, asked: true)
        let subscriptions = self.watches.values.map(\.subscriptionID)
        let session = NIOLoopBound(self, eventLoop: self.writer.eventLoop)
        let eventLoop = self.writer.eventLoop
        self.coalescer.requestProgress(tenant: self.tenant, subscriptions: subscriptions) {
            revisions, header in
            eventLoop.execute { session.value.progressAnswered(revisions, header) }
        }
    }

    private func progressAnswered(
        _ revisions: [WatchSubscriptionID: Int64], _ header: Etcdserverpb_ResponseHeader
    ) {
        guard case .open = self.state, case .progress(nil, true) = self.control.first else { return }
        if header.revision >= self.header.revision { self.header = header }
        var answer = Etcdserverpb_WatchResponse()
        answer.header = header
        // Every watch of this stream has had every event up to the lowest.
        answer.header.revision = revisions.values.min() ?? self.header.revision
        answer.watchID = -1
        self.control[0] = .progress(answer: answer, asked: true)
        self.flushControl()
    }

    // MARK: Periodic progress

    private func progressTick() {
        guard case .open = self.state else { return }
        var due: [WatchSubscriptionID] = []
        for (watchID, var watch) in self.watches where watch.progressNotify && watch.active {
            if !watch.eventsSinceTick { due.append(watch.subscriptionID) }
            watch.eventsSinceTick = false
            self.watches[watchID] = watch
        }
        guard !due.isEmpty else { return }
        let session = NIOLoopBound(self, eventLoop: self.writer.eventLoop)
        let eventLoop = self.writer.eventLoop
        self.coalescer.requestProgress(tenant: self.tenant, subscriptions: due) { revisions, header in
            eventLoop.execute { session.value.notifyProgress(revisions, header) }
        }
    }

    private func notifyProgress(
        _ revisions: [WatchSubscriptionID: Int64], _ header: Etcdserverpb_ResponseHeader
    ) {
        for (subscriptionID, revision) in revisions.sorted(by: { $0.key < $1.key }) {
            guard let watchID = self.watchBySubscription[subscriptionID],
                self.watches[watchID]?.active == true
            else { continue }
            var response = Etcdserverpb_WatchResponse()
            response.header = header
            response.header.revision = revision
            response.watchID = watchID
            self.emit(response, watchID: watchID)
        }
    }

    // MARK: Output

    /// Rewrites, fragments if asked, and sends or queues (property 3).
    private func emit(_ response: Etcdserverpb_WatchResponse, watchID: Int64?) {
        guard case .open = self.state else { return }
        let rewritten = self.outbound(response)
        let pieces: [Etcdserverpb_WatchResponse]
        if let watchID, self.watches[watchID]?.fragment == true {
            pieces = watchFragments(rewritten, bytesMax: self.configuration.fragmentBytesMax)
        } else {
            pieces = [rewritten]
        }
        for piece in pieces {
            if self.outboundHead == self.outboundQueue.count, self.writer.isWritable {
                guard self.writer.send(piece) else { return self.close() }
                continue
            }
            self.outboundQueue.append((watchID, piece))
            guard let watchID, var watch = self.watches[watchID] else { continue }
            watch.queued += 1
            self.watches[watchID] = watch
            if watch.queued > self.configuration.clientBufferedResponsesMax { return self.tooSlow(watchID) }
        }
    }

    /// Sends what waited while the client was slow.
    func drain() {
        while case .open = self.state, self.outboundHead < self.outboundQueue.count, self.writer.isWritable {
            let (watchID, response) = self.outboundQueue[self.outboundHead]
            self.outboundHead += 1
            if let watchID { self.watches[watchID]?.queued -= 1 }
            guard self.writer.send(response) else { return self.close() }
        }
        if self.outboundHead == self.outboundQueue.count {
            self.outboundQueue = []
            self.outboundHead = 0
        }
    }

    /// Cancels a watch whose client does not keep up (property 2): its
    /// waiting responses are dropped and a cancel with the reason is queued.
    private func tooSlow(_ watchID: Int64) {
        guard let watch = self.watches[watchID] else { return }
        let remaining = self.outboundQueue[self.outboundHead...].filter { $0.watchID != watchID }
        self.outboundQueue = Array(remaining)
        self.outboundHead = 0
        var heldWatch = watch
        heldWatch.held = []
        self.watches[watchID] = heldWatch
        self.coalescer.unsubscribe(watch.subscriptionID)
        self.ended(
            watchID, .canceled(reason: WatchReason.tooSlow(self.configuration.clientBufferedResponsesMax)))
    }

    /// Gives every subscription back (property 4).
    private func close() {
        guard case .open = self.state else { return }
        self.state = .closed
        self.progressTask?.cancel()
        self.progressTask = nil
        self.writer.onWritable = nil
        for watch in self.watches.values { self.coalescer.unsubscribe(watch.subscriptionID) }
        self.watches = [:]
        self.watchBySubscription = [:]
        self.control = []
        self.outboundQueue = []
        self.outboundHead = 0
    }
}
