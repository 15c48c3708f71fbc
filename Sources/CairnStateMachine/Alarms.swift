import CairnCore

/// etcd's alarm types, numbered as `etcdserverpb.AlarmType` (0 is NONE,
/// which names no alarm and so has no case here).
public enum AlarmType: UInt8, Hashable, Sendable, Comparable, CaseIterable {
    /// A member's store is over its quota: growing writes are refused.
    case noSpace = 1
    /// A member's state hash disagrees with the others'.
    case corrupt = 2

    public static func < (lhs: AlarmType, rhs: AlarmType) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One raised alarm: which member raised which type (etcd's `AlarmMember`).
public struct AlarmMember: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var member: MemberID
    public var type: AlarmType

    public init(member: MemberID, type: AlarmType) {
        self.member = member
        self.type = type
    }

    /// Type first, then member: the order etcd's list groups them in.
    public static func < (lhs: AlarmMember, rhs: AlarmMember) -> Bool {
        (lhs.type.rawValue, lhs.member.rawValue) < (rhs.type.rawValue, rhs.member.rawValue)
    }

    public var description: String { "\(type) on \(member)" }
}

/// A replicated alarm change: the `alarm` command's payload. Alarms go
/// through the log (as in etcd) so every member refuses the same writes
/// and a restarted member still has them.
public struct AlarmChange: Hashable, Sendable {
    public enum Action: UInt8, Hashable, Sendable {
        case activate = 1
        case deactivate = 2
    }

    public var action: Action
    public var alarm: AlarmMember

    public init(_ action: Action, _ alarm: AlarmMember) {
        self.action = action
        self.alarm = alarm
    }
}

/// The raised alarms of the whole cluster (etcd's `AlarmStore`).
///
/// Properties:
/// 1. At most `alarmsMax` alarms are raised; activating one more fails with
///    "too many requests" and changes nothing (any client may name any
///    member ID, so the set must be bounded by more than the member count).
/// 2. `raised` holds each (member, type) pair at most once: activating a
///    raised alarm answers the one already there.
/// 3. `list` is sorted, so snapshots and answers do not depend on hashing.
public struct AlarmSet: Hashable, Sendable {
    /// Alarms the set holds at most (property 1).
    public static let alarmsMax = 1024

    public private(set) var raised: Set<AlarmMember> = []

    public init() {}

    /// Raises `alarm`; answers the raised alarm (the existing one if it was).
    mutating func activate(_ alarm: AlarmMember) throws(CairnError) -> AlarmMember {
        if raised.contains(alarm) { return alarm }
        guard raised.count < Self.alarmsMax else { throw .tooManyRequests }
        raised.insert(alarm)
        return alarm
    }

    /// Clears `alarm`; answers it if it was raised, nil otherwise (etcd
    /// answers an empty list then, not an error).
    mutating func deactivate(_ alarm: AlarmMember) -> AlarmMember? {
        raised.remove(alarm)
    }

    /// Raised alarms of `type` (every type when nil), sorted.
    public func list(type: AlarmType? = nil) -> [AlarmMember] {
        raised.filter { type == nil || $0.type == type }.sorted()
    }

    /// Whether any member raised `type`: one member's NOSPACE caps writes
    /// on every member, as in etcd.
    public func isRaised(_ type: AlarmType) -> Bool {
        raised.contains { $0.type == type }
    }

    /// Replaces the set with a snapshot's (already validated) alarms.
    mutating func restore(_ alarms: [AlarmMember]) {
        raised = Set(alarms)
    }
}

extension StateMachine {
    /// Applies an `alarm` command: the alarms it changed, as etcd answers.
    mutating func applyAlarm(_ change: AlarmChange) throws(CairnError) -> [AlarmMember] {
        switch change.action {
        case .activate:
            return [try alarms.activate(change.alarm)]
        case .deactivate:
            return alarms.deactivate(change.alarm).map { [$0] } ?? []
        }
    }
}

extension ByteWriter {
    mutating func alarmChange(_ change: AlarmChange) {
        byte(change.action.rawValue)
        alarmMember(change.alarm)
    }

    mutating func alarmMember(_ alarm: AlarmMember) {
        unsigned(alarm.member.rawValue)
        byte(alarm.type.rawValue)
    }

    /// The snapshot's alarm section: a count, then each alarm in order.
    mutating func alarmList(_ alarms: AlarmSet) {
        let list = alarms.list()
        count(list.count)
        for alarm in list { alarmMember(alarm) }
    }
}

extension ByteReader {
    mutating func alarmChange() throws(DecodeError) -> AlarmChange {
        let actionByte = try byte()
        guard let action = AlarmChange.Action(rawValue: actionByte) else {
            throw .malformed("alarm action \(actionByte)")
        }
        return AlarmChange(action, try alarmMember())
    }

    mutating func alarmMember() throws(DecodeError) -> AlarmMember {
        let member = MemberID(try unsigned())
        let typeByte = try byte()
        guard let type = AlarmType(rawValue: typeByte) else { throw .malformed("alarm type \(typeByte)") }
        return AlarmMember(member: member, type: type)
    }

    /// Reads `alarmList`'s output; duplicates or too many alarms are malformed.
    mutating func alarmList() throws(DecodeError) -> [AlarmMember] {
        let total = try count()
        guard total <= AlarmSet.alarmsMax else { throw .malformed("more alarms than alarmsMax") }
        var alarms: [AlarmMember] = []
        var seen = Set<AlarmMember>()
        for _ in 0..<total {
            let alarm = try alarmMember()
            guard seen.insert(alarm).inserted else { throw .malformed("duplicate alarm \(alarm)") }
            alarms.append(alarm)
        }
        return alarms
    }
}
