import CairnCore
import NIOCore

/// The peer wire format: every frame is a 4-byte big-endian length (of what
/// follows it), a 1-byte type and a body. One format for both kinds of
/// connection, so one decoder and one set of limits guard every byte a peer
/// can send.
///
/// A connection opens with `hello` from the dialler; the listener answers
/// `accepted` or `refused` (then closes). A message connection then carries
/// `message` frames one way. A snapshot connection carries
/// `snapshotHeader` (answered `accepted` or `refused`), `snapshotChunk`…
/// (each with the CRC-32C of its data), `snapshotEnd` (the CRC-32C of the
/// chunk checksums), and the listener answers `snapshotAccepted` or `refused`.
enum PeerFrame: Equatable, Sendable {
    case hello(PeerHello)
    case accepted
    case refused(PeerRefusal)
    case message([UInt8])
    case snapshotHeader(totalBytes: UInt64, metadata: [UInt8])
    case snapshotChunk(data: [UInt8], checksum: UInt32)
    case snapshotEnd(checksum: UInt32)
    case snapshotAccepted
}

/// The frame type bytes; values are part of the wire protocol.
enum PeerFrameType: UInt8 {
    case hello = 1
    case accepted = 2
    case refused = 3
    case message = 4
    case snapshotHeader = 16
    case snapshotChunk = 17
    case snapshotEnd = 18
    case snapshotAccepted = 19
}

/// What a dialler says first: which protocol, which cluster, who it is, whom
/// it wants, and what the connection will carry.
struct PeerHello: Equatable, Sendable {
    /// Which stream a connection carries; one byte on the wire.
    enum StreamKind: UInt8, Sendable {
        case messages = 1
        case snapshot = 2
    }

    var protocolVersion: UInt16
    var kind: StreamKind
    var clusterID: UInt64
    var senderID: UInt64
    var receiverID: UInt64
}

/// Why a listener refused a connection or a snapshot; sent to the dialler
/// before closing so both logs say the same thing.
public struct PeerRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    /// The reasons, one byte on the wire.
    public enum Reason: UInt8, Sendable {
        case clusterIDMismatch = 1
        case receiverIDMismatch = 2
        case incompatibleVersion = 3
        case malformedFrame = 4
        case snapshotTooLarge = 5
        case snapshotCorrupt = 6
        case snapshotRejected = 7
        case shuttingDown = 8
    }

    public var reason: Reason
    /// Human-readable detail (IDs and sizes, never payload bytes).
    public var text: String

    public init(_ reason: Reason, _ text: String) {
        self.reason = reason
        self.text = text
    }

    public var description: String { self.text }
}

/// Errors of the framing layer; a connection that raises one is closed.
enum PeerFrameError: Error, Equatable {
    case emptyFrame
    case frameTooLarge(bytes: Int, limit: Int)
    case unknownFrameType(UInt8)
    case truncatedBody(PeerFrameType)
}

/// Fixed sizes of the format.
enum PeerWire {
    /// Bumped on any incompatible change of the frames above.
    static let protocolVersion: UInt16 = 1
    /// Length prefix plus type byte.
    static let frameHeaderBytes = 5
    /// Body bytes of a hello frame.
    static let helloBodyBytes = 2 + 1 + 8 + 8 + 8
    /// Extra body bytes a snapshot chunk carries beside its data (checksum).
    static let chunkOverheadBytes = 4
    /// Extra body bytes of a snapshot header beside its metadata.
    static let snapshotHeaderOverheadBytes = 8
}

extension ByteBuffer {
    /// Appends a frame header: the length of type byte plus `bodyBytes`, then the type.
    mutating func writePeerFrameHeader(_ type: PeerFrameType, bodyBytes: Int) {
        self.writeInteger(UInt32(1 + bodyBytes))
        self.writeInteger(type.rawValue)
    }

    /// Appends `frame` encoded.
    mutating func writePeerFrame(_ frame: PeerFrame) {
        switch frame {
        case .hello(let hello):
            self.writePeerFrameHeader(.hello, bodyBytes: PeerWire.helloBodyBytes)
            self.writeInteger(hello.protocolVersion)
            self.writeInteger(hello.kind.rawValue)
            self.writeInteger(hello.clusterID)
            self.writeInteger(hello.senderID)
            self.writeInteger(hello.receiverID)
        case .accepted:
            self.writePeerFrameHeader(.accepted, bodyBytes: 0)
        case .refused(let refusal):
            let text = Array(refusal.text.utf8)
            self.writePeerFrameHeader(.refused, bodyBytes: 1 + text.count)
            self.writeInteger(refusal.reason.rawValue)
            self.writeBytes(text)
        case .message(let payload):
            self.writePeerFrameHeader(.message, bodyBytes: payload.count)
            self.writeBytes(payload)
        case .snapshotHeader(let totalBytes, let metadata):
            self.writePeerFrameHeader(
                .snapshotHeader, bodyBytes: PeerWire.snapshotHeaderOverheadBytes + metadata.count)
            self.writeInteger(totalBytes)
            self.writeBytes(metadata)
        case .snapshotChunk(let data, let checksum):
            self.writePeerFrameHeader(.snapshotChunk, bodyBytes: PeerWire.chunkOverheadBytes + data.count)
            self.writeInteger(checksum)
            self.writeBytes(data)
        case .snapshotEnd(let checksum):
            self.writePeerFrameHeader(.snapshotEnd, bodyBytes: 4)
            self.writeInteger(checksum)
        case .snapshotAccepted:
            self.writePeerFrameHeader(.snapshotAccepted, bodyBytes: 0)
        }
    }
}

/// Splits the byte stream into frames, refusing any frame longer than
/// `frameBytesMax` before buffering it (a peer cannot make us allocate more).
struct PeerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = PeerFrame

    let frameBytesMax: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.decodeFrame(from: &buffer, frameBytesMax: self.frameBytesMax) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    /// Decodes one frame if `buffer` holds all of it; `nil` (consuming
    /// nothing) otherwise.
    static func decodeFrame(from buffer: inout ByteBuffer, frameBytesMax: Int) throws -> PeerFrame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 1 else { throw PeerFrameError.emptyFrame }
        guard Int(length) <= frameBytesMax else {
            throw PeerFrameError.frameTooLarge(bytes: Int(length), limit: frameBytesMax)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var body = buffer.readSlice(length: Int(length))!
        let typeByte: UInt8 = body.readInteger()!
        guard let type = PeerFrameType(rawValue: typeByte) else {
            throw PeerFrameError.unknownFrameType(typeByte)
        }
        guard let frame = Self.decodeBody(type, &body) else {
            throw PeerFrameError.truncatedBody(type)
        }
        return frame
    }

    /// Decodes a frame body; `nil` if it is too short for its type.
    private static func decodeBody(_ type: PeerFrameType, _ body: inout ByteBuffer) -> PeerFrame? {
        switch type {
        case .hello:
            guard let version: UInt16 = body.readInteger(), let kindByte: UInt8 = body.readInteger(),
                let kind = PeerHello.StreamKind(rawValue: kindByte), let cluster: UInt64 = body.readInteger(),
                let sender: UInt64 = body.readInteger(), let receiver: UInt64 = body.readInteger()
            else { return nil }
            return .hello(
                PeerHello(
                    protocolVersion: version, kind: kind, clusterID: cluster, senderID: sender,
                    receiverID: receiver))
        case .accepted:
            return .accepted
        case .refused:
            guard let reasonByte: UInt8 = body.readInteger() else { return nil }
            let reason = PeerRefusal.Reason(rawValue: reasonByte) ?? .malformedFrame
            let text = body.readString(length: body.readableBytes) ?? ""
            return .refused(PeerRefusal(reason, text))
        case .message:
            return .message(body.readBytes(length: body.readableBytes)!)
        case .snapshotHeader:
            guard let total: UInt64 = body.readInteger() else { return nil }
            return .snapshotHeader(totalBytes: total, metadata: body.readBytes(length: body.readableBytes)!)
        case .snapshotChunk:
            guard let checksum: UInt32 = body.readInteger() else { return nil }
            return .snapshotChunk(data: body.readBytes(length: body.readableBytes)!, checksum: checksum)
        case .snapshotEnd:
            guard let checksum: UInt32 = body.readInteger() else { return nil }
            return .snapshotEnd(checksum: checksum)
        case .snapshotAccepted:
            return .snapshotAccepted
        }
    }
}

/// The running CRC-32C (`CairnCore.CRC32C`) of snapshot chunks: catches
/// corruption that TCP's 16-bit checksum lets through on long transfers.
struct PeerChecksum {
    private(set) var value: UInt32 = 0

    /// Folds `bytes` into the running checksum.
    mutating func update(_ bytes: some Collection<UInt8>) {
        self.value = CRC32C.finalize(CRC32C.update(CRC32C.finalize(self.value), bytes))
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        self.value = CRC32C.finalize(CRC32C.update(CRC32C.finalize(self.value), bytes))
    }

    /// The checksum of `bytes` alone.
    static func of(_ bytes: some Collection<UInt8>) -> UInt32 {
        var checksum = PeerChecksum()
        checksum.update(bytes)
        return checksum.value
    }

    /// Folds a chunk's checksum into a running checksum of checksums: the
    /// end-of-snapshot check that no chunk went missing or out of order,
    /// without a second pass over the data.
    mutating func update(chunkChecksum: UInt32) {
        withUnsafeBytes(of: chunkChecksum.bigEndian) { self.update($0) }
    }
}
