import CairnCore
import CairnPeer
import CairnRaft
import CairnReplica
import NIOCore

/// The member's side of the peer transport: Raft messages out as encoded
/// batches (snapshots on their own chunked stream), messages in to the
/// replica, and transport observations back into Raft's flow control.
extension Member {
    /// Largest encoded batch of messages accepted from a peer.
    static let peerBatchBytesMax = 64 << 20

    /// Listens on the first `--listen-peer-urls` address and dials the
    /// other members. Call once, after `init`.
    public func startPeers(group: any EventLoopGroup) async throws {
        guard let listen = self.configuration.cluster.listenPeerURLs.first else { return }
        let peers = try await self.eventLoop.submit { self.peerURLs() }.get()
        let configuration = PeerTransportConfiguration(
            memberID: self.memberID.rawValue, clusterID: self.clusterID.rawValue, listenHost: listen.host,
            listenPort: listen.port, peers: peers, backoffSeed: self.memberID.rawValue,
            channelInitializer: self.configuration.peerChannelInitializer)
        let handlers = PeerTransportHandlers(
            messagesReceived: { from, payloads in
                self.eventLoop.execute { self.received(payloads, from: from) }
            },
            snapshotReceived: { snapshot in
                var message = try Message(decoding: snapshot.metadata, bytesMax: 1 << 20)
                guard message.kind == .snapshot, var carried = message.snapshot else {
                    throw MemberError.storageFailed("snapshot stream without a snapshot message")
                }
                carried.data = snapshot.data
                message.snapshot = carried
                let complete = message
                self.eventLoop.execute {
                    self.replica.receive(complete)
                    self.drive()
                }
            },
            peerUnreachable: { member in
                self.eventLoop.execute { self.replica.reportUnreachable(MemberID(member)) }
            },
            snapshotSent: { member, outcome in
                self.eventLoop.execute {
                    if case .failed(let reason) = outcome {
                        self.logLine("snapshot to \(MemberID(member)) failed: \(reason)", level: .warning)
                    }
                    self.replica.reportSnapshot(to: MemberID(member), failed: outcome != .delivered)
                    self.drive()
                }
            },
            log: { level, line in
                self.logLine(line, level: Self.level(of: level))
            })
        let transport = try await PeerTransport.start(
            configuration: configuration, group: group, handlers: handlers)
        try await self.eventLoop.submit {
            self.transport = transport
            self.updatePeers()
        }.get()
        self.logLine("serving peers on \(transport.localAddress)")
    }

    /// The other members' first peer URLs, from the applied member list;
    /// a member that joins an existing cluster knows none yet and uses
    /// `--initial-cluster` until the leader's snapshot or log arrives.
    func peerURLs() -> [UInt64: PeerURL] {
        var urls: [UInt64: PeerURL] = [:]
        var records = self.replica.members
        if records.isEmpty {
            let cluster = self.configuration.cluster
            records = Bootstrap.initialMembers(
                cluster.members.map { ($0.name, $0.peerURLs) }, token: cluster.token)
        }
        for record in records where record.id != self.memberID {
            guard let text = record.peerURLs.first, let url = try? PeerURL(parsing: text) else { continue }
            urls[record.id.rawValue] = url
        }
        return urls
    }

    /// Points the transport at the applied membership (after changes).
    func updatePeers() {
        guard let transport = self.transport else { return }
        let wanted = self.peerURLs()
        guard wanted != self.connectedPeers else { return }
        for (member, url) in wanted where self.connectedPeers[member] != url {
            transport.setPeer(member, url: url)
        }
        for member in self.connectedPeers.keys where wanted[member] == nil { transport.removePeer(member) }
        self.connectedPeers = wanted
    }

    /// Sends one encoded batch per peer; snapshots go on their own stream.
    func send(_ messages: [Message]) {
        guard !messages.isEmpty, let transport = self.transport else { return }
        self.heartbeatsSent(messages)
        var batches: [NodeID: [Message]] = [:]
        for message in messages {
            if message.kind == .snapshot, message.snapshot != nil {
                self.sendSnapshot(message, transport: transport)
            } else {
                batches[message.to, default: []].append(message)
            }
        }
        for (member, batch) in batches {
            let outcome = transport.send(to: member, payload: Message.encodeBatch(batch))
            if outcome != .queued { self.replica.reportUnreachable(MemberID(member)) }
        }
    }

    /// A snapshot on its own stream. Raft's log holds only its metadata
    /// (`ReplicaConfig.retainsSnapshotData`), so the bytes are read back from
    /// the newest snapshot file on the I/O pool; if that is not the one Raft
    /// named (a newer one was saved meanwhile), the send is reported failed
    /// and Raft offers the newer one.
    private func sendSnapshot(_ message: Message, transport: PeerTransport) {
        guard var snapshot = message.snapshot else { return }
        let storage = self.storage
        let index = snapshot.index
        snapshot.data = []
        var metadata = message
        metadata.snapshot = snapshot
        let encodedMetadata = metadata.encoded()
        self.ioPool.runIfActive(eventLoop: self.eventLoop) { () throws -> [UInt8] in
            guard let loaded = try storage.snapshots.loadLatest(), loaded.index == index else {
                throw MemberError.storageFailed("the snapshot file at index \(index) is no longer the newest")
            }
            return try Snapshot(decoding: loaded.bytes).data
        }.whenComplete { result in
            switch result {
            case .success(let data):
                self.logLine(
                    "sending snapshot at index \(index) (\(data.count) bytes) to \(MemberID(message.to))")
                transport.sendSnapshot(to: message.to, metadata: encodedMetadata, data: data)
            case .failure(let error):
                self.logLine("snapshot to \(MemberID(message.to)) not sent: \(error)", level: .warning)
                self.replica.reportSnapshot(to: MemberID(message.to), failed: true)
                self.drive()
            }
        }
    }

    /// Payloads from one peer: each an encoded batch. A batch that does not
    /// decode is dropped (logged); Raft tolerates lost messages.
    private func received(_ payloads: [[UInt8]], from: UInt64) {
        for payload in payloads {
            do {
                for message in try Message.decodeBatch(payload, bytesMax: Self.peerBatchBytesMax) {
                    // A peer speaks only for itself (its hello named it).
                    guard message.from == from, message.to == self.memberID.rawValue else {
                        self.logLine(
                            "dropped a message from \(MemberID(from)) claiming to be \(MemberID(message.from))",
                            level: .warning)
                        continue
                    }
                    if message.kind == .heartbeatResponse { self.heartbeatAnswered(by: from) }
                    self.replica.receive(message)
                }
            } catch {
                self.logLine(
                    "dropped an undecodable message batch from \(MemberID(from)): \(error)", level: .warning)
            }
        }
        self.drive()
    }
}
