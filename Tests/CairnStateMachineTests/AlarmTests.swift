import CairnCore
import CairnMVCC
import Testing

@testable import CairnStateMachine

/// Replicated alarms: etcd's AlarmStore answers, the bound, the encoding and
/// the snapshot.
@Suite struct AlarmTests {
    static let noSpace = AlarmMember(member: MemberID(7), type: .noSpace)
    static let corrupt = AlarmMember(member: MemberID(3), type: .corrupt)

    @Test func activateAnswersTheAlarmAndDeactivateOnlyARaisedOne() {
        var driver = Driver()
        #expect(driver.apply(.alarm(AlarmChange(.activate, Self.noSpace))).response == .alarm([Self.noSpace]))
        // Raising it again answers the raised alarm and keeps one copy.
        #expect(driver.apply(.alarm(AlarmChange(.activate, Self.noSpace))).response == .alarm([Self.noSpace]))
        #expect(driver.machine.alarms.list() == [Self.noSpace])
        #expect(driver.machine.alarms.isRaised(.noSpace))
        #expect(!driver.machine.alarms.isRaised(.corrupt))
        // Clearing one that is not raised answers nothing (etcd: empty list).
        #expect(driver.apply(.alarm(AlarmChange(.deactivate, Self.corrupt))).response == .alarm([]))
        #expect(
            driver.apply(.alarm(AlarmChange(.deactivate, Self.noSpace))).response == .alarm([Self.noSpace]))
        #expect(driver.machine.alarms.list().isEmpty)
        #expect(driver.machine.appliedIndex == 4)
    }

    @Test func listIsSortedByTypeThenMemberAndFilters() {
        var driver = Driver()
        let second = AlarmMember(member: MemberID(1), type: .noSpace)
        for alarm in [Self.corrupt, Self.noSpace, second] {
            driver.apply(.alarm(AlarmChange(.activate, alarm)))
        }
        #expect(driver.machine.alarms.list() == [second, Self.noSpace, Self.corrupt])
        #expect(driver.machine.alarms.list(type: .corrupt) == [Self.corrupt])
    }

    @Test func activationsBeyondTheBoundFailAndChangeNothing() {
        var driver = Driver()
        for member in 1...UInt64(AlarmSet.alarmsMax) {
            driver.apply(
                .alarm(AlarmChange(.activate, AlarmMember(member: MemberID(member), type: .noSpace))))
        }
        let extra = AlarmMember(member: MemberID(99_999), type: .noSpace)
        #expect(driver.apply(.alarm(AlarmChange(.activate, extra))).response == .failed(.tooManyRequests))
        #expect(driver.machine.alarms.raised.count == AlarmSet.alarmsMax)
        #expect(!driver.machine.alarms.raised.contains(extra))
        // A raised one is still answered at the bound.
        let first = AlarmMember(member: MemberID(1), type: .noSpace)
        #expect(driver.apply(.alarm(AlarmChange(.activate, first))).response == .alarm([first]))
    }

    @Test func alarmCommandsRoundTripAndBadBytesAreRejected() throws {
        let original = command(.alarm(AlarmChange(.deactivate, Self.corrupt)), id: 9)
        let bytes = original.encoded()
        #expect(try Command(decoding: bytes) == original)
        // The last two bytes are the alarm type and, before the member, the action.
        var badType = bytes
        badType[badType.count - 1] = 0
        #expect(throws: DecodeError.self) { try Command(decoding: badType) }
        var badAction = bytes
        badAction[badAction.count - 3] = 9
        #expect(throws: DecodeError.self) { try Command(decoding: badAction) }
    }

    @Test func alarmsSurviveSnapshotRestore() throws {
        var driver = Driver()
        driver.apply(.alarm(AlarmChange(.activate, Self.noSpace)))
        driver.apply(.alarm(AlarmChange(.activate, Self.corrupt)))
        driver.put("k")
        var restored = StateMachine()
        try restored.restore(driver.machine.snapshot(), now: epoch)
        #expect(restored.alarms == driver.machine.alarms)
        #expect(restored.snapshot() == driver.machine.snapshot())
        // Restoring a snapshot without alarms clears them.
        var empty = Driver()
        empty.put("k")
        try restored.restore(empty.machine.snapshot(), now: epoch)
        #expect(restored.alarms.list().isEmpty)
    }
}
