import CairnAPI
import CairnCore
import CairnMVCC
import CairnRPC
import Foundation
import NIOCore

/// How one watch stream's responses leave the member's executor.
///
/// Back-pressure: at most one batch per stream is in flight between the
/// executor and the connection. The executor drains the hub only while
/// `ready`; the connection sends the batch and hands readiness back once
/// its stream is writable again (`RPCServerStream.isWritable`/`onWritable`).
/// Meanwhile the hub buffers (bounded) and moves a slow watcher to history
/// catch-up, so a slow client never stalls the executor or other streams.
final class WatchDelivery {
    let send: @Sendable ([WatchResponse]) -> Void
    /// Ends the stream at shutdown.
    let close: @Sendable () -> Void
    /// Executor-only: may a batch be handed to the connection now?
    var ready = true

    init(send: @escaping @Sendable ([WatchResponse]) -> Void, close: @escaping @Sendable () -> Void) {
        self.send = send
        self.close = close
    }
}

extension Member {
    /// Responses handed to a connection at once.
    static let watchResponsesPerBatchMax = 64
    /// How often lagging watchers are caught up from history.
    static let watchCatchUpInterval = TimeAmount.milliseconds(20)
    /// etcd's default progress-notify interval.
    static let watchProgressInterval = TimeAmount.minutes(10)
    /// etcd's fragment size for watchers that ask for fragments.
    static let watchFragmentBytesMax = 1_572_864

    func startTimers() {
        self.eventLoop.execute {
            let catchUp = self.eventLoop.scheduleRepeatedTask(
                initialDelay: Self.watchCatchUpInterval, delay: Self.watchCatchUpInterval
            ) { _ in
                if self.watchHub.watcherCount > 0 { self.stepWatchers() }
            }
            let progress = self.eventLoop.scheduleRepeatedTask(
                initialDelay: Self.watchProgressInterval, delay: Self.watchProgressInterval
            ) { _ in
                self.watchHub.progressTick()
                self.deliverWatchResponses()
            }
            self.appendTimers([catchUp, progress])
        }
    }

    /// Catches lagging watchers up one bounded step and sends what is queued.
    func stepWatchers() {
        self.watchHub.step(store: self.stateMachine.store)
        self.deliverWatchResponses()
    }

    /// Hands each ready stream its next batch of queued responses.
    func deliverWatchResponses() {
        for (streamID, delivery) in self.watchDeliveries where delivery.ready {
            self.deliver(streamID, delivery)
        }
    }

    private func deliver(_ streamID: WatchStreamID, _ delivery: WatchDelivery) {
        guard delivery.ready, self.watchHub.pendingResponses(stream: streamID) > 0 else { return }
        let batch = self.watchHub.drain(
            stream: streamID, responsesMax: Self.watchResponsesPerBatchMax,
            fragmentBytesMax: Self.watchFragmentBytesMax)
        guard !batch.isEmpty else { return }
        delivery.ready = false
        delivery.send(batch)
    }

    // MARK: called from watch sessions (any thread)

    /// Registers a watch stream; `send` runs on the executor with batches,
    /// `close` at shutdown.
    func openWatchStream(
        send: @escaping @Sendable ([WatchResponse]) -> Void, close: @escaping @Sendable () -> Void
    ) -> EventLoopFuture<WatchStreamID> {
        self.eventLoop.submit {
            let streamID = WatchStreamID(self.nextWatchStreamID)
            self.nextWatchStreamID += 1
            self.watchDeliveries[streamID] = WatchDelivery(send: send, close: close)
            return streamID
        }
    }

    /// Ends every watch stream ("server stopped"), so a graceful shutdown
    /// does not wait its whole grace period for watchers that never end.
    /// Returns how many streams it ended.
    @discardableResult
    public func endWatchStreams() async -> Int {
        let ended = try? await self.eventLoop.submit {
            let count = self.watchDeliveries.count
            for (streamID, delivery) in self.watchDeliveries {
                delivery.close()
                self.watchHub.closeStream(streamID)
            }
            self.watchDeliveries.removeAll()
            return count
        }.get()
        return ended ?? 0
    }

    /// The connection sent the last batch and can take more.
    func watchStreamReady(_ streamID: WatchStreamID) {
        self.eventLoop.execute {
            guard let delivery = self.watchDeliveries[streamID] else { return }
            delivery.ready = true
            self.deliver(streamID, delivery)
        }
    }

    func watchCreate(_ request: WatchCreateRequest, stream streamID: WatchStreamID) {
        self.eventLoop.execute {
            self.watchHub.watch(request, stream: streamID)
            self.stepWatchers()
        }
    }

    func watchCancel(_ id: WatchID, stream streamID: WatchStreamID) {
        self.eventLoop.execute {
            _ = self.watchHub.cancel(id, stream: streamID)
            self.deliverWatchResponses()
        }
    }

    func watchProgress(stream streamID: WatchStreamID) {
        self.eventLoop.execute {
            _ = self.watchHub.requestProgress(stream: streamID)
            self.deliverWatchResponses()
        }
    }

    func closeWatchStream(_ streamID: WatchStreamID) {
        self.eventLoop.execute {
            self.watchHub.closeStream(streamID)
            self.watchDeliveries.removeValue(forKey: streamID)
        }
    }
}

/// One Watch RPC: decodes requests for the hub and sends its responses.
///
/// Touched only on the connection's event loop, except `streamID`, which is
/// set once on that loop before any request is forwarded (requests that
/// arrive earlier wait in `early`).
final class WatchSession: RPCStreamHandler, @unchecked Sendable {
    typealias Request = Etcdserverpb_WatchRequest

    private let member: Member
    private let services: MemberServices
    private let stream: NIOLoopBound<RPCServerStream<Etcdserverpb_WatchResponse>>
    private let connectionLoop: any EventLoop
    private var streamID: WatchStreamID?
    private var early: [Request] = []
    private var ended = false

    init(stream: RPCServerStream<Etcdserverpb_WatchResponse>, services: MemberServices) {
        self.member = services.member
        self.services = services
        self.connectionLoop = stream.eventLoop
        self.stream = NIOLoopBound(stream, eventLoop: stream.eventLoop)
        member.openWatchStream(
            send: { [self] batch in self.connectionLoop.execute { self.send(batch) } },
            close: { [self] in
                self.connectionLoop.execute {
                    self.ended = true
                    self.stream.value.finish(MemberServices.status(for: CairnError.stopped))
                }
            }
        ).hop(to: self.connectionLoop).whenSuccess { [self] streamID in
            self.streamID = streamID
            if self.ended {
                self.member.closeWatchStream(streamID)
                return
            }
            let early = self.early
            self.early.removeAll()
            for request in early { self.forward(request, streamID) }
        }
    }

    func received(_ request: Request) {
        guard let streamID else {
            self.early.append(request)
            return
        }
        self.forward(request, streamID)
    }

    private func forward(_ request: Request, _ streamID: WatchStreamID) {
        switch request.requestUnion {
        case .createRequest(let create):
            let context = self.stream.value.context
            self.services.watchCreate(create, stream: streamID, context: context) { [self] refusal in
                self.connectionLoop.execute { self.stream.value.send(refusal) }
            }
        case .cancelRequest(let cancel):
            self.member.watchCancel(WatchID(cancel.watchID), stream: streamID)
        case .progressRequest:
            self.member.watchProgress(stream: streamID)
        case nil:
            break
        }
    }

    /// Sends a batch, then hands readiness back when the stream can take more.
    private func send(_ batch: [WatchResponse]) {
        let stream = self.stream.value
        guard !stream.isFinished else { return }
        for response in batch {
            stream.send(
                WatchConversion.response(response, header: self.services.header(revision: response.revision)))
        }
        guard let streamID else { return }
        if stream.isWritable {
            self.member.watchStreamReady(streamID)
        } else {
            stream.onWritable = { [self] in
                self.stream.value.onWritable = nil
                self.member.watchStreamReady(streamID)
            }
        }
    }

    func receivedEnd() {
        self.end()
        self.stream.value.finish(.ok)
    }

    func cancelled() {
        self.end()
    }

    private func end() {
        guard !self.ended else { return }
        self.ended = true
        if let streamID { self.member.closeWatchStream(streamID) }
    }
}

/// Watch messages between the wire and the hub.
enum WatchConversion {
    static func create(_ wire: Etcdserverpb_WatchCreateRequest) -> WatchCreateRequest {
        WatchCreateRequest(
            key: Key(Array(wire.key)), rangeEnd: Key(Array(wire.rangeEnd)), startRevision: wire.startRevision,
            previousKeyValue: wire.prevKv, noPut: wire.filters.contains(.noput),
            noDelete: wire.filters.contains(.nodelete), progressNotify: wire.progressNotify,
            fragment: wire.fragment, watchID: wire.watchID == 0 ? nil : WatchID(wire.watchID))
    }

    static func response(_ response: WatchResponse, header: Etcdserverpb_ResponseHeader)
        -> Etcdserverpb_WatchResponse
    {
        var wire = Etcdserverpb_WatchResponse()
        wire.header = header
        wire.watchID = response.watchID.rawValue
        wire.created = response.created
        wire.canceled = response.canceled
        wire.compactRevision = response.compactRevision
        wire.cancelReason = response.cancelReason
        wire.fragment = response.fragment
        wire.events = response.events.map { event in
            var wireEvent = Mvccpb_Event()
            wireEvent.type = event.kind == .put ? .put : .delete
            wireEvent.kv = WireConversion.keyValue(event.keyValue)
            if let previous = event.previous { wireEvent.prevKv = WireConversion.keyValue(previous) }
            return wireEvent
        }
        return wire
    }
}
