/// The binary wire and disk format of Raft values: `Message`, `Entry`, `Snapshot`,
/// `HardState`, and batches of messages.
///
/// Why a hand-written format: the core imports nothing but the standard library, and the
/// peer transport needs bytes that are compact (varints), versioned (a leading byte, so a
/// later format can be told apart), and safe to decode from an untrusted or damaged source:
/// every decoder returns a `MessageDecodeError` instead of trapping, never allocates more
/// than the input's size, and refuses input above a caller-given byte limit.
///
/// Layout of format version 1 (all integers are LEB128 varints unless marked `u8`):
/// ```
/// Message   = version:u8 body
/// body      = kind:u8 flags:u8 from to term logTerm index commit rejectHint
///             entryCount Entry* contextLength context [Snapshot if flags.hasSnapshot]
/// flags     = bit 0 reject, bit 1 isLeadershipTransfer, bit 2 hasSnapshot (others zero)
/// Entry     = term index kind:u8 dataLength data
/// Snapshot  = index term voterCount voter* learnerCount learner* dataLength data
/// HardState = version:u8 term vote commit
/// Batch     = version:u8 messageCount (messageLength Message)*
/// ```
/// `Entry.encoded()` and `Snapshot.encoded()` are `version:u8` followed by the same bodies.
public enum RaftCoding {
    /// The format version written by this code; decoders accept only this version.
    public static let version: UInt8 = 1
    /// Default input limit: larger input is refused with `MessageDecodeError.oversized`.
    /// Snapshots travel inside messages, so the default is generous; a transport should pass
    /// its own frame limit.
    public static let decodedBytesMaxDefault = 256 << 20
    /// Default bound on the number of messages in one decoded batch.
    public static let batchMessagesMaxDefault = 1 << 16
    /// Terms, indexes and commit indexes above this are refused as `invalidValue`: no real
    /// log gets near it, and below it the node's `+ 1` arithmetic cannot overflow. Member ids
    /// are not bounded (they may be random 64-bit numbers).
    public static let logPositionMax: UInt64 = 1 << 62
}

/// Why bytes could not be decoded. Always an operating condition (a damaged frame, a peer
/// running another version), never a reason to crash.
public enum MessageDecodeError: Error, Sendable, Hashable {
    /// The input ended in the middle of a value.
    case truncated
    /// The input is larger than the caller's limit.
    case oversized(bytes: Int, bytesMax: Int)
    /// The leading version byte is not one this code understands.
    case unsupportedVersion(UInt8)
    /// A message kind byte outside `MessageKind`.
    case unknownMessageKind(UInt8)
    /// An entry kind byte outside `EntryKind`.
    case unknownEntryKind(UInt8)
    /// A varint longer than 10 bytes or above `UInt64.max`.
    case malformedVarint
    /// A batch declares more messages than the caller's limit.
    case tooManyMessages(count: UInt64, messagesMax: Int)
    /// Well-formed bytes describing an impossible value (the reason says which).
    case invalidValue(String)
    /// Bytes left over after a complete value.
    case trailingBytes(Int)
}

// MARK: public API

extension Message {
    /// The message in format version 1 (see `RaftCoding`).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: encodedSize)
        writer.byte(RaftCoding.version)
        writer.message(self)
        return writer.bytes
    }

    /// Decodes bytes written by `encoded()`. Refuses input above `bytesMax` bytes, unknown
    /// versions or kinds, truncated or trailing bytes, and structurally impossible messages
    /// (see `validateStructure`), so the node never sees a value that breaks its invariants.
    public init(decoding bytes: [UInt8], bytesMax: Int = RaftCoding.decodedBytesMaxDefault)
        throws(MessageDecodeError)
    {
        try checkSize(bytes.count, bytesMax: bytesMax)
        var reader = ByteReader(bytes)
        try reader.expectVersion()
        self = try reader.message()
        try reader.expectEnd()
    }

    /// Several messages in one buffer (one transport frame for a whole `Ready`). Sizes are
    /// computed first, so each message (and any snapshot data in it) is copied only once.
    public static func encodeBatch(_ messages: [Message]) -> [UInt8] {
        var sizes: [Int] = []
        sizes.reserveCapacity(messages.count)
        var capacity = 1 + ByteWriter.varintSize(UInt64(messages.count))
        for message in messages {
            let size = message.encodedSize
            sizes.append(size)
            capacity += ByteWriter.varintSize(UInt64(size)) + size
        }
        var writer = ByteWriter(capacity: capacity)
        writer.byte(RaftCoding.version)
        writer.varint(UInt64(messages.count))
        for (message, size) in zip(messages, sizes) {
            writer.varint(UInt64(size))
            writer.byte(RaftCoding.version)
            writer.message(message)
        }
        return writer.bytes
    }

    /// Decodes a buffer written by `encodeBatch(_:)`, all or nothing: one bad message fails
    /// the whole batch (a frame is damaged as a whole).
    public static func decodeBatch(
        _ bytes: [UInt8], bytesMax: Int = RaftCoding.decodedBytesMaxDefault,
        messagesMax: Int = RaftCoding.batchMessagesMaxDefault
    ) throws(MessageDecodeError) -> [Message] {
        try checkSize(bytes.count, bytesMax: bytesMax)
        var reader = ByteReader(bytes)
        try reader.expectVersion()
        let count = try reader.varint()
        guard count <= UInt64(max(messagesMax, 0)) else {
            throw .tooManyMessages(count: count, messagesMax: messagesMax)
        }
        // Every message takes at least two bytes, so a huge count cannot force a huge
        // allocation: it fails as truncated instead.
        guard count <= UInt64(reader.remaining / 2) else { throw .truncated }
        var messages: [Message] = []
        messages.reserveCapacity(Int(count))
        for _ in 0..<count {
            let length = try reader.length()
            let end = reader.position + length
            try reader.expectVersion()
            let message = try reader.message()
            guard reader.position == end else {
                throw reader.position < end ? .trailingBytes(end - reader.position) : .truncated
            }
            messages.append(message)
        }
        try reader.expectEnd()
        return messages
    }

    /// Exactly `encoded().count`, computed without encoding.
    public var encodedSize: Int {
        var size = 3  // version, kind, flags
        for value in [from, to, term, logTerm, index, commit, rejectHint] {
            size += ByteWriter.varintSize(value)
        }
        size += ByteWriter.varintSize(UInt64(entries.count))
        for entry in entries { size += entry.encodedBodySize }
        size += ByteWriter.lengthPrefixedSize(context.count)
        if let snapshot { size += snapshot.encodedBodySize }
        return size
    }
}

extension Entry {
    var encodedBodySize: Int {
        ByteWriter.varintSize(term) + ByteWriter.varintSize(index) + 1
            + ByteWriter.lengthPrefixedSize(data.count)
    }
}

extension Snapshot {
    var encodedBodySize: Int {
        var size = ByteWriter.varintSize(index) + ByteWriter.varintSize(term)
        for group in [confState.voters, confState.learners] {
            size += ByteWriter.varintSize(UInt64(group.count))
            for node in group { size += ByteWriter.varintSize(node) }
        }
        return size + ByteWriter.lengthPrefixedSize(data.count)
    }
}

extension Entry {
    /// The entry alone in format version 1 (for a log on disk).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 1 + encodedBodySize)
        writer.byte(RaftCoding.version)
        writer.entry(self)
        return writer.bytes
    }

    /// Decodes bytes written by `encoded()`; an error value for anything else.
    public init(decoding bytes: [UInt8], bytesMax: Int = RaftCoding.decodedBytesMaxDefault)
        throws(MessageDecodeError)
    {
        try checkSize(bytes.count, bytesMax: bytesMax)
        var reader = ByteReader(bytes)
        try reader.expectVersion()
        self = try reader.entry()
        try reader.expectEnd()
    }
}

extension Snapshot {
    /// The snapshot (position, membership and data) in format version 1.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 1 + encodedBodySize)
        writer.byte(RaftCoding.version)
        writer.snapshot(self)
        return writer.bytes
    }

    /// Decodes bytes written by `encoded()`; an error value for anything else. No size limit
    /// by default: snapshots are read from the member's own disk, may exceed any message
    /// limit, and decoding never allocates more than the input it is given.
    public init(decoding bytes: [UInt8], bytesMax: Int = .max) throws(MessageDecodeError) {
        try checkSize(bytes.count, bytesMax: bytesMax)
        var reader = ByteReader(bytes)
        try reader.expectVersion()
        self = try reader.snapshot()
        try reader.expectEnd()
    }
}

extension HardState {
    /// Term, vote and commit in format version 1 (at most 31 bytes).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 31)
        writer.byte(RaftCoding.version)
        writer.varint(term)
        writer.varint(vote)
        writer.varint(commit)
        return writer.bytes
    }

    /// Decodes bytes written by `encoded()`; an error value for anything else.
    public init(decoding bytes: [UInt8]) throws(MessageDecodeError) {
        try checkSize(bytes.count, bytesMax: 64)
        var reader = ByteReader(bytes)
        try reader.expectVersion()
        let term = try reader.logPosition()
        let vote = try reader.varint()
        let commit = try reader.logPosition()
        try reader.expectEnd()
        self.init(term: term, vote: vote, commit: commit)
    }
}

private func checkSize(_ count: Int, bytesMax: Int) throws(MessageDecodeError) {
    guard count <= bytesMax else { throw .oversized(bytes: count, bytesMax: bytesMax) }
}

// MARK: writing

/// Appends values in the wire format to a growing buffer.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    /// Bytes `varint(value)` writes: one per started group of seven bits.
    static func varintSize(_ value: UInt64) -> Int {
        value < 0x80 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    static func lengthPrefixedSize(_ count: Int) -> Int { varintSize(UInt64(count)) + count }

    /// LEB128: seven bits per byte, low bits first, high bit set on all but the last byte.
    mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func lengthPrefixed(_ data: [UInt8]) {
        varint(UInt64(data.count))
        bytes.append(contentsOf: data)
    }

    mutating func message(_ message: Message) {
        byte(message.kind.rawValue)
        var flags: UInt8 = 0
        if message.reject { flags |= MessageFlags.reject }
        if message.isLeadershipTransfer { flags |= MessageFlags.leadershipTransfer }
        if message.snapshot != nil { flags |= MessageFlags.hasSnapshot }
        byte(flags)
        for value in [
            message.from, message.to, message.term, message.logTerm, message.index, message.commit,
            message.rejectHint,
        ] {
            varint(value)
        }
        varint(UInt64(message.entries.count))
        for entry in message.entries { self.entry(entry) }
        lengthPrefixed(message.context)
        if let snapshot = message.snapshot { self.snapshot(snapshot) }
    }

    mutating func entry(_ entry: Entry) {
        varint(entry.term)
        varint(entry.index)
        byte(entry.kind.rawValue)
        lengthPrefixed(entry.data)
    }

    mutating func snapshot(_ snapshot: Snapshot) {
        varint(snapshot.index)
        varint(snapshot.term)
        // Sorted, so equal snapshots encode to equal bytes.
        for group in [snapshot.confState.voters, snapshot.confState.learners] {
            varint(UInt64(group.count))
            for node in group.sorted() { varint(node) }
        }
        lengthPrefixed(snapshot.data)
    }
}

enum MessageFlags {
    static let reject: UInt8 = 1 << 0
    static let leadershipTransfer: UInt8 = 1 << 1
    static let hasSnapshot: UInt8 = 1 << 2
    static let known: UInt8 = reject | leadershipTransfer | hasSnapshot
}

// MARK: reading

/// Reads values in the wire format, checking every length against what is left.
///
/// Invariants:
/// 1. `0 <= position <= bytes.count`.
/// 2. No read allocates more than `remaining` bytes.
struct ByteReader {
    let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    mutating func byte() throws(MessageDecodeError) -> UInt8 {
        guard position < bytes.count else { throw .truncated }
        defer { position += 1 }
        return bytes[position]
    }

    /// A term or index: a varint at most `RaftCoding.logPositionMax`.
    mutating func logPosition() throws(MessageDecodeError) -> UInt64 {
        let value = try varint()
        guard value <= RaftCoding.logPositionMax else {
            throw .invalidValue("term or index \(value) too large")
        }
        return value
    }

    mutating func varint() throws(MessageDecodeError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try self.byte()
            if shift == 63 && byte > 1 { throw .malformedVarint }  // the tenth byte holds one bit
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
            if shift > 63 { throw .malformedVarint }
        }
    }

    /// A length that must fit in what is left of the input.
    mutating func length() throws(MessageDecodeError) -> Int {
        let length = try varint()
        guard length <= UInt64(remaining) else { throw .truncated }
        return Int(length)
    }

    mutating func lengthPrefixedBytes() throws(MessageDecodeError) -> [UInt8] {
        let length = try self.length()
        defer { position += length }
        return Array(bytes[position..<position + length])
    }

    mutating func expectVersion() throws(MessageDecodeError) {
        let version = try byte()
        guard version == RaftCoding.version else { throw .unsupportedVersion(version) }
    }

    func expectEnd() throws(MessageDecodeError) {
        guard remaining == 0 else { throw .trailingBytes(remaining) }
    }

    mutating func message() throws(MessageDecodeError) -> Message {
        let kindByte = try byte()
        guard let kind = MessageKind(rawValue: kindByte) else { throw .unknownMessageKind(kindByte) }
        let flags = try byte()
        guard flags & ~MessageFlags.known == 0 else { throw .invalidValue("unknown message flags \(flags)") }
        let from = try varint()
        let to = try varint()
        var message = Message(kind: kind, from: from, to: to, term: try logPosition())
        message.logTerm = try logPosition()
        message.index = try logPosition()
        message.commit = try logPosition()
        message.rejectHint = try logPosition()
        message.reject = flags & MessageFlags.reject != 0
        message.isLeadershipTransfer = flags & MessageFlags.leadershipTransfer != 0
        let entryCount = try varint()
        // An entry takes at least four bytes: a huge count fails as truncated, unallocated.
        guard entryCount <= UInt64(remaining / 4) else { throw .truncated }
        if entryCount > 0 {
            message.entries.reserveCapacity(Int(entryCount))
            for _ in 0..<entryCount { message.entries.append(try entry()) }
        }
        message.context = try lengthPrefixedBytes()
        if flags & MessageFlags.hasSnapshot != 0 { message.snapshot = try snapshot() }
        try message.validateStructure()
        return message
    }

    mutating func entry() throws(MessageDecodeError) -> Entry {
        let term = try logPosition()
        let index = try logPosition()
        let kindByte = try byte()
        guard let kind = EntryKind(rawValue: kindByte) else { throw .unknownEntryKind(kindByte) }
        return Entry(term: term, index: index, kind: kind, data: try lengthPrefixedBytes())
    }

    mutating func snapshot() throws(MessageDecodeError) -> Snapshot {
        let index = try logPosition()
        let term = try logPosition()
        let voters = try nodeSet()
        let learners = try nodeSet()
        guard voters.isDisjoint(with: learners) else {
            throw .invalidValue("a node is both voter and learner")
        }
        let data = try lengthPrefixedBytes()
        return Snapshot(
            index: index, term: term, confState: ConfState(voters: voters, learners: learners), data: data)
    }

    private mutating func nodeSet() throws(MessageDecodeError) -> Set<NodeID> {
        let count = try varint()
        guard count <= UInt64(remaining) else { throw .truncated }
        var nodes = Set<NodeID>(minimumCapacity: Int(count))
        for _ in 0..<count {
            let node = try varint()
            guard node != noNode, nodes.insert(node).inserted else {
                throw .invalidValue("invalid or repeated member id \(node)")
            }
        }
        return nodes
    }
}

extension Message {
    /// Structural checks that keep a decoded message from breaking `RaftNode`'s invariants
    /// (which trap, being programmer errors for locally built values):
    /// 1. Appended entries are contiguous from `index + 1`, with terms in `1...term`, never
    ///    decreasing and not below `logTerm` (Entry invariants 1 and 2).
    /// 2. A snapshot message carries a non-empty snapshot with a term.
    /// 3. Forwarded proposals carry at least one entry.
    func validateStructure() throws(MessageDecodeError) {
        switch kind {
        case .append:
            var expectedIndex = index &+ 1
            var previousTerm = logTerm
            for entry in entries {
                guard entry.index == expectedIndex, entry.index != 0 else {
                    throw .invalidValue("append entries are not contiguous from \(index + 1)")
                }
                guard entry.term >= 1, entry.term >= previousTerm, entry.term <= term else {
                    throw .invalidValue("append entry \(entry.index) has term \(entry.term) out of order")
                }
                expectedIndex = entry.index &+ 1
                previousTerm = entry.term
            }
        case .snapshot:
            guard let snapshot, !snapshot.isEmpty, snapshot.term >= 1 else {
                throw .invalidValue("snapshot message without a snapshot")
            }
        case .propose:
            guard !entries.isEmpty else { throw .invalidValue("proposal without entries") }
        default:
            break
        }
    }
}
