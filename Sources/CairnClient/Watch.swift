import CairnAPI
import CairnRPC
import NIOCore

/// The responses of one watch, as an async sequence.
///
/// Each element is a server response: a batch of events (all at revisions
/// newer than the previous batch's), or a progress notification (no events,
/// `header.revision` is how far the store is known to have been watched).
/// The sequence ends with an error when the watch ends for any reason other
/// than the consumer leaving (`WatchError`).
///
/// Iterate it once: when that iteration stops (a `break`, the loop's task
/// being cancelled, or the iterator being dropped) the watch is cancelled on
/// the server. A plain `AsyncThrowingStream` would keep the watch running as
/// long as the sequence value lives, which in practice is "until the
/// enclosing scope ends", so the iterator owns the cancellation instead.
public struct WatchStream: AsyncSequence, Sendable {
    public typealias Element = Etcdserverpb_WatchResponse

    /// The ID the server gave this watch on its stream.
    public let watchID: Int64
    let responses: AsyncThrowingStream<Etcdserverpb_WatchResponse, any Error>
    let multiplexer: WatchMultiplexer
    let localID: Int

    public func makeAsyncIterator() -> Iterator {
        Iterator(
            base: self.responses.makeAsyncIterator(),
            cancellation: WatchCancellation(multiplexer: self.multiplexer, localID: self.localID))
    }

    /// Delivers the watch's responses; dropping it cancels the watch.
    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<Etcdserverpb_WatchResponse, any Error>.Iterator
        let cancellation: WatchCancellation

        public mutating func next() async throws -> Etcdserverpb_WatchResponse? {
            try await self.base.next()
        }
    }
}

/// Cancels a watch when the last iterator holding it goes away.
final class WatchCancellation: Sendable {
    let multiplexer: WatchMultiplexer
    let localID: Int

    init(multiplexer: WatchMultiplexer, localID: Int) {
        self.multiplexer = multiplexer
        self.localID = localID
    }

    deinit {
        self.multiplexer.cancel(localID: self.localID)
    }
}

extension Etcdserverpb_WatchResponse {
    /// Whether this is a progress notification rather than a batch of events.
    public var isProgressNotify: Bool {
        self.events.isEmpty && !self.created && !self.canceled && self.compactRevision == 0
    }
}

extension EtcdClient {
    /// Watches the keys `end` selects from `key`, returning once the server
    /// has created the watch (so writes after this returns are seen).
    ///
    /// - Parameters:
    ///   - startRevision: first revision to report; 0 for "after now". A
    ///     compacted revision ends the sequence with `WatchError.compacted`.
    ///   - prevKV: include each event's previous key-value.
    ///   - filters: event types the server drops (`.noput`, `.nodelete`).
    ///   - progressNotify: have the server send periodic progress notifications
    ///     while the watch is idle.
    /// - Throws: `WatchError` if the server refuses the watch or the stream
    ///   breaks; `RPCStatus(.deadlineExceeded)` if the server does not confirm
    ///   it within the client's `callTimeout`.
    public func watch(
        _ key: some EtcdBytes, end: KeyRangeEnd = .single, startRevision: Int64 = 0, prevKV: Bool = false,
        filters: [Etcdserverpb_WatchCreateRequest.FilterType] = [], progressNotify: Bool = false
    ) async throws -> WatchStream {
        var request = Etcdserverpb_WatchCreateRequest()
        request.key = key.etcdData
        request.rangeEnd = end.rangeEnd(for: request.key)
        request.startRevision = startRevision
        request.prevKv = prevKV
        request.filters = filters
        request.progressNotify = progressNotify
        return try await self.watch(request)
    }

    /// Starts a watch from a create request built by the caller.
    public func watch(_ request: Etcdserverpb_WatchCreateRequest) async throws -> WatchStream {
        let multiplexer = self.nextWatchMultiplexer()
        let localID = multiplexer.makeLocalID()
        let (responses, continuation) = AsyncThrowingStream.makeStream(
            of: Etcdserverpb_WatchResponse.self,
            bufferingPolicy: .bufferingOldest(multiplexer.bufferedResponsesMax))
        continuation.onTermination = { _ in multiplexer.cancel(localID: localID) }
        let created = multiplexer.start(request, continuation: continuation, localID: localID)
        if let timeout = self.callTimeout {
            // Creation is bounded like a unary call; the watch itself is not.
            let deadline = multiplexer.eventLoop.scheduleTask(in: timeout) {
                multiplexer.abandonIfNotCreated(
                    localID: localID, error: RPCStatus(.deadlineExceeded, "context deadline exceeded"))
            }
            created.whenComplete { _ in deadline.cancel() }
        }
        let watchID = try await withTaskCancellationHandler {
            try await created.get()
        } onCancel: {
            multiplexer.cancel(localID: localID)
        }
        return WatchStream(watchID: watchID, responses: responses, multiplexer: multiplexer, localID: localID)
    }

    /// Asks for a progress notification on every watch of this client: each
    /// active watch receives a response with no events whose
    /// `header.revision` bounds the revisions already delivered.
    public func requestProgress() {
        for multiplexer in self.watchMultiplexers { multiplexer.requestProgress() }
    }
}
