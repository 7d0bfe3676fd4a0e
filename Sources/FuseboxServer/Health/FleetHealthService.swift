import FuseboxAlerts
import FuseboxAPI
import FuseboxAuthority
import FuseboxCore
import FuseboxRPC
import FuseboxWire

/// `fusebox.v1.FleetHealthService` and `fusebox.v1.AlertService`: the RPC
/// adapters of the fleet monitor. Reader role. In replicated mode a follower
/// forwards to the leader, which holds the windows and the alert history.
struct FleetHealthService: Sendable {
    let monitor: FleetMonitor
    let authorizer: Authorizer
    var routing: (any DecisionRouting)?

    func register(on router: inout RPCRouter) {
        let monitor = monitor
        let authorizer = authorizer
        let routing = routing
        let health = "fusebox.v1.FleetHealthService"
        router.unary(health, "GetFleetHealth") { (request: Fusebox_V1_GetFleetHealthRequest, context) in
            try authorizer.require(.reader, context)
            if !request.registry.isEmpty { try WireConversions.checkRegistry(request.registry, field: "registry") }
            // With no leader to ask (this replica lost etcd, or none is elected
            // yet) the answer is this replica's own view, which says so
            // (store_unavailable) instead of failing.
            if let leader = Self.leader(routing) {
                return try await Forwarding.unary(
                    leader, health, "GetFleetHealth", request, as: Fusebox_V1_FleetHealth.self, caller: authorizer.caller(context))
            }
            return Self.wire(monitor.health(registry: request.registry))
        }
        router.serverStreaming(health, "WatchFleetHealth") {
            (request: Fusebox_V1_GetFleetHealthRequest, writer: RPCStreamWriter<Fusebox_V1_FleetHealth>, context) in
            try authorizer.require(.reader, context)
            if !request.registry.isEmpty { try WireConversions.checkRegistry(request.registry, field: "registry") }
            if Self.leader(routing) != nil {
                // A follower asks the leader every second and sends what changed.
                var last: String?
                while !Task.isCancelled, let leader = Self.leader(routing) {
                    let answer = try await Forwarding.unary(
                        leader, health, "GetFleetHealth", request, as: Fusebox_V1_FleetHealth.self, caller: authorizer.caller(context))
                    let key = Self.signature(answer)
                    if key != last {
                        last = key
                        try await writer.send(answer)
                    }
                    try await Task.sleep(for: .seconds(1))
                }
                return
            }
            var last: FleetHealthReport?
            for await report in monitor.updates() {
                let mine = request.registry.isEmpty ? report : monitor.health(registry: request.registry)
                if let last, last.sameAs(mine) { continue }
                last = mine
                try await writer.send(Self.wire(mine))
            }
        }
        router.unary("fusebox.v1.AlertService", "ListAlerts") { (request: Fusebox_V1_ListAlertsRequest, context) in
            try authorizer.require(.reader, context)
            guard request.limit <= 1_000 else { throw WireConversions.invalid("limit", "(\(request.limit)) must be 0 to 1000") }
            if let leader = try routing?.leader() {
                return try await Forwarding.unary(
                    leader, "fusebox.v1.AlertService", "ListAlerts", request, as: Fusebox_V1_ListAlertsResponse.self, caller: authorizer.caller(context))
            }
            var response = Fusebox_V1_ListAlertsResponse()
            response.enabled = monitor.dispatcher != nil
            let limit = request.limit == 0 ? 100 : Int(request.limit)
            let records = (monitor.dispatcher?.history.records() ?? []).lazy.filter {
                (request.rule.isEmpty || $0.notification.rule == request.rule)
                    && (request.subject.isEmpty || $0.notification.subject == request.subject)
            }
            response.alerts = records.prefix(limit).map(Self.wire)
            return response
        }
    }

    /// The leader to forward to; nil when this replica leads, is standalone,
    /// or knows of no leader it can reach.
    static func leader(_ routing: (any DecisionRouting)?) -> RPCClient? {
        do {
            return try routing?.leader()
        } catch {
            return nil
        }
    }

    /// What "changed" compares for a forwarded watch: the statuses, reasons' codes and breakers' states.
    static func signature(_ h: Fusebox_V1_FleetHealth) -> String {
        var parts = ["\(h.status.rawValue)", h.reasons.map(\.code).joined(separator: ","), "\(h.storeAvailable)", "\(h.localModeClients)"]
        for r in h.registries {
            parts.append("\(r.registry):\(r.status.rawValue):\(r.healthy):\(r.degraded):\(r.critical)")
            for b in r.breakers {
                parts.append("\(b.breaker?.name ?? ""):\(b.state.rawValue):\(b.status.rawValue):\(b.reasons.map(\.code).joined(separator: ","))")
            }
        }
        return parts.joined(separator: "|")
    }

    static func wire(_ s: FleetHealthStatus) -> Fusebox_V1_HealthStatus {
        switch s {
        case .healthy: return .healthy
        case .degraded: return .degraded
        case .critical: return .critical
        }
    }

    static func wire(_ r: FleetHealthReason) -> Fusebox_V1_HealthReason {
        var w = Fusebox_V1_HealthReason()
        w.code = r.code
        w.status = wire(r.status)
        w.message = r.message
        return w
    }

    static func wire(_ report: FleetHealthReport) -> Fusebox_V1_FleetHealth {
        var w = Fusebox_V1_FleetHealth()
        w.status = wire(report.status)
        w.reasons = report.reasons.map(wire)
        w.registries = report.registries.map { r in
            var wr = Fusebox_V1_RegistryHealth()
            wr.registry = r.name
            wr.status = wire(r.status)
            wr.healthy = UInt32(clamping: r.healthy)
            wr.degraded = UInt32(clamping: r.degraded)
            wr.critical = UInt32(clamping: r.critical)
            wr.breakers = r.breakers.map { b in
                var wb = Fusebox_V1_BreakerHealth()
                wb.breaker = WireConversions.ref(b.key)
                wb.state = WireConversions.state(b.state)
                wb.status = wire(b.status)
                wb.reasons = b.reasons.map(wire)
                wb.calls = UInt64(clamping: b.calls)
                wb.failures = UInt64(clamping: b.failures)
                wb.recentTrips = UInt32(clamping: b.recentTrips)
                wb.notPassingSinceMs = b.notPassingSinceMs ?? 0
                return wb
            }
            return wr
        }
        w.localModeClients = UInt32(clamping: report.localModeClients)
        w.storeAvailable = report.storeAvailable
        w.replicasServing = UInt32(clamping: report.replicasServing)
        w.replicas = UInt32(clamping: report.replicas)
        w.atMs = report.atMs
        w.answeredBy = report.answeredBy
        return w
    }

    static func wire(_ record: AlertRecord) -> Fusebox_V1_AlertEntry {
        let n = record.notification
        var w = Fusebox_V1_AlertEntry()
        w.id = n.id
        w.status = n.status.rawValue
        w.rule = n.rule
        w.kind = n.kind
        w.severity = n.severity.rawValue
        if !n.breaker.isEmpty { w.breaker = BreakerMapping.ref(n.registry, n.breaker) }
        w.summary = n.summary
        w.startedAtMs = n.startedAtMs
        w.atMs = n.atMs
        w.suppressedTriggers = UInt32(clamping: n.suppressedTriggers)
        w.deliveries = record.deliveries.sorted { $0.key < $1.key }.map { sink, delivery in
            var d = Fusebox_V1_AlertDelivery()
            d.sink = sink
            d.state = delivery.name
            switch delivery {
            case .delivered(let attempts): d.attempts = UInt32(clamping: attempts)
            case .failed(let attempts, let error):
                d.attempts = UInt32(clamping: attempts)
                d.error = error
            case .pending, .dropped: break
            }
            return d
        }
        return w
    }
}
