import NIOCore
import SwiftProtobuf

/// gRPC's length-prefixed message framing: one flag byte (1 = compressed), a
/// four-byte big-endian length, then the message.
///
/// The deframer accumulates DATA frame payloads and yields whole messages; it
/// refuses a message longer than `messageBytesMax` as soon as its prefix is
/// read, so an oversized message is never buffered.
struct MessageDeframer {
    /// Why the deframer stopped: each maps to the status gRPC specifies.
    enum Failure: Error, Equatable {
        case tooLarge(length: Int, limit: Int)
        case compressedWithoutEncoding
    }

    static let prefixBytes = 5

    let messageBytesMax: Int
    private var buffer: ByteBuffer?

    init(messageBytesMax: Int) {
        self.messageBytesMax = messageBytesMax
    }

    /// Bytes received but not yet forming a whole message.
    var bufferedBytes: Int { self.buffer?.readableBytes ?? 0 }

    /// Appends a DATA payload. Takes ownership of it when nothing is buffered,
    /// which avoids a copy for the common one-message-per-frame case.
    mutating func append(_ bytes: ByteBuffer) {
        if self.buffer == nil || self.buffer!.readableBytes == 0 {
            self.buffer = bytes
        } else {
            var incoming = bytes
            self.buffer!.writeBuffer(&incoming)
        }
    }

    /// Returns the next whole message, `nil` when more bytes are needed.
    mutating func nextMessage() throws(Failure) -> ByteBuffer? {
        guard var buffer = self.buffer, buffer.readableBytes >= Self.prefixBytes else { return nil }
        let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self)!
        let length = Int(buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)!)
        if length > self.messageBytesMax {
            throw .tooLarge(length: length, limit: self.messageBytesMax)
        }
        if flag != 0 {
            throw .compressedWithoutEncoding
        }
        guard buffer.readableBytes >= Self.prefixBytes + length else { return nil }
        buffer.moveReaderIndex(forwardBy: Self.prefixBytes)
        let message = buffer.readSlice(length: length)!
        self.buffer = buffer.readableBytes == 0 ? nil : buffer
        return message
    }
}

extension ByteBuffer {
    /// Writes `payload` as one length-prefixed, uncompressed gRPC message.
    mutating func writeGRPCMessage(_ payload: [UInt8]) {
        self.reserveCapacity(minimumWritableBytes: MessageDeframer.prefixBytes + payload.count)
        self.writeInteger(UInt8(0))
        self.writeInteger(UInt32(payload.count))
        self.writeBytes(payload)
    }
}

/// A gRPC-framed message that swift-protobuf serializes straight into: the
/// buffer keeps the five-byte prefix before its reader index, so encoding a
/// message costs one allocation and no copy.
struct FramedMessageBytes: SwiftProtobufContiguousBytes {
    private var buffer: ByteBuffer

    init(repeating byte: UInt8, count: Int) {
        self.buffer = ByteBufferAllocator().buffer(capacity: MessageDeframer.prefixBytes + count)
        self.buffer.writeInteger(UInt8(0))
        self.buffer.writeInteger(UInt32(count))
        self.buffer.writeRepeatingByte(byte, count: count)
        self.buffer.moveReaderIndex(forwardBy: MessageDeframer.prefixBytes)
    }

    init<Bytes: Sequence>(_ sequence: Bytes) where Bytes.Element == UInt8 {
        let bytes = Array(sequence)
        self.init(repeating: 0, count: bytes.count)
        self.buffer.setBytes(bytes, at: self.buffer.readerIndex)
    }

    var count: Int { self.buffer.readableBytes }

    func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try self.buffer.withUnsafeReadableBytes(body)
    }

    mutating func withUnsafeMutableBytes<Result>(
        _ body: (UnsafeMutableRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        try self.buffer.withUnsafeMutableReadableBytes(body)
    }

    /// The whole frame, prefix included, ready for a DATA frame.
    var framed: ByteBuffer {
        var whole = self.buffer
        whole.moveReaderIndex(to: 0)
        return whole
    }
}

extension SwiftProtobuf.Message {
    /// This message serialized as one length-prefixed, uncompressed gRPC message.
    func grpcFramed() throws -> ByteBuffer {
        let bytes: FramedMessageBytes = try self.serializedBytes()
        return bytes.framed
    }
}
