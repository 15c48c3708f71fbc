import Testing

@testable import CairnRaft

/// Round trips of every value through the wire format, and decoding of damaged input:
/// random bytes, every truncation, single-byte corruption, oversized input. Decoding bad
/// input must return an error value; a crash fails the whole test run.
@Suite struct MessageCodingTests {
    /// A message of `kind` with every field set to something non-default.
    static func sample(_ kind: MessageKind, random: inout SplitMix64) -> Message {
        var message = Message(kind: kind, from: 1 + random.next() % 1000, to: 7, term: 90 + random.next() % 9)
        message.logTerm = 3
        message.index = random.next() % 2 == 0 ? 41 : RaftCoding.logPositionMax
        message.to = random.next() % 2 == 0 ? 7 : UInt64.max  // member ids are not bounded
        message.commit = 1 << 40
        message.reject = random.next() % 2 == 0
        message.rejectHint = random.next() % RaftCoding.logPositionMax
        message.context = (0..<Int(random.next() % 20)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        message.isLeadershipTransfer = random.next() % 2 == 0
        switch kind {
        case .append:
            message.index = 41
            message.entries = (0..<UInt64(1 + random.next() % 4)).map { offset in
                Entry(
                    term: 3 + offset / 2, index: 42 + offset, kind: offset == 1 ? .confChange : .normal,
                    data: (0..<Int(random.next() % 300)).map { UInt8(truncatingIfNeeded: $0) })
            }
        case .propose:
            message.entries = [
                Entry(term: 0, index: 0, data: [1, 2, 3]), Entry(term: 0, index: 0, data: []),
            ]
        case .snapshot:
            message.snapshot = Snapshot(
                index: 500, term: 8, confState: ConfState(voters: [1, 2, 3], learners: [4]),
                data: (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        default:
            break
        }
        return message
    }

    static var allSamples: [Message] {
        var random = SplitMix64(seed: 11)
        return MessageKind.allCases.flatMap { kind in (0..<3).map { _ in sample(kind, random: &random) } }
    }

    @Test func everyKindRoundTripsWithEveryField() throws {
        for message in Self.allSamples {
            let decoded = try Message(decoding: message.encoded())
            #expect(decoded == message, "\(message.kind)")
        }
    }

    @Test func encodedSizeIsExactAndBatchesAddOnlyFraming() {
        let messages = Self.allSamples
        for message in messages { #expect(message.encodedSize == message.encoded().count, "\(message.kind)") }
        var big = Message(kind: .append, from: .max, to: 1 << 35, term: RaftCoding.logPositionMax)
        big.entries = [Entry(term: 1 << 62, index: 1, data: Array(repeating: 1, count: 200))]
        #expect(big.encodedSize == big.encoded().count)
        let framing = messages.reduce(0) { $0 + ByteWriter.varintSize(UInt64($1.encodedSize)) }
        let payload = messages.reduce(0) { $0 + $1.encodedSize }
        #expect(
            Message.encodeBatch(messages).count == 1 + ByteWriter.varintSize(UInt64(messages.count)) + framing
                + payload)
        for value: UInt64 in [0, 1, 127, 128, 16383, 16384, 1 << 62, .max] {
            var writer = ByteWriter(capacity: 10)
            writer.varint(value)
            #expect(writer.bytes.count == ByteWriter.varintSize(value), "\(value)")
        }
    }

    @Test func aDefaultMessageIsSmall() {
        let heartbeat = Message(kind: .heartbeat, from: 1, to: 2, term: 5)
        // version, kind, flags, seven one-byte varints, entry count, context length.
        #expect(heartbeat.encoded() == [1, 6, 0, 1, 2, 5, 0, 0, 0, 0, 0, 0])
    }

    @Test func batchesRoundTripIncludingTheEmptyOne() throws {
        let messages = Self.allSamples
        #expect(try Message.decodeBatch(Message.encodeBatch(messages)) == messages)
        #expect(try Message.decodeBatch(Message.encodeBatch([])) == [])
    }

    @Test func entrySnapshotAndHardStateRoundTrip() throws {
        let entries = [
            Entry(term: 1, index: 1),
            Entry(
                term: RaftCoding.logPositionMax, index: RaftCoding.logPositionMax, kind: .confChange,
                data: [9, 9]),
            Entry(term: 2, index: 300, data: Array(repeating: 0xFF, count: 70_000)),
        ]
        for entry in entries { #expect(try Entry(decoding: entry.encoded()) == entry) }
        let snapshots = [
            Snapshot(),
            Snapshot(index: 9, term: 2, confState: ConfState(voters: [1, 5], learners: [9]), data: [1]),
        ]
        for snapshot in snapshots { #expect(try Snapshot(decoding: snapshot.encoded()) == snapshot) }
        for hardState in [HardState(), HardState(term: 1 << 62, vote: .max, commit: 1 << 33)] {
            #expect(try HardState(decoding: hardState.encoded()) == hardState)
        }
    }

    @Test func equalSnapshotsEncodeToEqualBytes() {
        let first = Snapshot(index: 1, term: 1, confState: ConfState(voters: [9, 1, 5, 3, 7]))
        var second = Snapshot(index: 1, term: 1, confState: ConfState(voters: [7]))
        second.confState.voters.formUnion([3, 5, 1, 9])
        #expect(first.encoded() == second.encoded())
    }

    @Test func everyTruncationIsAnErrorValue() {
        for message in Self.allSamples {
            let bytes = message.encoded()
            for length in 0..<bytes.count {
                #expect(throws: MessageDecodeError.self) {
                    try Message(decoding: Array(bytes.prefix(length)))
                }
            }
        }
        let batch = Message.encodeBatch(Array(Self.allSamples.prefix(6)))
        for length in 0..<batch.count {
            #expect(throws: MessageDecodeError.self) { try Message.decodeBatch(Array(batch.prefix(length))) }
        }
    }

    @Test func trailingBytesAreRefused() {
        let bytes = Message(kind: .vote, from: 1, to: 2, term: 3).encoded()
        #expect(throws: MessageDecodeError.trailingBytes(1)) { try Message(decoding: bytes + [0]) }
        #expect(throws: MessageDecodeError.trailingBytes(2)) {
            try HardState(decoding: HardState(term: 1).encoded() + [0, 0])
        }
    }

    @Test func unknownVersionKindAndFlagsAreRefused() {
        var bytes = Message(kind: .vote, from: 1, to: 2, term: 3).encoded()
        bytes[0] = 2
        #expect(throws: MessageDecodeError.unsupportedVersion(2)) { try Message(decoding: bytes) }
        bytes[0] = 1
        bytes[1] = 200
        #expect(throws: MessageDecodeError.unknownMessageKind(200)) { try Message(decoding: bytes) }
        bytes[1] = 2
        bytes[2] = 0x80
        #expect(throws: MessageDecodeError.self) { try Message(decoding: bytes) }
        let entry = Entry(term: 1, index: 1).encoded()
        #expect(throws: MessageDecodeError.unknownEntryKind(7)) {
            try Entry(decoding: [entry[0], entry[1], entry[2], 7, entry[4]])
        }
    }

    @Test func oversizedInputIsRefusedBeforeDecoding() {
        var random = SplitMix64(seed: 3)
        let bytes = Self.sample(.snapshot, random: &random).encoded()
        #expect(throws: MessageDecodeError.oversized(bytes: bytes.count, bytesMax: 100)) {
            try Message(decoding: bytes, bytesMax: 100)
        }
        let batch = Message.encodeBatch(
            Array(repeating: Message(kind: .heartbeat, from: 1, to: 2, term: 1), count: 5))
        #expect(throws: MessageDecodeError.tooManyMessages(count: 5, messagesMax: 4)) {
            try Message.decodeBatch(batch, messagesMax: 4)
        }
        #expect(throws: MessageDecodeError.oversized(bytes: batch.count, bytesMax: 10)) {
            try Message.decodeBatch(batch, bytesMax: 10)
        }
    }

    @Test func hugeDeclaredCountsAndLengthsFailWithoutAllocating() {
        // version, kind heartbeat, flags, 7 zero varints, then an entry count of 2^63.
        var bytes: [UInt8] = [1, 6, 0, 0, 0, 0, 0, 0, 0, 0]
        bytes += [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]
        #expect(throws: MessageDecodeError.truncated) { try Message(decoding: bytes) }
        // A varint of eleven bytes, and one above UInt64.max.
        let long: [UInt8] = [1] + Array(repeating: 0xFF, count: 10) + [0x01]
        #expect(throws: MessageDecodeError.malformedVarint) { try HardState(decoding: long) }
        let above: [UInt8] = [1] + Array(repeating: 0xFF, count: 9) + [0x02, 0, 0]
        #expect(throws: MessageDecodeError.malformedVarint) { try HardState(decoding: above) }
        // A batch claiming 2^40 messages in a few bytes.
        #expect(throws: MessageDecodeError.self) {
            try Message.decodeBatch([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20], messagesMax: .max)
        }
    }

    @Test func termsAndIndexesBeyondTheLogPositionBoundAreRefused() {
        let tooLarge = RaftCoding.logPositionMax + 1
        for field in 0..<5 {
            var message = Message(kind: .heartbeat, from: 1, to: 2, term: 1)
            switch field {
            case 0: message.term = tooLarge
            case 1: message.logTerm = tooLarge
            case 2: message.index = tooLarge
            case 3: message.commit = tooLarge
            default: message.rejectHint = tooLarge
            }
            #expect(throws: MessageDecodeError.self) { try Message(decoding: message.encoded()) }
        }
        #expect(throws: MessageDecodeError.self) {
            try Entry(decoding: Entry(term: 1, index: tooLarge).encoded())
        }
        #expect(throws: MessageDecodeError.self) {
            try HardState(decoding: HardState(term: tooLarge).encoded())
        }
        #expect(throws: MessageDecodeError.self) {
            try Snapshot(decoding: Snapshot(index: tooLarge, term: 1).encoded())
        }
    }

    @Test func structurallyImpossibleMessagesAreRefused() {
        var gap = Message(kind: .append, from: 1, to: 2, term: 3)
        gap.index = 5
        gap.entries = [Entry(term: 3, index: 6), Entry(term: 3, index: 8)]
        #expect(throws: MessageDecodeError.self) { try Message(decoding: gap.encoded()) }
        var decreasing = Message(kind: .append, from: 1, to: 2, term: 3)
        decreasing.entries = [Entry(term: 3, index: 1), Entry(term: 2, index: 2)]
        #expect(throws: MessageDecodeError.self) { try Message(decoding: decreasing.encoded()) }
        var future = Message(kind: .append, from: 1, to: 2, term: 3)
        future.entries = [Entry(term: 4, index: 1)]
        #expect(throws: MessageDecodeError.self) { try Message(decoding: future.encoded()) }
        let emptySnapshot = Message(kind: .snapshot, from: 1, to: 2, term: 3)
        #expect(throws: MessageDecodeError.self) { try Message(decoding: emptySnapshot.encoded()) }
        let emptyProposal = Message(kind: .propose, from: 1, to: 2, term: 3)
        #expect(throws: MessageDecodeError.self) { try Message(decoding: emptyProposal.encoded()) }
        var overlapping = Message(kind: .snapshot, from: 1, to: 2, term: 3)
        overlapping.snapshot = Snapshot(
            index: 4, term: 2, confState: ConfState(voters: [1, 2], learners: [2]))
        #expect(throws: MessageDecodeError.self) { try Message(decoding: overlapping.encoded()) }
    }

    /// Random bytes, and valid messages with random bytes flipped: decoding either succeeds
    /// (then re-encoding round-trips) or returns an error; it never traps.
    @Test func fuzzedInputNeverCrashes() throws {
        var random = SplitMix64(seed: 2026)
        for _ in 0..<20_000 {
            let length = Int(random.next() % 64)
            // Small byte values half the time, so structure (kinds, counts) is often plausible.
            let byteBound: UInt64 = random.next() % 2 == 0 ? 16 : 256
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next() % byteBound) }
            if random.next() % 2 == 0 { bytes.insert(1, at: 0) }  // a valid version byte, to get further
            if let message = try? Message(decoding: bytes) {
                #expect(try Message(decoding: message.encoded()) == message)
            }
            _ = try? Message.decodeBatch(bytes)
            _ = try? Entry(decoding: bytes)
            _ = try? Snapshot(decoding: bytes)
            _ = try? HardState(decoding: bytes)
        }
        let samples = Self.allSamples
        var corruptedRefused = 0
        var corruptedDecoded = 0
        for round in 0..<20_000 {
            var bytes = samples[round % samples.count].encoded()
            for _ in 0..<(1 + random.next() % 3) {
                let position = Int(random.next() % UInt64(bytes.count))
                bytes[position] = UInt8(truncatingIfNeeded: random.next())
            }
            do throws(MessageDecodeError) {
                let message = try Message(decoding: bytes)
                corruptedDecoded += 1
                #expect(try Message(decoding: message.encoded()) == message)
            } catch {
                corruptedRefused += 1
            }
        }
        // Both outcomes must occur, or the fuzzer explores only one side of the decoder.
        #expect(corruptedDecoded > 0)
        #expect(corruptedRefused > 0)
    }
}
