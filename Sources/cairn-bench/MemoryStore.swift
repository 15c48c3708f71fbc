import CairnAPI
import CairnRPC
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SwiftProtobuf

/// The in-memory map behind `rpc-server`: KV Put and Range, and Watch with
/// live PUT events, enough for etcd clients to round-trip through CairnRPC.
///
/// Every other etcd method answers UNIMPLEMENTED. Single-version values (no
/// history, no compaction, no delete): it exists to test the transport.
final class MemoryStore: Sendable {
    struct Value {
        var value: [UInt8]
        var createRevision: Int64
        var modRevision: Int64
        var version: Int64
    }

    /// A watcher: its key range and how to reach its stream's event loop.
    struct Watcher {
        var key: [UInt8]
        var rangeEnd: [UInt8]
        var deliver: @Sendable (_ watchID: Int64, Mvccpb_Event, _ revision: Int64) -> Void
    }

    struct State {
        var values: [[UInt8]: Value] = [:]
        var revision: Int64 = 1
        var watchers: [Int64: Watcher] = [:]
        var nextWatchID: Int64 = 1
    }

    private let state = NIOLockedValueBox(State())

    func router() -> RPCServiceRouter {
        var router = RPCServiceRouter()
        router.unary(EtcdKV.put) { request, _ in try self.put(request) }
        router.unary(EtcdKV.range) { request, _ in self.range(request) }
        router.streaming(EtcdWatch.watch) { stream in WatchStream(store: self, stream: stream) }
        return router
    }

    static func header(_ revision: Int64) -> Etcdserverpb_ResponseHeader {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = 1
        header.memberID = 1
        header.revision = revision
        header.raftTerm = 1
        return header
    }

    private func put(_ request: Etcdserverpb_PutRequest) throws -> Etcdserverpb_PutResponse {
        guard !request.key.isEmpty else {
            throw RPCStatus(.invalidArgument, "etcdserver: key is not provided")
        }
        let key = [UInt8](request.key)
        // Events are handed to watchers while the lock is held, so each
        // watcher's event loop receives them in revision order.
        let revision = self.state.withLockedValue { state in
            state.revision += 1
            let revision = state.revision
            var entry =
                state.values[key]
                ?? Value(value: [], createRevision: revision, modRevision: revision, version: 0)
            entry.value = [UInt8](request.value)
            entry.modRevision = revision
            entry.version += 1
            state.values[key] = entry
            var event = Mvccpb_Event()
            event.type = .put
            event.kv = Self.keyValue(key, entry)
            for (id, watcher) in state.watchers where Self.contains(watcher.key, watcher.rangeEnd, key) {
                watcher.deliver(id, event, revision)
            }
            return revision
        }
        var response = Etcdserverpb_PutResponse()
        response.header = Self.header(revision)
        return response
    }

    private func range(_ request: Etcdserverpb_RangeRequest) -> Etcdserverpb_RangeResponse {
        let key = [UInt8](request.key)
        let rangeEnd = [UInt8](request.rangeEnd)
        let (revision, matches) = self.state.withLockedValue { state in
            if rangeEnd.isEmpty {
                return (state.revision, state.values[key].map { [(key, $0)] } ?? [])
            }
            let found = state.values.filter { Self.contains(key, rangeEnd, $0.key) }.map {
                ($0.key, $0.value)
            }
            return (state.revision, found.sorted { $0.0.lexicographicallyPrecedes($1.0) })
        }
        var response = Etcdserverpb_RangeResponse()
        response.header = Self.header(revision)
        response.count = Int64(matches.count)
        let limited = request.limit > 0 ? Array(matches.prefix(Int(request.limit))) : matches
        response.more = limited.count < matches.count
        if !request.countOnly {
            response.kvs = limited.map { key, value in
                var kv = Self.keyValue(key, value)
                if request.keysOnly { kv.value = Data() }
                return kv
            }
        }
        return response
    }

    func addWatcher(_ watcher: Watcher) -> (id: Int64, revision: Int64) {
        self.state.withLockedValue { state in
            let id = state.nextWatchID
            state.nextWatchID += 1
            state.watchers[id] = watcher
            return (id, state.revision)
        }
    }

    var revision: Int64 { self.state.withLockedValue { $0.revision } }

    func removeWatcher(_ id: Int64) -> Int64 {
        self.state.withLockedValue { state in
            state.watchers.removeValue(forKey: id)
            return state.revision
        }
    }

    static func keyValue(_ key: [UInt8], _ value: Value) -> Mvccpb_KeyValue {
        var kv = Mvccpb_KeyValue()
        kv.key = Data(key)
        kv.value = Data(value.value)
        kv.createRevision = value.createRevision
        kv.modRevision = value.modRevision
        kv.version = value.version
        return kv
    }

    /// etcd's range rule: empty end = one key; `\0` = every key from `key` on.
    static func contains(_ key: [UInt8], _ rangeEnd: [UInt8], _ candidate: [UInt8]) -> Bool {
        if rangeEnd.isEmpty { return candidate == key }
        if candidate.lexicographicallyPrecedes(key) { return false }
        return rangeEnd == [0] || candidate.lexicographicallyPrecedes(rangeEnd)
    }
}

/// One client's Watch stream on the in-memory store.
final class WatchStream: RPCStreamHandler {
    private let store: MemoryStore
    private let stream: RPCServerStream<Etcdserverpb_WatchResponse>
    private var watchIDs: [Int64] = []

    init(store: MemoryStore, stream: RPCServerStream<Etcdserverpb_WatchResponse>) {
        self.store = store
        self.stream = stream
    }

    func received(_ request: Etcdserverpb_WatchRequest) {
        switch request.requestUnion {
        case .createRequest(let create):
            let bound = NIOLoopBound(self.stream, eventLoop: self.stream.eventLoop)
            let eventLoop = self.stream.eventLoop
            let (id, revision) = self.store.addWatcher(
                MemoryStore.Watcher(key: [UInt8](create.key), rangeEnd: [UInt8](create.rangeEnd)) {
                    watchID, event, revision in
                    eventLoop.execute {
                        var response = Etcdserverpb_WatchResponse()
                        response.header = MemoryStore.header(revision)
                        response.watchID = watchID
                        response.events = [event]
                        bound.value.send(response)
                    }
                })
            self.watchIDs.append(id)
            var response = Etcdserverpb_WatchResponse()
            response.header = MemoryStore.header(revision)
            response.watchID = id
            response.created = true
            self.stream.send(response)
        case .cancelRequest(let cancel):
            let revision = self.store.removeWatcher(cancel.watchID)
            self.watchIDs.removeAll { $0 == cancel.watchID }
            var response = Etcdserverpb_WatchResponse()
            response.header = MemoryStore.header(revision)
            response.watchID = cancel.watchID
            response.canceled = true
            self.stream.send(response)
        case .progressRequest, .none:
            var response = Etcdserverpb_WatchResponse()
            response.header = MemoryStore.header(self.store.revision)
            response.watchID = -1
            self.stream.send(response)
        }
    }

    func receivedEnd() {
        self.removeAll()
        self.stream.finish()
    }

    func cancelled() {
        self.removeAll()
    }

    private func removeAll() {
        for id in self.watchIDs { _ = self.store.removeWatcher(id) }
        self.watchIDs = []
    }
}
