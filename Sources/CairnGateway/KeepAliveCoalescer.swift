import CairnAPI
import CairnRPC
import NIOCore

/// Lease keep-alives of many clients become one upstream stream per tenant,
/// and concurrent keep-alives of the same lease become one request.
///
/// A keep-alive is idempotent (it resets the lease's TTL), so a request
/// waiting while another for the same lease is in flight is answered by that
/// one's response: the lease was renewed after both asked. Every answer is
/// the leader's, nothing is invented here.
///
/// Properties:
/// 1. For each (tenant, lease) at most one request is in flight upstream;
///    `waiters[tenant][lease]` are the replies owed when its answer comes.
/// 2. Every waiter is answered at most once; waiters of a stream that broke
///    are re-sent on a new stream, at most `resendsMax` times in a row, then
///    dropped (clients re-send keep-alives on their own schedule).
/// 3. At most `waitersMax` replies wait per tenant; past it a keep-alive is
///    refused (its client stream ends with RESOURCE_EXHAUSTED).
/// 4. All state lives on `eventLoop`.
final class KeepAliveCoalescer: Sendable {
    typealias Reply = @Sendable (Etcdserverpb_LeaseKeepAliveResponse) -> Void

    static let waitersMax = 100_000
    static let resendsMax = 3

    final class TenantStream {
        var stream: RPCClientStream<Etcdserverpb_LeaseKeepAliveRequest>?
        var generation = 0
        var waiters: [Int64: [Reply]] = [:]
        var waiting = 0
        var resends = 0
    }

    final class Core {
        var tenants: [String: TenantStream] = [:]
    }

    let upstream: UpstreamCluster
    let eventLoop: any EventLoop
    private let core: NIOLoopBoundBox<Core>

    init(upstream: UpstreamCluster) {
        self.upstream = upstream
        self.eventLoop = upstream.eventLoopGroup.next()
        self.core = NIOLoopBoundBox.makeBoxSendingValue(Core(), eventLoop: self.eventLoop)
    }

    /// Renews `lease` for `tenant`; `reply` gets the leader's answer (on the
    /// coalescer's event loop). Returns false when the tenant has too many
    /// keep-alives waiting (property 3).
    func keepAlive(tenant: String, lease: Int64, reply: @escaping Reply) -> EventLoopFuture<Bool> {
        self.eventLoop.submit {
            let core = self.core.value
            let state = core.tenants[tenant] ?? TenantStream()
            core.tenants[tenant] = state
            guard state.waiting < Self.waitersMax else { return false }
            state.waiting += 1
            let first = state.waiters[lease] == nil
            state.waiters[lease, default: []].append(reply)
            if first { self.send(lease, tenant: tenant, state) }
            return true
        }
    }

    private func send(_ lease: Int64, tenant: String, _ state: TenantStream) {
        let stream = state.stream ?? self.open(tenant: tenant, state)
        var request = Etcdserverpb_LeaseKeepAliveRequest()
        request.id = lease
        stream.send(request)
    }

    private func open(tenant: String, _ state: TenantStream) -> RPCClientStream<
        Etcdserverpb_LeaseKeepAliveRequest
    > {
        state.generation += 1
        let generation = state.generation
        let options = RPCCallOptions(metadata: [Gateway.onBehalfOfHeader: tenant])
        let stream = self.upstream.connection(for: .leader).openStream(
            EtcdLease.leaseKeepAlive, options: options,
            onResponse: { response in
                self.eventLoop.execute { self.answered(response, tenant: tenant) }
            },
            onClose: { status in
                self.eventLoop.execute { self.closed(status, tenant: tenant, generation: generation) }
            })
        state.stream = stream
        return stream
    }

    private func answered(_ response: Etcdserverpb_LeaseKeepAliveResponse, tenant: String) {
        guard let state = self.core.value.tenants[tenant],
            let replies = state.waiters.removeValue(forKey: response.id)
        else { return }
        state.resends = 0
        state.waiting -= replies.count
        for reply in replies { reply(response) }
    }

    private func closed(_ status: RPCStatus, tenant: String, generation: Int) {
        guard let state = self.core.value.tenants[tenant], state.generation == generation else { return }
        state.stream = nil
        if status.code == .unavailable { self.upstream.leaderSuspected() }
        guard !state.waiters.isEmpty else { return }
        state.resends += 1
        guard state.resends <= Self.resendsMax else {
            state.waiters = [:]
            state.waiting = 0
            state.resends = 0
            return
        }
        self.eventLoop.scheduleTask(in: .milliseconds(100)) {
            guard let state = self.core.value.tenants[tenant], state.stream == nil else { return }
            for lease in state.waiters.keys { self.send(lease, tenant: tenant, state) }
        }
    }
}
