import CairnAPI
import CairnCore
import CairnRPC
import Foundation
import NIOCore

/// Maintenance Snapshot: the state machine's snapshot bytes (taken on the
/// executor, so consistent at one applied index) streamed in chunks, each
/// sent only while the stream is writable.
///
/// Stream layout, shaped as etcd's so `etcdctl snapshot save` accepts it
/// (it requires `size % 512 == 32`): the snapshot bytes, zero padding, the
/// snapshot's length as 8 bytes little-endian ending on a 512-byte
/// boundary, then the SHA-256 of everything before it.
///
/// Limits: the whole snapshot is held in memory while it streams, and its
/// format is Cairn's (checksummed), not bbolt's, so `etcdctl snapshot
/// status/restore` cannot read it; `cairnctl snapshot status/restore` does.
final class SnapshotSender: @unchecked Sendable {
    /// Bytes per streamed message (etcd sends 32 KiB chunks).
    static let chunkBytes = 32 * 1024

    private let stream: NIOLoopBound<RPCServerStream<Etcdserverpb_SnapshotResponse>>
    private let header: Etcdserverpb_ResponseHeader
    private let bytes: [UInt8]
    private var offset = 0

    init(
        stream: RPCServerStream<Etcdserverpb_SnapshotResponse>, header: Etcdserverpb_ResponseHeader,
        bytes: [UInt8]
    ) {
        self.stream = NIOLoopBound(stream, eventLoop: stream.eventLoop)
        self.header = header
        self.bytes = Self.framed(bytes)
    }

    /// The stream layout described on the type.
    static func framed(_ snapshot: [UInt8]) -> [UInt8] {
        var framed = snapshot
        while (framed.count + 8) % 512 != 0 { framed.append(0) }
        for shift in stride(from: 0, to: 64, by: 8) {
            framed.append(UInt8(truncatingIfNeeded: UInt64(snapshot.count) >> shift))
        }
        framed += SHA256.hash(framed)
        return framed
    }

    /// Sends chunks until done or the stream is not writable (then resumes
    /// from `onWritable`). Runs on the stream's event loop.
    func pump() {
        let stream = self.stream.value
        while !stream.isFinished {
            guard stream.isWritable else {
                stream.onWritable = { [self] in
                    self.stream.value.onWritable = nil
                    self.pump()
                }
                return
            }
            let end = min(self.offset + Self.chunkBytes, self.bytes.count)
            var response = Etcdserverpb_SnapshotResponse()
            response.header = self.header
            response.blob = Data(self.bytes[self.offset..<end])
            response.remainingBytes = UInt64(self.bytes.count - end)
            stream.send(response)
            self.offset = end
            if self.offset >= self.bytes.count {
                stream.finish(.ok)
                return
            }
        }
    }
}

/// Handles the (empty) snapshot request stream; the work starts at open.
final class SnapshotSession: RPCStreamHandler {
    typealias Request = Etcdserverpb_SnapshotRequest
    func received(_ request: Request) {}
    func receivedEnd() {}
    func cancelled() {}
}

extension MemberServices {
    func registerSnapshot(_ router: inout RPCServiceRouter) {
        router.streaming(EtcdMaintenance.snapshot) { stream in
            let loop = stream.eventLoop
            let bound = NIOLoopBound(stream, eventLoop: loop)
            let credential = self.auth.credential(stream.context)
            self.member.read { stateMachine in
                try self.authorizeMaintenance(credential, stateMachine)
                return (stateMachine.snapshot(), stateMachine.status.revision)
            }.hop(to: loop).whenComplete { result in
                switch result {
                case .success(let (bytes, revision)):
                    SnapshotSender(stream: bound.value, header: self.header(revision: revision), bytes: bytes)
                        .pump()
                case .failure(let error):
                    bound.value.finish(Self.status(for: error))
                }
            }
            return SnapshotSession()
        }
    }
}
