@testable import CairnRaft

/// Drives a set of `RaftNode`s from scenario commands and records a readable trace.
/// The application side is the simplest correct one: persist each `Ready` to a
/// `MemoryStorage` at once, queue its messages, apply committed entries to a list.
final class InteractionEnvironment {
    struct Member {
        var node: RaftNode
        var storage: MemoryStorage
        var config: RaftConfig
        var applied: [String] = []
    }

    var members: [NodeID: Member] = [:]
    var crashed: Set<NodeID> = []
    /// Messages sent and not yet delivered, in send order.
    var queue: [Message] = []
    /// Partition group of each node; nodes in different groups cannot talk.
    var groups: [NodeID: Int] = [:]
    var output: [String] = []

    func run(_ line: String) -> [String] {
        output = []
        let words = line.split(separator: " ").map(String.init)
        guard let command = words.first else { return [] }
        let arguments = Array(words.dropFirst())
        let positional = arguments.filter { !$0.contains("=") }
        var options: [String: String] = [:]
        for argument in arguments where argument.contains("=") {
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            options[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        execute(command, positional, options)
        return output.isEmpty ? ["ok"] : output
    }

    private func ids(_ words: [String]) -> [NodeID] { words.compactMap { NodeID($0) } }

    private func execute(_ command: String, _ positional: [String], _ options: [String: String]) {
        let first = positional.first.flatMap { NodeID($0) } ?? 0
        switch command {
        case "add-nodes": addNodes(count: Int(positional.first ?? "1") ?? 1, options: options)
        case "campaign": members[first]?.node.campaign()
        case "tick":
            let count = positional.count > 1 ? Int(positional[1]) ?? 1 : 1
            for _ in 0..<count { members[first]?.node.tick() }
        case "tick-all":
            let count = Int(positional.first ?? "1") ?? 1
            for _ in 0..<count { for id in liveIDs { members[id]?.node.tick() } }
        case "run-ticks": runTicks(Int(positional.first ?? "1") ?? 1)
        case "process-ready": for id in targets(positional) { processReady(id) }
        case "deliver-msgs": deliver(to: Set(targets(positional)), drop: options["drop"] != nil)
        case "stabilize": stabilize(Set(targets(positional)))
        case "partition": partition(positional)
        case "heal": groups = [:]
        case "propose":
            report { () throws(RaftError) in try members[first]?.node.propose(Array(positional[1].utf8)) }
        case "propose-conf-change": proposeConfChange(first, positional)
        case "read-index":
            report { () throws(RaftError) in
                try members[first]?.node.readIndex(context: Array(positional[1].utf8))
            }
        case "transfer-leadership":
            report { () throws(RaftError) in
                try members[first]?.node.transferLeadership(to: NodeID(positional[1]) ?? 0)
            }
        case "status": for id in targets(positional) { status(id) }
        case "log": for id in targets(positional) { printLog(id) }
        case "compact": compact(first)
        case "set-log": setLog(first, options)
        case "crash":
            crashed.insert(first)
            queue.removeAll { $0.to == first }
        case "restart": restart(first)
        default: output.append("unknown command \(command)")
        }
    }

    private var liveIDs: [NodeID] { members.keys.filter { !crashed.contains($0) }.sorted() }

    private func targets(_ positional: [String]) -> [NodeID] {
        let listed = ids(positional)
        return listed.isEmpty ? liveIDs : listed
    }

    private func report(_ body: () throws(RaftError) -> Void) {
        do throws(RaftError) {
            try body()
        } catch {
            output.append("error: \(error)")
        }
    }

    // MARK: setup

    private func addNodes(count: Int, options: [String: String]) {
        let start = (members.keys.max() ?? 0) + 1
        let newIDs = (0..<count).map { start + NodeID($0) }
        let voters =
            options["voters"].map { Set(ids($0.split(separator: ",").map(String.init))) } ?? Set(newIDs)
        let learners = options["learners"].map { Set(ids($0.split(separator: ",").map(String.init))) } ?? []
        for id in newIDs {
            var config = RaftConfig(id: id, randomSeed: UInt64(options["seed"] ?? "0") ?? 0)
            if let value = options["pre-vote"] { config.preVote = value == "true" }
            if let value = options["check-quorum"] { config.checkQuorum = value == "true" }
            if let value = options["election"].flatMap({ Int($0) }) { config.electionTimeoutTicks = value }
            if let value = options["heartbeat"].flatMap({ Int($0) }) { config.heartbeatIntervalTicks = value }
            if let value = options["inflight"].flatMap({ Int($0) }) { config.inflightMessagesMax = value }
            if let value = options["message-bytes"].flatMap({ Int($0) }) { config.messageBytesMax = value }
            if let value = options["uncommitted-bytes"].flatMap({ Int($0) }) {
                config.uncommittedBytesMax = value
            }
            if options["fault"] == "commit-previous-term" {
                config.unsafeTestingFaults = [.commitPreviousTermByCounting]
            }
            if options["fault"] == "vote-without-log-check" {
                config.unsafeTestingFaults = [.voteWithoutLogCheck]
            }
            let storage = MemoryStorage(voters: voters, learners: learners)
            members[id] = Member(
                node: RaftNode(config: config, storage: storage), storage: storage, config: config)
        }
    }

    /// Replaces node `id` with one whose persisted log has entries of the given terms.
    private func setLog(_ id: NodeID, _ options: [String: String]) {
        guard let member = members[id] else { return }
        let storage = MemoryStorage(
            voters: member.node.confState.voters, learners: member.node.confState.learners)
        let terms = (options["terms"] ?? "").split(separator: ",").compactMap { UInt64($0) }
        storage.append(terms.enumerated().map { Entry(term: $1, index: UInt64($0) + 1) })
        storage.setHardState(HardState(term: UInt64(options["term"] ?? "") ?? (terms.last ?? 0)))
        members[id] = Member(
            node: RaftNode(config: member.config, storage: storage), storage: storage, config: member.config)
    }

    private func restart(_ id: NodeID) {
        guard let member = members[id] else { return }
        crashed.remove(id)
        let snapshot = member.storage.latestSnapshot
        var restarted = Member(
            node: RaftNode(config: member.config, storage: member.storage), storage: member.storage,
            config: member.config)
        restarted.applied = Self.decodeApplied(snapshot.data)
        members[id] = restarted
    }

    private func partition(_ positional: [String]) {
        groups = [:]
        var group = 0
        for word in positional {
            if word == "/" { group += 1 } else if let id = NodeID(word) { groups[id] = group }
        }
    }

    private func connected(_ from: NodeID, _ to: NodeID) -> Bool {
        if crashed.contains(to) || crashed.contains(from) { return false }
        guard !groups.isEmpty else { return true }
        return groups[from] != nil && groups[from] == groups[to]
    }

    // MARK: the application loop

    private func processReady(_ id: NodeID) {
        guard var member = members[id], !crashed.contains(id), let ready = member.node.ready() else { return }
        output.append("> \(id) handling Ready")
        if let soft = ready.softState { output.append("  Lead:\(soft.leader) State:\(soft.role)") }
        if let hard = ready.hardState {
            output.append("  HardState Term:\(hard.term) Vote:\(hard.vote) Commit:\(hard.commit)")
        }
        if let snapshot = ready.snapshot {
            output.append("  Snapshot " + Format.snapshot(snapshot))
            member.storage.applySnapshot(snapshot)
            member.applied = Self.decodeApplied(snapshot.data)
        }
        if let hard = ready.hardState { member.storage.setHardState(hard) }
        if !ready.entries.isEmpty {
            output.append("  Entries: " + ready.entries.map(Format.entry).joined(separator: " "))
            member.storage.append(ready.entries)
        }
        if !ready.committedEntries.isEmpty {
            output.append("  Committed: " + ready.committedEntries.map(Format.entry).joined(separator: " "))
        }
        for message in ready.messages {
            output.append("  send " + Format.message(message))
            queue.append(message)
        }
        for read in ready.readStates {
            output.append(
                "  ReadState index=\(read.index) context=\(String(decoding: read.context, as: UTF8.self))")
        }
        for entry in ready.committedEntries { apply(entry, to: &member) }
        member.node.advance(ready)
        members[id] = member
    }

    private func apply(_ entry: Entry, to member: inout Member) {
        switch entry.kind {
        case .normal:
            if !entry.data.isEmpty { member.applied.append(String(decoding: entry.data, as: UTF8.self)) }
        case .confChange:
            guard let change = ConfChange(decoding: entry.data) else { return }
            let state = member.node.applyConfChange(change)
            output.append("  applied \(Format.confChange(change)) -> \(Format.confState(state))")
        }
    }

    private func deliver(to receivers: Set<NodeID>, drop: Bool) {
        let batch = queue.filter { receivers.contains($0.to) }
        queue.removeAll { receivers.contains($0.to) }
        for message in batch {
            if drop || !connected(message.from, message.to) {
                output.append("dropped " + Format.message(message))
                continue
            }
            output.append(Format.message(message))
            members[message.to]?.node.step(message)
        }
    }

    private func stabilize(_ nodes: Set<NodeID>) {
        for _ in 0..<1000 {
            var progressed = false
            for id in nodes.sorted() where members[id]?.node.hasReady == true && !crashed.contains(id) {
                processReady(id)
                progressed = true
            }
            if queue.contains(where: { nodes.contains($0.to) }) {
                deliver(to: nodes, drop: false)
                progressed = true
            }
            if !progressed { return }
        }
        output.append("stabilize did not converge")
    }

    // MARK: commands

    /// Rounds of "every live node ticks once, then everything stabilizes", reporting only
    /// role changes: for scenarios where time passes for everyone.
    private func runTicks(_ rounds: Int) {
        let saved = output
        var changes: [String] = []
        for round in 1...max(rounds, 1) {
            output = []
            for id in liveIDs { members[id]?.node.tick() }
            stabilize(Set(liveIDs))
            var current: NodeID = 0
            for line in output {
                if line.hasPrefix("> "), let id = NodeID(line.dropFirst(2).prefix { $0 != " " }) {
                    current = id
                }
                if line.hasPrefix("  Lead:") || line.hasPrefix("  ReadState") {
                    changes.append("tick \(round): \(current) \(line.dropFirst(2))")
                }
            }
        }
        output = saved + changes
    }

    private func proposeConfChange(_ id: NodeID, _ positional: [String]) {
        guard positional.count >= 3, let node = NodeID(positional[2]) else {
            output.append("usage: propose-conf-change N add-voter|add-learner|remove M")
            return
        }
        let kind: ConfChange.Kind
        switch positional[1] {
        case "add-voter": kind = .addVoter
        case "add-learner": kind = .addLearner
        default: kind = .remove
        }
        report { () throws(RaftError) in try members[id]?.node.proposeConfChange(ConfChange(kind, node: node))
        }
    }

    private func status(_ id: NodeID) {
        guard let node = members[id]?.node else { return }
        if crashed.contains(id) {
            output.append("\(id): crashed")
            return
        }
        output.append(
            "\(id): \(node.role) term=\(node.term) leader=\(node.leader) vote=\(node.vote) "
                + "commit=\(node.committedIndex) applied=\(node.appliedIndex) last=\(node.lastIndex) "
                + Format.confState(node.confState))
        guard node.role == .leader else { return }
        for peer in (node.confState.voters.union(node.confState.learners)).sorted() where peer != id {
            if let progress = node.progress(of: peer) {
                output.append("  \(peer): match=\(progress.match) next=\(progress.next) \(progress.state)")
            }
        }
    }

    private func printLog(_ id: NodeID) {
        guard let member = members[id] else { return }
        let log = member.node.log
        let entries = (try? log.slice(from: log.firstIndex, to: log.lastIndex + 1, bytesMax: .max)) ?? []
        let prefix = log.firstIndex > 1 ? "(compacted through \(log.firstIndex - 1)) " : ""
        output.append(
            "\(id): " + prefix
                + (entries.isEmpty ? "empty" : entries.map(Format.entry).joined(separator: " ")))
        output.append(
            "  applied: " + (member.applied.isEmpty ? "nothing" : member.applied.joined(separator: " ")))
    }

    private func compact(_ id: NodeID) {
        guard let member = members[id] else { return }
        let index = member.node.appliedIndex
        do throws(StorageError) {
            try member.storage.createSnapshot(
                index: index, confState: member.node.confState, data: Self.encodeApplied(member.applied))
            try member.storage.compact(upTo: index)
            output.append("\(id): snapshot and compaction at \(index)")
        } catch {
            output.append("error: \(error)")
        }
    }

    static func encodeApplied(_ applied: [String]) -> [UInt8] { Array(applied.joined(separator: ",").utf8) }

    static func decodeApplied(_ data: [UInt8]) -> [String] {
        data.isEmpty ? [] : String(decoding: data, as: UTF8.self).split(separator: ",").map(String.init)
    }
}
