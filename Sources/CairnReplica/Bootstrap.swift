import CairnCore
import CairnRaft
import CairnStateMachine

/// Starting a new cluster, and the IDs members and clusters go by.
///
/// Like etcd, every initial member writes the *same* first entries: one membership entry
/// per initial member, at indexes 1...N of term 1, each carrying the member's record, and
/// a hard state committing them. Identical logs mean no member needs another's copy, and
/// applying them yields the same member list everywhere.
///
/// IDs are etcd's: a member's ID is the first 8 bytes (big-endian) of the SHA-1 of its
/// sorted peer URLs joined, then the cluster token (then, for a member added at runtime,
/// the Unix time in decimal); the cluster's is the same over its sorted member IDs.
public enum Bootstrap {
    /// etcd's member ID for `peerURLs` in the cluster named `token`; `unixSeconds` is set
    /// for members added at runtime (MemberAdd), nil for initial members.
    public static func memberID(peerURLs: [String], token: String, unixSeconds: Int64? = nil) -> MemberID {
        var bytes = Array(peerURLs.sorted().joined().utf8) + Array(token.utf8)
        if let unixSeconds { bytes += Array(String(unixSeconds).utf8) }
        return MemberID(nonZero(SHA1.prefix64(bytes)))
    }

    /// etcd's cluster ID over the initial members.
    public static func clusterID(memberIDs: [MemberID]) -> ClusterID {
        var bytes: [UInt8] = []
        for id in memberIDs.sorted() {
            for shift in stride(from: 56, through: 0, by: -8) {
                bytes.append(UInt8(truncatingIfNeeded: id.rawValue >> UInt64(shift)))
            }
        }
        return ClusterID(nonZero(SHA1.prefix64(bytes)))
    }

    /// 0 means "nobody" in Raft: a (vanishingly unlikely) zero hash becomes 1.
    private static func nonZero(_ value: UInt64) -> UInt64 { value == 0 ? 1 : value }

    /// Records of `--initial-cluster` (name -> peer URLs) with their IDs, in ID order.
    public static func initialMembers(_ members: [(name: String, peerURLs: [String])], token: String)
        -> [MemberRecord]
    {
        members.map { member in
            MemberRecord(
                id: memberID(peerURLs: member.peerURLs, token: token), name: member.name,
                peerURLs: member.peerURLs)
        }.sorted { $0.id < $1.id }
    }

    /// What a member of a new cluster writes to its empty data directory before it starts
    /// its `Replica` from it: the same on every initial member. Client URLs and names of
    /// the other members are published later through `updateMember`, as etcd does; the
    /// records keep what `--initial-cluster` says.
    public static func newCluster(members: [MemberRecord]) -> RecoveredState {
        var entries: [Entry] = []
        for (offset, record) in members.sorted(by: { $0.id < $1.id }).enumerated() {
            let change = ConfChange(record.isLearner ? .addLearner : .addVoter, node: record.id.rawValue)
            entries.append(
                Entry(
                    term: 1, index: UInt64(offset + 1), kind: .confChange,
                    data: MembershipEntry(change: change, record: record).encoded()))
        }
        return RecoveredState(
            snapshot: nil, hardState: HardState(term: 1, vote: noNode, commit: UInt64(entries.count)),
            entries: entries)
    }
}

/// SHA-1 (FIPS 180-4), only for etcd-compatible IDs: not used for security.
enum SHA1 {
    /// The first 8 bytes of the digest, big-endian.
    static func prefix64(_ message: [UInt8]) -> UInt64 {
        let digest = hash(message)
        return UInt64(digest[0]) << 32 | UInt64(digest[1])
    }

    static func hash(_ message: [UInt8]) -> [UInt32] {
        var state: [UInt32] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0]
        var padded = message
        padded.append(0x80)
        while padded.count % 64 != 56 { padded.append(0) }
        let bitLength = UInt64(message.count) &* 8
        for shift in stride(from: 56, through: 0, by: -8) {
            padded.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift)))
        }
        var words = [UInt32](repeating: 0, count: 80)
        for blockStart in stride(from: 0, to: padded.count, by: 64) {
            for index in 0..<16 {
                let base = blockStart + index * 4
                words[index] =
                    UInt32(padded[base]) << 24 | UInt32(padded[base + 1]) << 16 | UInt32(padded[base + 2])
                    << 8
                    | UInt32(padded[base + 3])
            }
            for index in 16..<80 {
                words[index] = rotate(
                    words[index - 3] ^ words[index - 8] ^ words[index - 14] ^ words[index - 16], 1)
            }
            compress(&state, words)
        }
        return state
    }

    private static func compress(_ state: inout [UInt32], _ words: [UInt32]) {
        var (a, b, c, d, e) = (state[0], state[1], state[2], state[3], state[4])
        for index in 0..<80 {
            let mixed: UInt32
            let constant: UInt32
            switch index {
            case 0..<20: (mixed, constant) = ((b & c) | (~b & d), 0x5A82_7999)
            case 20..<40: (mixed, constant) = (b ^ c ^ d, 0x6ED9_EBA1)
            case 40..<60: (mixed, constant) = ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
            default: (mixed, constant) = (b ^ c ^ d, 0xCA62_C1D6)
            }
            let next = rotate(a, 5) &+ mixed &+ e &+ constant &+ words[index]
            (e, d, c, b, a) = (d, c, rotate(b, 30), a, next)
        }
        state[0] &+= a
        state[1] &+= b
        state[2] &+= c
        state[3] &+= d
        state[4] &+= e
    }

    private static func rotate(_ value: UInt32, _ count: UInt32) -> UInt32 {
        value << count | value >> (32 - count)
    }
}
