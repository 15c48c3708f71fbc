import CairnRaft

/// A three-member in-memory cluster with a perfect network, driven as fast as possible:
/// the leader takes proposals in batches, every `Ready` is persisted to `MemoryStorage`
/// and its messages delivered at once. Measures Raft's own cost per committed entry (no
/// disk, no sockets). The caller times `run`.
public final class Benchmark {
    private let storages: [NodeID: MemoryStorage]
    private let nodes: [NodeID: RaftNode]
    private var inbox: [Message] = []
    public private(set) var appliedOnLeader = 0

    public init(nodeCount: Int = 3) {
        let ids = (1...NodeID(nodeCount)).map { $0 }
        var storages: [NodeID: MemoryStorage] = [:]
        var nodes: [NodeID: RaftNode] = [:]
        for id in ids {
            let storage = MemoryStorage(voters: Set(ids))
            var config = RaftConfig(id: id, randomSeed: 1)
            config.inflightMessagesMax = 64
            config.uncommittedBytesMax = 1 << 30
            storages[id] = storage
            nodes[id] = RaftNode(config: config, storage: storage)
        }
        self.storages = storages
        self.nodes = nodes
        nodes[1]?.campaign()
        stabilize()
        appliedOnLeader = 0
    }

    /// Proposes `entries` entries of `payloadBytes` bytes in batches of `batch`, and runs the
    /// cluster until all are committed and applied on the leader. Returns entries applied.
    public func run(entries: Int, batch: Int, payloadBytes: Int) -> Int {
        guard let leader = nodes[1], leader.role == .leader else { return 0 }
        let payload = [UInt8](repeating: 0x61, count: payloadBytes)
        let proposals = [[UInt8]](repeating: payload, count: batch)
        var proposed = 0
        let start = appliedOnLeader
        while proposed < entries {
            do throws(RaftError) {
                try leader.propose(batch: proposals)
                proposed += batch
            } catch {
                // Back-pressure: let the cluster commit before proposing more.
            }
            stabilize()
        }
        return appliedOnLeader - start
    }

    private func stabilize() {
        var progressed = true
        while progressed {
            progressed = false
            for id in nodes.keys.sorted() {
                guard let node = nodes[id], let storage = storages[id], let ready = node.ready() else {
                    continue
                }
                progressed = true
                if let hardState = ready.hardState { storage.setHardState(hardState) }
                storage.append(ready.entries)
                inbox.append(contentsOf: ready.messages)
                if id == 1 { appliedOnLeader += ready.committedEntries.count }
                node.advance(ready)
                compact(node: node, storage: storage)
            }
            let delivering = inbox
            inbox.removeAll(keepingCapacity: true)
            for message in delivering {
                progressed = true
                nodes[message.to]?.step(message)
            }
        }
    }

    /// Keeps memory flat: snapshot and drop the applied prefix once it is large.
    private func compact(node: RaftNode, storage: MemoryStorage) {
        let applied = node.appliedIndex
        guard applied >= storage.firstIndex() + 100_000 else { return }
        do throws(StorageError) {
            try storage.createSnapshot(index: applied, confState: node.confState, data: [])
            try storage.compact(upTo: applied)
        } catch {
            return
        }
    }
}
