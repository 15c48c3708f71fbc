import CairnAPI
import CairnRPC
import NIOCore

extension Gateway {
    /// etcd's answer to a call a tenant may not make.
    static let permissionDenied = RPCStatus(.permissionDenied, "etcdserver: permission denied")

    /// Every service a tenant may reach, confined to its namespace. Calls
    /// that act on the whole cluster are refused with etcd's permission
    /// error; methods not listed answer `unimplemented`.
    func router() -> RPCServiceRouter {
        var router = RPCServiceRouter()
        self.registerKV(&router)
        self.registerWatch(&router)
        self.registerLease(&router)
        self.registerLock(&router)
        self.registerElection(&router)
        self.registerClusterWide(&router)
        return router
    }

    private func registerKV(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdKV.range) { request, context in
            self.range(request, context: context)
        }
        router.unaryFuture(EtcdKV.put) { request, context in
            let session = NIOLoopBound(GatewaySession.of(context), eventLoop: context.eventLoop)
            return self.forward(
                EtcdKV.put, request, context: context, route: .leader, retry: .ifNotSent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { tenant, response in try tenant.policy.namespace.outbound(response) }
            ).map { response in
                session.value.floor.observe(response.header.revision)
                return response
            }
        }
        router.unaryFuture(EtcdKV.deleteRange) { request, context in
            let session = NIOLoopBound(GatewaySession.of(context), eventLoop: context.eventLoop)
            return self.forward(
                EtcdKV.deleteRange, request, context: context, route: .leader, retry: .ifNotSent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { tenant, response in try tenant.policy.namespace.outbound(response) }
            ).map { response in
                session.value.floor.observe(response.header.revision)
                return response
            }
        }
        router.unaryFuture(EtcdKV.txn) { request, context in
            let session = NIOLoopBound(GatewaySession.of(context), eventLoop: context.eventLoop)
            return self.forward(
                EtcdKV.txn, request, context: context, route: .leader, retry: .ifNotSent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { tenant, response in try tenant.policy.namespace.outbound(response) }
            ).map { response in
                session.value.floor.observe(response.header.revision)
                return response
            }
        }
        self.refuse(EtcdKV.compact, &router)
    }

    /// Range: served from the tenant's read cache when a cache covers it and
    /// may answer (serializable: when not behind the client's session;
    /// linearizable: after a shared read barrier), else forwarded: a
    /// serializable read to any member, a linearizable one to the leader.
    /// An answer below what the client's session already saw (a lagging
    /// follower) is asked again of the leader, so revisions never go back.
    ///
    /// A serializable read a live cache can answer is answered right here,
    /// on the connection's loop, with no future chain and no hop.
    func range(_ request: Etcdserverpb_RangeRequest, context: RPCContext)
        -> EventLoopFuture<Etcdserverpb_RangeResponse>
    {
        let eventLoop = context.eventLoop
        let session = GatewaySession.of(context)
        let tenant: TenantRuntime
        let policy: Tenant
        let rewritten: Etcdserverpb_RangeRequest
        do {
            tenant = try self.admit(context)
            policy = tenant.policy
            rewritten = try policy.namespace.inbound(request)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        let floor = session.floor.highestSeen
        let caches = !policy.cachePrefixes.isEmpty
        if caches, let answer = self.readCache.answerNow(rewritten, floor: floor) {
            tenant.counters.cacheHits.increment()
            do {
                return eventLoop.makeSucceededFuture(
                    try Self.finishRange(
                        self.stamped(answer), session: session, tenant: tenant, policy: policy))
            } catch {
                return eventLoop.makeFailedFuture(error)
            }
        }
        let options = RPCCallOptions(
            timeout: Self.remaining(context),
            metadata: Self.upstreamMetadata(tenant: tenant.name, client: context.headers))
        // One promise for the answer, whichever way it comes (no future chain).
        let promise = eventLoop.makePromise(of: Etcdserverpb_RangeResponse.self)
        let boundSession = NIOLoopBound(session, eventLoop: eventLoop)
        let finish: @Sendable (Etcdserverpb_RangeResponse) -> Void = { response in
            promise.completeWith(
                Result {
                    try Self.finishRange(
                        response, session: boundSession.value, tenant: tenant, policy: policy)
                })
        }
        let forward: @Sendable () -> Void = {
            self.forwardRange(rewritten, options: options, floor: floor, on: eventLoop).whenComplete {
                result in
                switch result {
                case .success(let response): finish(response)
                case .failure(let error): promise.fail(error)
                }
            }
        }
        guard caches else {
            forward()
            return promise.futureResult
        }
        self.readCache.read(rewritten, floor: floor, on: eventLoop) { outcome in
            switch outcome {
            case .answered(let response):
                tenant.counters.cacheHits.increment()
                finish(self.stamped(response))
            case .missed:
                tenant.counters.cacheMisses.increment()
                forward()
            case .uncached:
                forward()
            }
        }
        return promise.futureResult
    }

    /// A cached answer with the cluster's identity in its header (the cache
    /// stamps only the revision).
    private func stamped(_ response: Etcdserverpb_RangeResponse) -> Etcdserverpb_RangeResponse {
        var response = response
        let header = self.upstream.lastHeader
        response.header.clusterID = header.clusterID
        response.header.memberID = header.memberID
        response.header.raftTerm = header.raftTerm
        return response
    }

    /// The last steps of every Range answer: the session's floor, the
    /// tenant's response size limit, the tenant's view of the keys.
    private static func finishRange(
        _ response: Etcdserverpb_RangeResponse, session: GatewaySession, tenant: TenantRuntime, policy: Tenant
    ) throws -> Etcdserverpb_RangeResponse {
        session.floor.observe(response.header.revision)
        try Self.checkResponseBytes(response, tenant: tenant.name, limit: policy.limits.responseBytesMax)
        return try policy.namespace.outbound(response)
    }

    /// A Range upstream; a serializable answer older than `floor` is asked
    /// again of the leader, linearizably.
    private func forwardRange(
        _ request: Etcdserverpb_RangeRequest, options: RPCCallOptions, floor: Int64,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<Etcdserverpb_RangeResponse> {
        let route: UpstreamCluster.Route = request.serializable ? .any : .leader
        return self.call(
            EtcdKV.range, request, options: options, route: route, retry: .idempotent, on: eventLoop
        )
        .flatMap { response in
            guard request.serializable, response.header.revision < floor else {
                return eventLoop.makeSucceededFuture(response)
            }
            var fresh = request
            fresh.serializable = false
            return self.call(
                EtcdKV.range, fresh, options: options, route: .leader, retry: .idempotent, on: eventLoop)
        }
    }

    /// Refuses a Range answer larger than the tenant's `response_bytes`.
    static func checkResponseBytes(_ response: Etcdserverpb_RangeResponse, tenant: String, limit: Int) throws
    {
        var bytes = 0
        for kv in response.kvs { bytes += kv.key.count + kv.value.count }
        guard bytes <= limit else {
            throw RPCStatus(
                .resourceExhausted,
                "gateway: tenant \(tenant) response of \(bytes) bytes exceeds its limit of \(limit) "
                    + "response bytes; use a limit or a smaller range")
        }
    }

    private func registerLease(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdLease.leaseGrant) { request, context in
            self.grantLease(request, context: context)
        }
        router.unaryFuture(EtcdLease.leaseRevoke) { request, context in
            self.forward(
                EtcdLease.leaseRevoke, request, context: context, route: .leader, retry: .ifNotSent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { tenant, response in
                    tenant.leaseRevoked(request.id)
                    return response
                })
        }
        router.unaryFuture(EtcdLease.leaseTimeToLive) { request, context in
            do {
                let tenant = try self.tenant(of: context)
                if case .answer(var answer) = tenant.policy.namespace.inbound(request) {
                    // Another tenant's lease: etcd's answer for one that does not exist.
                    try tenant.admitRequest(nowNanoseconds: Self.nowNanoseconds())
                    answer.header = self.upstream.lastHeader
                    return context.eventLoop.makeSucceededFuture(answer)
                }
            } catch {
                return context.eventLoop.makeFailedFuture(error)
            }
            return self.forward(
                EtcdLease.leaseTimeToLive, request, context: context, route: .leader, retry: .idempotent,
                inbound: { _, request in request },
                outbound: { tenant, response in try tenant.policy.namespace.outbound(response) })
        }
        router.unaryFuture(EtcdLease.leaseLeases) { request, context in
            self.forward(
                EtcdLease.leaseLeases, request, context: context, route: .leader, retry: .idempotent,
                inbound: { _, request in request },
                outbound: { tenant, response in try tenant.policy.namespace.outbound(response) })
        }
        router.streaming(EtcdLease.leaseKeepAlive) { stream in
            KeepAliveSession(stream: stream, gateway: self)
        }
    }

    /// LeaseGrant within the tenant's `leases` limit. The gateway counts
    /// the leases it granted; at the limit it recounts the tenant's live
    /// leases upstream (expired ones drop out) before refusing.
    func grantLease(_ request: Etcdserverpb_LeaseGrantRequest, context: RPCContext)
        -> EventLoopFuture<Etcdserverpb_LeaseGrantResponse>
    {
        let eventLoop = context.eventLoop
        let tenant: TenantRuntime
        do {
            tenant = try self.tenant(of: context)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        let counted: EventLoopFuture<Void>
        if tenant.leaseCount < tenant.policy.limits.leasesMax {
            counted = eventLoop.makeSucceededVoidFuture()
        } else {
            let options = RPCCallOptions(
                timeout: Self.remaining(context),
                metadata: Self.upstreamMetadata(tenant: tenant.name, client: context.headers))
            counted = self.call(
                EtcdLease.leaseLeases, Etcdserverpb_LeaseLeasesRequest(), options: options, route: .leader,
                retry: .idempotent, on: eventLoop
            ).flatMapThrowing { response in
                let owned = try tenant.policy.namespace.outbound(response).leases.map(\.id)
                tenant.recountLeases(owned)
                let limit = tenant.policy.limits.leasesMax
                guard owned.count < limit else {
                    throw RPCStatus(
                        .resourceExhausted,
                        "gateway: tenant \(tenant.name) holds \(owned.count) leases, its limit of \(limit) leases; "
                            + "revoke leases it no longer needs")
                }
            }
        }
        let boundContext = NIOLoopBound(context, eventLoop: eventLoop)
        return counted.flatMap {
            self.forward(
                EtcdLease.leaseGrant, request, context: boundContext.value, route: .leader, retry: .ifNotSent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { tenant, response in
                    let granted = try tenant.policy.namespace.outbound(response)
                    if granted.error.isEmpty { tenant.leaseGranted(granted.id) }
                    return granted
                })
        }
    }

    private func registerLock(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdLock.lock) { request, context in
            self.forwardWaiting(
                EtcdLock.lock, request, context: context,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { tenant, response in try tenant.policy.namespace.outbound(response) })
        }
        router.unaryFuture(EtcdLock.unlock) { request, context in
            self.forward(
                EtcdLock.unlock, request, context: context, route: .leader, retry: .ifNotSent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { _, response in response })
        }
    }

    private func registerElection(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdElection.campaign) { request, context in
            self.forwardWaiting(
                EtcdElection.campaign, request, context: context,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { tenant, response in try tenant.policy.namespace.outbound(response) })
        }
        router.unaryFuture(EtcdElection.proclaim) { request, context in
            self.forward(
                EtcdElection.proclaim, request, context: context, route: .leader, retry: .ifNotSent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { _, response in response })
        }
        router.unaryFuture(EtcdElection.leader) { request, context in
            self.forward(
                EtcdElection.leader, request, context: context, route: .leader, retry: .idempotent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { tenant, response in try tenant.policy.namespace.outbound(response) })
        }
        router.unaryFuture(EtcdElection.resign) { request, context in
            self.forward(
                EtcdElection.resign, request, context: context, route: .leader, retry: .ifNotSent,
                inbound: { tenant, request in try tenant.policy.namespace.inbound(request) },
                outbound: { _, response in response })
        }
        router.streaming(EtcdElection.observe) { stream in
            ObserveSession(stream: stream, gateway: self)
        }
    }

    /// Calls that act on the whole cluster or its users: never a tenant's.
    /// MemberList answers with the gateway alone, as etcd's grpc-proxy
    /// does, so clients that sync endpoints keep talking to the gateway.
    private func registerClusterWide(_ router: inout RPCServiceRouter) {
        router.unary(EtcdCluster.memberList) { _, context in
            _ = try self.admit(context)
            return self.memberList()
        }
        self.refuse(EtcdCluster.memberAdd, &router)
        self.refuse(EtcdCluster.memberRemove, &router)
        self.refuse(EtcdCluster.memberUpdate, &router)
        self.refuse(EtcdCluster.memberPromote, &router)
        router.unaryFuture(EtcdMaintenance.status) { request, context in
            self.forward(
                EtcdMaintenance.status, request, context: context, route: .any, retry: .idempotent,
                inbound: { _, request in request }, outbound: { _, response in response })
        }
        self.refuse(EtcdMaintenance.alarm, &router)
        self.refuse(EtcdMaintenance.defragment, &router)
        self.refuse(EtcdMaintenance.hash, &router)
        self.refuse(EtcdMaintenance.hashKV, &router)
        self.refuse(EtcdMaintenance.moveLeader, &router)
        self.refuse(EtcdMaintenance.downgrade, &router)
        router.streaming(EtcdMaintenance.snapshot) { stream in
            do {
                _ = try self.admit(stream.context)
                return RefusedStream(stream: stream, status: Self.permissionDenied)
            } catch {
                return RefusedStream(stream: stream, status: RPCStatus(error))
            }
        }
        self.refuse(EtcdAuth.authEnable, &router)
        self.refuse(EtcdAuth.authDisable, &router)
        self.refuse(EtcdAuth.authStatus, &router)
        self.refuse(EtcdAuth.authenticate, &router)
        self.refuse(EtcdAuth.userAdd, &router)
        self.refuse(EtcdAuth.userGet, &router)
        self.refuse(EtcdAuth.userList, &router)
        self.refuse(EtcdAuth.userDelete, &router)
        self.refuse(EtcdAuth.userChangePassword, &router)
        self.refuse(EtcdAuth.userGrantRole, &router)
        self.refuse(EtcdAuth.userRevokeRole, &router)
        self.refuse(EtcdAuth.roleAdd, &router)
        self.refuse(EtcdAuth.roleGet, &router)
        self.refuse(EtcdAuth.roleList, &router)
        self.refuse(EtcdAuth.roleDelete, &router)
        self.refuse(EtcdAuth.roleGrantPermission, &router)
        self.refuse(EtcdAuth.roleRevokePermission, &router)
    }

    private func refuse<Request, Response>(
        _ method: MethodDescriptor<Request, Response>, _ router: inout RPCServiceRouter
    ) {
        router.unary(method) { _, context in
            _ = try self.admit(context)
            throw Self.permissionDenied
        }
    }

    /// The gateway as the only member, with its listen address as client URL.
    func memberList() -> Etcdserverpb_MemberListResponse {
        var member = Etcdserverpb_Member()
        member.name = "cairn-gateway"
        member.id = Self.memberID
        let address = self.server.withLockedValue { $0?.localAddress }
        let host = address?.ipAddress ?? self.configuration.listenHost
        let port = address?.port ?? self.configuration.listenPort
        let hostText = host.contains(":") ? "[\(host)]" : host
        member.clientUrls = ["https://\(hostText):\(port)"]
        var response = Etcdserverpb_MemberListResponse()
        response.header.memberID = Self.memberID
        response.members = [member]
        return response
    }

    /// A fixed ID for the gateway in MemberList ("gateway" in ASCII).
    static let memberID: UInt64 = 0x6761_7465_7761_7900
}
