/// etcd-style forwarding, so a client may talk to any member: followers pass proposals and
/// ReadIndex requests to the leader they know, and the leader answers reads back to them.
///
/// Forwarded messages carry the sender's term. A follower's `leader` is always a leader of
/// its own term, so a request reaches that leader in the same term or is ignored by a member
/// that has moved on (lower term); nothing is retried inside Raft. The caller learns the
/// outcome from what commits (proposals) or from a `ReadState` (reads), and times out.
extension RaftNode {
    // MARK: follower side

    func forwardProposal(_ payloads: some Collection<[UInt8]>) throws(RaftError) {
        guard config.proposalForwarding, leader != noNode else { throw .notLeader(leader: leader) }
        guard !payloads.isEmpty else { return }
        var message = Message(kind: .propose, from: id, to: leader, term: term)
        message.entries.reserveCapacity(payloads.count)
        for data in payloads { message.entries.append(Entry(term: 0, index: 0, data: data)) }
        send(message)
    }

    func forwardRead(context: [UInt8]) throws(RaftError) {
        guard leader != noNode else { throw .notLeader(leader: noNode) }
        var message = Message(kind: .readIndex, from: id, to: leader, term: term)
        message.context = context
        send(message)
    }

    /// The leader confirmed a forwarded read. Bounded like the leader's own reads: beyond
    /// `readIndexPendingMax` undelivered states the answer is dropped (the caller retries).
    func handleReadIndexResponse(_ message: Message) {
        guard readStates.count < config.readIndexPendingMax else {
            droppedReads += 1
            return
        }
        readStates.append(ReadState(index: message.index, context: message.context))
    }

    // MARK: leader side

    /// Appends a follower's proposals under the same bound as local ones; over the bound,
    /// during a transfer, or for anything but plain data, they are dropped silently (etcd).
    func handleForwardedProposal(_ message: Message) {
        let admissible =
            leadTransferee == noNode && !message.entries.isEmpty
            && message.entries.allSatisfy { $0.kind == .normal }
        if !admissible || !appendNormalEntries(message.entries.lazy.map(\.data)) { droppedProposals += 1 }
    }

    func handleForwardedRead(_ message: Message) {
        do throws(RaftError) {
            try admitRead(context: message.context, requester: message.from)
        } catch {
            droppedReads += 1
        }
    }

    /// Registers a read from `requester` (this node or a follower) for confirmation.
    func admitRead(context: [UInt8], requester: NodeID) throws(RaftError) {
        if pendingReads.count + readStates.count >= config.readIndexPendingMax { throw .readIndexPendingMax }
        if tracker.voters == [id] {
            deliverRead(ReadState(index: log.committed, context: context), to: requester)
            return
        }
        if !committedEntryInCurrentTerm {
            pendingReads.waitForCommit(context: context, requester: requester)
            return
        }
        let sequence = pendingReads.add(
            index: log.committed, context: context, requester: requester, leader: id)
        broadcastHeartbeat(readSequence: sequence)
    }

    /// A confirmed read goes to our own `Ready`, or back to the follower that forwarded it.
    func deliverRead(_ read: ReadState, to requester: NodeID) {
        if requester == id {
            readStates.append(read)
            return
        }
        var response = Message(kind: .readIndexResponse, from: id, to: requester, term: term)
        response.index = read.index
        response.context = read.context
        send(response)
    }
}
