import CairnRaft

/// Compact, stable text forms of Raft values for scenario traces.
enum Format {
    static func entry(_ entry: Entry) -> String {
        switch entry.kind {
        case .normal:
            let text = String(decoding: entry.data, as: UTF8.self)
            return "\(entry.term)/\(entry.index)" + (text.isEmpty ? "" : "\"\(text)\"")
        case .confChange:
            let change = ConfChange(decoding: entry.data).map(confChange) ?? "malformed"
            return "\(entry.term)/\(entry.index)[\(change)]"
        }
    }

    static func confChange(_ change: ConfChange) -> String {
        switch change.kind {
        case .addVoter: return "add-voter \(change.node)"
        case .addLearner: return "add-learner \(change.node)"
        case .remove: return "remove \(change.node)"
        }
    }

    static func confState(_ state: ConfState) -> String {
        let voters = state.voters.sorted().map(String.init).joined(separator: ",")
        let learners = state.learners.sorted().map(String.init).joined(separator: ",")
        return "voters=(\(voters))" + (learners.isEmpty ? "" : " learners=(\(learners))")
    }

    static func snapshot(_ snapshot: Snapshot) -> String {
        "index=\(snapshot.index) term=\(snapshot.term) \(confState(snapshot.confState))"
    }

    static func message(_ message: Message) -> String {
        var text = "\(message.from)->\(message.to) \(message.kind) term=\(message.term)"
        switch message.kind {
        case .append:
            text += " index=\(message.index) logTerm=\(message.logTerm) commit=\(message.commit)"
            if !message.entries.isEmpty {
                text += " entries=[" + message.entries.map(entry).joined(separator: " ") + "]"
            }
        case .appendResponse:
            text += " index=\(message.index)"
            if message.reject { text += " reject hint=\(message.rejectHint) hintTerm=\(message.logTerm)" }
        case .vote, .preVote:
            text += " index=\(message.index) logTerm=\(message.logTerm)"
            if message.isLeadershipTransfer { text += " transfer" }
        case .voteResponse, .preVoteResponse:
            if message.reject { text += " reject" }
        case .heartbeat:
            text += " commit=\(message.commit)"
            if !message.context.isEmpty { text += " read" }
        case .heartbeatResponse:
            if !message.context.isEmpty { text += " read" }
        case .snapshot:
            if let snapshot = message.snapshot { text += " " + self.snapshot(snapshot) }
        case .timeoutNow:
            break
        case .propose:
            text += " entries=[" + message.entries.map(entry).joined(separator: " ") + "]"
        case .readIndex:
            text += " context=\(String(decoding: message.context, as: UTF8.self))"
        case .readIndexResponse:
            text += " index=\(message.index) context=\(String(decoding: message.context, as: UTF8.self))"
        }
        return text
    }
}
