import CairnAPI
import CairnCore
import CairnRPC
import CairnStateMachine
import NIOCore

/// Maintenance Alarm as etcd answers it.
///
/// GET lists the raised alarms of the type asked (all for NONE), read
/// linearizably. ACTIVATE and DEACTIVATE are proposed as `alarm`
/// commands for the member ID the request names (etcdctl's disarm lists,
/// then deactivates each listed alarm) and answer the alarms the change
/// touched: the raised one, the cleared one, or none.
///
/// With auth enabled, ACTIVATE and DEACTIVATE need the root role: a raised
/// NOSPACE alarm stops every write of the cluster, so it is an
/// administrator's act. etcd (3.4 to 3.6) checks neither; this is stricter
/// on purpose. GET stays open to every user, as in etcd.
extension MemberServices {
    func registerAlarm(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdMaintenance.alarm) { wire, context in
            let type = Self.alarmType(wire.alarm)
            switch wire.action {
            case .get:
                // etcd answers GET through the log: linearizable.
                return self.member.linearizableRead { stateMachine in
                    self.alarmResponse(
                        stateMachine.alarms.list(type: type), revision: stateMachine.status.revision)
                }
            case .activate, .deactivate:
                guard let type else {
                    // etcd keeps no alarm of type NONE worth answering.
                    return self.member.read { stateMachine in
                        self.alarmResponse([], revision: stateMachine.status.revision)
                    }
                }
                let alarm = AlarmMember(member: MemberID(wire.memberID), type: type)
                let change = AlarmChange(wire.action == .activate ? .activate : .deactivate, alarm)
                return self.write(.alarm(change), authorizing: context) { response, revision in
                    guard case .alarm(let changed) = response else { throw Self.unexpected(response) }
                    return self.alarmResponse(changed, revision: revision)
                }
            case .UNRECOGNIZED(let action):
                return self.member.eventLoop.makeFailedFuture(
                    RPCStatus(.invalidArgument, "unknown alarm action \(action)"))
            }
        }
    }

    /// The state machine's type for a wire alarm type; nil for NONE (and
    /// unknown types), which etcd treats as "every type" in a GET.
    static func alarmType(_ wire: Etcdserverpb_AlarmType) -> AlarmType? {
        switch wire {
        case .nospace: return .noSpace
        case .corrupt: return .corrupt
        case .none, .UNRECOGNIZED: return nil
        }
    }

    func alarmResponse(_ alarms: [AlarmMember], revision: Int64) -> Etcdserverpb_AlarmResponse {
        var answer = Etcdserverpb_AlarmResponse()
        answer.header = self.header(revision: revision)
        answer.alarms = alarms.map { alarm in
            var member = Etcdserverpb_AlarmMember()
            member.memberID = alarm.member.rawValue
            member.alarm = alarm.type == .noSpace ? .nospace : .corrupt
            return member
        }
        return answer
    }
}
