import CairnCore

/// Raft's hard state: what a member must remember across restarts to never
/// vote twice in a term or forget a commit it announced.
public struct HardState: Equatable, Sendable {
    public var term: UInt64
    /// The member voted for in `term`, 0 for none.
    public var vote: UInt64
    public var commit: UInt64

    public init(term: UInt64, vote: UInt64, commit: UInt64) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// One Raft log entry as the WAL stores it: the index and term the caller
/// assigned, and opaque bytes (the Raft layer encodes the entry kind and
/// data inside them).
public struct LogEntry: Equatable, Sendable {
    public var index: UInt64
    public var term: UInt64
    public var payload: [UInt8]

    public init(index: UInt64, term: UInt64, payload: [UInt8]) {
        self.index = index
        self.term = term
        self.payload = payload
    }
}

/// Records that a snapshot at `index`/`term` is durable in the snapshot
/// store, so entries up to `index` are no longer needed.
///
/// Semantics on replay (as etcd's WAL): `WALRecovery.entries` holds the
/// entries above the newest marker (or above the snapshot index passed to
/// `WriteAheadLog.open`, when the caller had to fall back to an older
/// snapshot); entries above it are kept, so Raft decides about them. If the
/// log ends below `index` (a snapshot installed from the leader), the log
/// is replaced: it becomes empty and the next entry must be `index + 1`.
/// Write the marker only after `SnapshotStore.save` returned.
public struct SnapshotMarker: Equatable, Sendable {
    public var index: UInt64
    public var term: UInt64

    public init(index: UInt64, term: UInt64) {
        self.index = index
        self.term = term
    }
}

/// A record the caller appends to the WAL.
public enum WALRecord: Equatable, Sendable {
    /// A Raft entry. An entry at an index the log already holds supersedes
    /// that entry and every later one (Raft's conflict rule).
    case entry(LogEntry)
    case hardState(HardState)
    case snapshotMarker(SnapshotMarker)
}

/// The on-disk record kinds. Values are part of the format: never reuse one.
enum RecordType: UInt8 {
    case segmentHeader = 1
    case entry = 2
    case hardState = 3
    case snapshotMarker = 4
}

/// The first record of every segment: identifies the file as a Cairn WAL
/// segment of a known format version, and repeats its name's numbers so a
/// renamed or misplaced file is caught.
struct SegmentHeader: Equatable {
    static let magic: [UInt8] = Array("CAIRNWAL".utf8)
    static let version: UInt16 = 1

    var sequence: UInt64
    var firstIndex: UInt64
}

/// The frame around every record:
///
///     offset 0  length  UInt32 LE   bytes of type + payload (>= 1)
///     offset 4  crc     UInt32 LE   CRC-32C of length, type and payload
///     offset 8  type    UInt8
///     offset 9  payload
///
/// The CRC covers the length field too, so a flipped length bit is caught
/// rather than silently re-framing the rest of the segment.
enum RecordFrame {
    static let headerBytes = 8

    static func encode(type: RecordType, payload: [UInt8]) -> [UInt8] {
        let length = UInt32(payload.count + 1)
        var lengthField = ByteWriter(capacity: 4)
        lengthField.write(length)
        var crc = CRC32C.update(CRC32C.initial, lengthField.bytes)
        crc = CRC32C.update(crc, CollectionOfOne(type.rawValue))
        crc = CRC32C.finalize(CRC32C.update(crc, payload))
        var writer = ByteWriter(capacity: headerBytes + Int(length))
        writer.write(length)
        writer.write(crc)
        writer.write(type.rawValue)
        writer.write(contentsOf: payload)
        return writer.bytes
    }

    /// The result of reading one frame from a segment's bytes.
    enum Parse {
        case record(type: UInt8, payload: ArraySlice<UInt8>, end: Int)
        /// The frame runs past the end of the data: what a torn write leaves.
        case incomplete(String)
        /// The frame is complete but wrong: bad length or checksum.
        case invalid(String)
    }

    static func parse(_ bytes: [UInt8], at offset: Int, recordBytesMax: Int) -> Parse {
        let available = bytes.count - offset
        guard available >= headerBytes else {
            return .incomplete("\(available) bytes where a record header needs \(headerBytes)")
        }
        var reader = ByteReader(bytes[offset..<(offset + headerBytes)])
        let length = Int(reader.readUInt32()!)
        let stored = reader.readUInt32()!
        guard length >= 1, length + headerBytes <= recordBytesMax else {
            return .invalid("length field \(length) out of range")
        }
        guard available - headerBytes >= length else {
            return .incomplete("record claims \(length) bytes, \(available - headerBytes) remain")
        }
        let body = bytes[(offset + headerBytes)..<(offset + headerBytes + length)]
        var crc = CRC32C.update(CRC32C.initial, bytes[offset..<(offset + 4)])
        crc = CRC32C.finalize(CRC32C.update(crc, body))
        guard crc == stored else {
            return .invalid("checksum mismatch (stored \(hexadecimal(UInt64(stored), width: 8)))")
        }
        return .record(type: body.first!, payload: body.dropFirst(), end: offset + headerBytes + length)
    }

    /// Whether any complete, checksum-valid frame starts after `offset`.
    /// A damaged record followed by a valid one is corruption in the middle
    /// of the log, never a torn tail.
    /// Only frames starting before `limit` count: the zeros after the last
    /// non-zero byte hold none.
    static func validFrameExists(in bytes: [UInt8], after offset: Int, before limit: Int, recordBytesMax: Int)
        -> Bool
    {
        var candidate = offset + 1
        while candidate < limit, candidate + headerBytes < bytes.count {
            // Cheap filter before the checksum: a frame's type byte is a known one.
            if RecordType(rawValue: bytes[candidate + headerBytes]) != nil,
                case .record = parse(bytes, at: candidate, recordBytesMax: recordBytesMax)
            {
                return true
            }
            candidate += 1
        }
        return false
    }
}

/// Payload encodings of each record type.
enum RecordCodec {
    static func encode(_ record: WALRecord) -> [UInt8] {
        var writer = ByteWriter()
        switch record {
        case .entry(let entry):
            writer.write(entry.index)
            writer.write(entry.term)
            writer.write(contentsOf: entry.payload)
            return RecordFrame.encode(type: .entry, payload: writer.bytes)
        case .hardState(let state):
            writer.write(state.term)
            writer.write(state.vote)
            writer.write(state.commit)
            return RecordFrame.encode(type: .hardState, payload: writer.bytes)
        case .snapshotMarker(let marker):
            writer.write(marker.index)
            writer.write(marker.term)
            return RecordFrame.encode(type: .snapshotMarker, payload: writer.bytes)
        }
    }

    static func encode(_ header: SegmentHeader) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(contentsOf: SegmentHeader.magic)
        writer.write(SegmentHeader.version)
        writer.write(header.sequence)
        writer.write(header.firstIndex)
        return RecordFrame.encode(type: .segmentHeader, payload: writer.bytes)
    }

    /// A decoded record, or nil with the reason when a checksum-valid record
    /// still does not make sense (an unknown type or a wrong payload size).
    enum Decoded {
        case header(SegmentHeader)
        case record(WALRecord)
    }

    static func decode(type: UInt8, payload: ArraySlice<UInt8>) -> Result<Decoded, DecodeFailure> {
        var reader = ByteReader(payload)
        switch RecordType(rawValue: type) {
        case .segmentHeader:
            guard reader.readBytes(8).map(Array.init) == SegmentHeader.magic else {
                return .failure(DecodeFailure("segment header has the wrong magic"))
            }
            guard let version = reader.readUInt16(), version == SegmentHeader.version else {
                return .failure(DecodeFailure("unsupported segment format version"))
            }
            guard let sequence = reader.readUInt64(), let first = reader.readUInt64(), reader.remaining == 0
            else {
                return .failure(DecodeFailure("segment header has the wrong size"))
            }
            return .success(.header(SegmentHeader(sequence: sequence, firstIndex: first)))
        case .entry:
            guard let index = reader.readUInt64(), let term = reader.readUInt64() else {
                return .failure(DecodeFailure("entry record shorter than its index and term"))
            }
            let entry = LogEntry(index: index, term: term, payload: Array(reader.readRemaining()))
            return .success(.record(.entry(entry)))
        case .hardState:
            guard let term = reader.readUInt64(), let vote = reader.readUInt64(),
                let commit = reader.readUInt64(), reader.remaining == 0
            else { return .failure(DecodeFailure("hard state record has the wrong size")) }
            return .success(.record(.hardState(HardState(term: term, vote: vote, commit: commit))))
        case .snapshotMarker:
            guard let index = reader.readUInt64(), let term = reader.readUInt64(), reader.remaining == 0
            else {
                return .failure(DecodeFailure("snapshot marker record has the wrong size"))
            }
            return .success(.record(.snapshotMarker(SnapshotMarker(index: index, term: term))))
        case nil:
            return .failure(DecodeFailure("unknown record type \(type)"))
        }
    }

    struct DecodeFailure: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }
}
