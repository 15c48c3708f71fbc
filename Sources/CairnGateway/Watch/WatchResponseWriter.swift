import CairnAPI
import CairnRPC
import NIOCore
import SwiftProtobuf

/// Where a `WatchSession` writes its client's responses: the sending side of
/// the client's Watch call.
///
/// `RPCServerStream` is the real one; the protocol exists so a session can be
/// driven by tests that control writability (a slow reader) exactly. All
/// members are used on `eventLoop` only.
public protocol WatchResponseWriter: AnyObject {
    var eventLoop: any EventLoop { get }
    /// False while too many bytes wait for the client; `onWritable` runs
    /// when they have drained.
    var isWritable: Bool { get }
    var onWritable: (() -> Void)? { get set }
    /// Sends one response; `false` if the call has ended.
    @discardableResult
    func send(_ response: Etcdserverpb_WatchResponse) -> Bool
    /// Ends the call.
    func finish(_ status: RPCStatus)
}

extension RPCServerStream: WatchResponseWriter where Response == Etcdserverpb_WatchResponse {}

/// Splits a response into fragments as etcd does for a watcher created with
/// `fragment`: only when it is at least `bytesMax` and has two or more
/// events; every fragment but the last carries `fragment = true`, and each
/// holds as many events as fit under `bytesMax` (at least one).
func watchFragments(_ response: Etcdserverpb_WatchResponse, bytesMax: Int) -> [Etcdserverpb_WatchResponse] {
    guard response.events.count >= 2, serializedSize(of: response) >= bytesMax else { return [response] }
    var empty = response
    empty.events = []
    empty.fragment = true
    let baseBytes = serializedSize(of: empty)
    var fragments: [Etcdserverpb_WatchResponse] = []
    var current = empty
    var currentBytes = baseBytes
    for event in response.events {
        // Field 11, length-delimited: one tag byte, a varint length, the event.
        let eventBytes = serializedSize(of: event)
        let fieldBytes = 1 + varintBytes(eventBytes) + eventBytes
        if !current.events.isEmpty, currentBytes + fieldBytes >= bytesMax {
            fragments.append(current)
            current = empty
            currentBytes = baseBytes
        }
        current.events.append(event)
        currentBytes += fieldBytes
    }
    current.fragment = false
    fragments.append(current)
    return fragments
}

private func serializedSize<M: SwiftProtobuf.Message>(of message: M) -> Int {
    ((try? message.serializedBytes()) as [UInt8]?)?.count ?? 0
}

private func varintBytes(_ value: Int) -> Int {
    var bytes = 1
    var rest = value >> 7
    while rest > 0 {
        bytes += 1
        rest >>= 7
    }
    return bytes
}
