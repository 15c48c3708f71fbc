import CairnCore
import CairnMetrics
import CairnStateMachine
import NIOCore

/// etcd's health endpoints for a member (server/etcdserver/api/etcdhttp/
/// health.go): the same checks in the same order, with etcd's texts.
extension Member {
    /// `/health`: alarms (unless excluded), a leader (unless
    /// `serializable`), then a read through the API path; `/livez`: a
    /// serializable read; `/readyz`: no CORRUPT alarm, a serializable and
    /// a linearizable read.
    public func healthChecks() -> HealthChecks {
        HealthChecks(
            health: { request in await self.health(request) },
            livez: [
                NamedHealthCheck(name: "serializable_read") { await self.readProblem(serializable: true) }
            ],
            readyz: [
                NamedHealthCheck(name: "data_corruption") {
                    let alarms = await self.raisedAlarms()
                    return alarms.contains { $0.type == .corrupt } ? "alarm activated: CORRUPT" : nil
                },
                NamedHealthCheck(name: "serializable_read") { await self.readProblem(serializable: true) },
                NamedHealthCheck(name: "linearizable_read") { await self.readProblem(serializable: false) },
            ])
    }

    private func health(_ request: HealthRequest) async -> HealthStatus {
        for alarm in await self.raisedAlarms() where !request.excluded.contains(Self.alarmName(alarm.type)) {
            return .failed("ALARM \(Self.alarmName(alarm.type))")
        }
        if !request.serializable {
            let leader = try? await self.eventLoop.submit { self.replica.leader }.get()
            if leader == nil { return .failed("RAFT NO LEADER") }
        }
        if let problem = await self.readProblem(serializable: request.serializable) {
            return .failed("RANGE ERROR:\(problem)")
        }
        return .ok
    }

    /// etcd's `AlarmType` names.
    static func alarmName(_ type: AlarmType) -> String {
        switch type {
        case .noSpace: "NOSPACE"
        case .corrupt: "CORRUPT"
        }
    }

    private func raisedAlarms() async -> [AlarmMember] {
        (try? await self.eventLoop.submit { self.stateMachine.alarms.list() }.get()) ?? []
    }

    /// Why a read through the member's read path fails, or nil. A
    /// linearizable read needs a ReadIndex round of the leader; without a
    /// known leader it fails at once instead of waiting the request
    /// timeout, so probes answer within their own timeouts.
    private func readProblem(serializable: Bool) async -> String? {
        do {
            if serializable {
                try await self.read { _ in }.get()
            } else {
                let leader = try await self.eventLoop.submit { self.replica.leader }.get()
                guard leader != nil else { return "\(CairnError.noLeader)" }
                try await self.linearizableRead { _ in }.get()
            }
            return nil
        } catch {
            return "\(error)"
        }
    }
}
