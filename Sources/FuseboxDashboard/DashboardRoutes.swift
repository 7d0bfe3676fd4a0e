import Foundation
import FuseboxAuthority
import FuseboxCLI
import FuseboxCore
import FuseboxServer
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// The dashboard's pages and JSON API (docs/DASHBOARD.md).
final class DashboardRoutes: Sendable {
    enum Reply: Sendable {
        case whole(DashboardResponse)
        /// An event stream; `slot` was reserved for it and must be released.
        case events(DashboardAuth.Session, registry: String, slot: Int)
    }

    /// `__Host-`: the browser keeps it only if it is Secure, for this host, path /.
    static let cookie = "__Host-fusebox_session"
    /// Event streams one session may hold.
    static let streamsPerSession = 4
    /// Most breakers one list answers with.
    static let maxListed = 20_000
    /// Newest changes of one policy the versions and diff read.
    static let maxVersions = 200
    static let pages: Set<String> = ["/breakers", "/breaker", "/policies", "/audit", "/clients", "/health"]

    let app: FuseboxServerApp
    let auth: DashboardAuth
    let activity: BreakerActivity
    let streams = EventStreams()
    private let logger = Logger(label: "fusebox.dashboard")

    init(app: FuseboxServerApp, auth: DashboardAuth, activity: BreakerActivity) {
        self.app = app
        self.auth = auth
        self.activity = activity
    }

    func respond(to request: DashboardRequest) async -> Reply {
        if request.body == nil { return .whole(.error(.payloadTooLarge, "too_large", "request bodies are limited to \(DashboardServer.maxBodyBytes) bytes")) }
        switch (request.method, request.path) {
        case (.GET, "/assets/app.js"): return .whole(Assets.response(Assets.appJS, type: "text/javascript; charset=utf-8"))
        case (.GET, "/assets/app.css"): return .whole(Assets.response(Assets.appCSS, type: "text/css; charset=utf-8"))
        case (.GET, "/favicon.ico"): return .whole(DashboardResponse(status: .noContent))
        case (.GET, "/login"): return .whole(loginPage(message: "", status: .ok))
        case (.POST, "/login"): return .whole(await login(request))
        default: break
        }
        let session = auth.session(request.cookie(Self.cookie))
        let isAPI = request.path.hasPrefix("/api/")
        guard let session else {
            if isAPI { return .whole(.error(.unauthorized, "unauthenticated", "sign in first (POST /login); the session is missing or expired")) }
            if request.method == .GET || request.path == "/logout" { return .whole(.redirect("/login")) }
            return .whole(.error(.unauthorized, "unauthenticated", "sign in first"))
        }
        if request.method == .POST {
            let sent = request.path == "/logout" ? request.form["csrf"] : request.headers.first(name: "x-csrf-token")
            guard let sent, DashboardAuth.constantTimeEqual(sent, session.csrf) else {
                return .whole(.error(.forbidden, "csrf", "this request needs the session's CSRF token (header X-CSRF-Token, or field csrf in a form)"))
            }
        }
        switch (request.method, request.path) {
        case (.GET, "/"): return .whole(.redirect("/breakers"))
        case (.GET, let path) where Self.pages.contains(path): return .whole(shell(session))
        case (.POST, "/logout"):
            auth.logout(session.id)
            logger.info("dashboard sign-out", metadata: ["name": "\(session.name)", "from": "\(request.remote)"])
            var response = DashboardResponse.redirect("/login")
            response.headers.append(("set-cookie", "\(Self.cookie)=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"))
            return .whole(response)
        case (.GET, "/api/v1/session"):
            return .whole(.json(SessionJSON(name: session.name, role: session.role.rawValue, csrf: session.csrf, expiresAtMs: session.expiresAtMs)))
        case (.GET, "/api/v1/breakers"): return .whole(breakers(request))
        case (.GET, "/api/v1/breaker"): return .whole(breaker(request))
        case (.POST, "/api/v1/breaker/action"): return .whole(await action(request, session))
        case (.GET, "/api/v1/events"):
            switch streams.reserve(for: session.id, total: DashboardServer.maxEventStreams, perSession: Self.streamsPerSession) {
            case .success(let slot): return .events(session, registry: request.query["registry"] ?? "", slot: slot)
            case .failure(let refusal): return .whole(.error(.serviceUnavailable, "unavailable", refusal.message))
            }
        case (.GET, "/api/v1/policies"): return .whole(policies())
        case (.GET, "/api/v1/policy/versions"): return .whole(await versions(request))
        case (.GET, "/api/v1/policy/diff"): return .whole(await diff(request))
        case (.GET, "/api/v1/audit"): return .whole(await audit(request, session))
        case (.GET, "/api/v1/clients"): return .whole(clients())
        case (.GET, "/api/v1/health"): return .whole(.json(DashboardJSON.health(app.fleetHealth(registry: request.query["registry"] ?? ""))))
        case (_, let path) where path.hasPrefix("/api/"):
            return .whole(.error(.notFound, "not_found", "\(request.method) \(path) is not part of the API (docs/DASHBOARD.md)"))
        default:
            return .whole(.html(.notFound, "<!doctype html><title>Not found</title><p>Not found. <a href=\"/breakers\">Breakers</a></p>"))
        }
    }

    // MARK: Sign-in

    private func loginPage(message: String, status: HTTPResponseStatus) -> DashboardResponse {
        .html(status, Assets.loginHTML.replacingOccurrences(of: "{{message}}", with: HTMLText.escaped(message)))
    }

    private func shell(_ session: DashboardAuth.Session) -> DashboardResponse {
        .html(
            .ok,
            Assets.indexHTML
                .replacingOccurrences(of: "{{csrf}}", with: session.csrf)
                .replacingOccurrences(of: "{{name}}", with: HTMLText.escaped(session.name))
                .replacingOccurrences(of: "{{role}}", with: session.role.rawValue))
    }

    private func login(_ request: DashboardRequest) async -> DashboardResponse {
        // A sign-in form posted from another site (login CSRF) is refused.
        if let origin = request.headers.first(name: "origin"), let host = request.headers.first(name: "host"), origin != "https://\(host)" {
            return .error(.forbidden, "csrf", "sign-in from another origin (\(origin)) is refused")
        }
        let token = request.form["token"] ?? ""
        switch await auth.login(token: token, from: request.remote, replacing: request.cookie(Self.cookie)) {
        case .signedIn(let session):
            logger.info("dashboard sign-in", metadata: ["name": "\(session.name)", "role": "\(session.role.rawValue)", "from": "\(request.remote)"])
            var response = DashboardResponse.redirect("/breakers")
            response.headers.append((
                "set-cookie", "\(Self.cookie)=\(session.id); HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=\(auth.sessionSeconds)"
            ))
            return response
        case .refused:
            logger.warning("dashboard sign-in refused", metadata: ["from": "\(request.remote)"])
            return loginPage(message: "That token was not accepted.", status: .unauthorized)
        case .tooSoon(let seconds):
            var response = loginPage(message: "Too many failed sign-ins from your address: wait \(seconds) s and try again.", status: .tooManyRequests)
            response.headers.append(("retry-after", "\(seconds)"))
            return response
        }
    }

    // MARK: Breakers

    func breakerJSON(_ view: BreakerView, counts: [BreakerKey: OutcomeCounts], sparks: [BreakerKey: [Double]]) -> DashboardJSON.Breaker {
        DashboardJSON.breaker(view, counts: counts[view.key], spark: sparks[view.key] ?? [])
    }

    private func breakers(_ request: DashboardRequest) -> DashboardResponse {
        let registry = request.query["registry"] ?? ""
        let stateFilter = request.query["state"] ?? ""
        if !stateFilter.isEmpty, !BreakerState.allCases.contains(where: { $0.displayName == stateFilter }) {
            return .error(.badRequest, "invalid", "state (\"\(stateFilter)\") must be one of \(BreakerState.allCases.map(\.displayName).joined(separator: ", "))")
        }
        let all = app.authority.views(BreakerSelector())
        let counts = app.windowCounts()
        let sparks = activity.sparks()
        let selected = all.filter { (registry.isEmpty || $0.key.registry == registry) && (stateFilter.isEmpty || $0.status.state.displayName == stateFilter) }
        let registries = Set(all.map(\.key.registry)).union(app.registry.registries().map(\.name)).sorted()
        return .json(BreakersJSON(
            breakers: selected.prefix(Self.maxListed).map { breakerJSON($0, counts: counts, sparks: sparks) }, registries: registries,
            atMs: app.clock.now().milliseconds, truncated: selected.count > Self.maxListed))
    }

    private func key(_ request: DashboardRequest) -> Result<BreakerKey, DashboardResponse> {
        guard let name = request.query["name"], !name.isEmpty else { return .failure(.error(.badRequest, "invalid", "name is required")) }
        let registry = request.query["registry"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        return .success(BreakerKey(registry: registry, name: name))
    }

    private func breaker(_ request: DashboardRequest) -> DashboardResponse {
        let key: BreakerKey
        switch self.key(request) {
        case .success(let k): key = k
        case .failure(let response): return response
        }
        guard let detail = app.authority.detail(key) else { return .error(.notFound, "not_found", "no breaker \(key) is known to the fleet") }
        let counts = detail.window.counts
        return .json(BreakerDetailJSON(
            breaker: DashboardJSON.breaker(detail.view, counts: counts, spark: activity.spark(of: key)),
            window: DashboardJSON.window(counts), consecutiveFailures: detail.consecutiveFailures, outstandingPermits: detail.outstandingPermits,
            trips: detail.trips,
            contributions: detail.contributions.map {
                ContributionJSON(
                    client: $0.client, calls: DashboardJSON.calls($0.counts), failures: DashboardJSON.failures($0.counts),
                    slow: $0.counts.slowSuccess &+ $0.counts.slowFailure, lastReportAtMs: $0.lastReportAt?.milliseconds)
            },
            transitions: activity.transitions(of: key)))
    }

    private struct ActionBody: Decodable {
        var action: String
        var reason: String?
        var durationSeconds: UInt32?
    }

    private func action(_ request: DashboardRequest, _ session: DashboardAuth.Session) async -> DashboardResponse {
        let key: BreakerKey
        switch self.key(request) {
        case .success(let k): key = k
        case .failure(let response): return response
        }
        let actor = Self.actor(session)
        let body = try? JSONDecoder().decode(ActionBody.self, from: Data(request.body ?? []))
        let named = body.flatMap { FuseboxServerApp.OperatorAction(rawValue: $0.action) }
        let reason = body?.reason.map { String($0.utf8.prefix(1_024)) ?? "" } ?? ""
        // As asked, for the audit entry of a refusal too (admin.proto: an override's duration, allowed or not).
        let askedSeconds = named == .reset ? 0 : body?.durationSeconds ?? 0
        let askedMs = askedSeconds <= UInt32.max / 1_000 ? askedSeconds * 1_000 : UInt32.max
        // The role first: a reader is refused whatever the body holds.
        guard session.role >= .admin else {
            await app.appendAuditEntry(AuditRecord(
                atMs: app.clock.now().milliseconds, actor: actor, action: (named ?? .forceOpen).auditAction, breaker: key,
                reason: reason, allowed: false, deniedReason: "dashboard role \(session.role.rawValue) lacks admin", durationMs: askedMs))
            return .error(.forbidden, "forbidden", "actions need the admin role; \(session.name) is a \(session.role.rawValue)")
        }
        guard let body else {
            return .error(.badRequest, "invalid", "the body must be JSON {\"action\", \"reason\", \"durationSeconds\"}")
        }
        guard let action = named else {
            return .error(.badRequest, "invalid", "action (\"\(body.action)\") must be one of \(FuseboxServerApp.OperatorAction.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let seconds = body.durationSeconds ?? 0
        guard seconds <= UInt32.max / 1_000 else { return .error(.badRequest, "invalid", "durationSeconds is too large") }
        do throws(CoordinatorError) {
            let outcome = try await app.operatorAction(action, on: key, reason: body.reason ?? "", durationMs: seconds * 1_000, actor: actor)
            let counts = app.windowCounts()
            let sparks = activity.sparks()
            logger.notice("dashboard action", metadata: ["name": "\(session.name)", "action": "\(action.rawValue)", "breaker": "\(key)"])
            return .json(ActionJSON(
                before: outcome.before.map { breakerJSON($0, counts: counts, sparks: sparks) }, after: breakerJSON(outcome.after, counts: counts, sparks: sparks),
                auditId: outcome.auditID))
        } catch {
            // Every refusal is audited, as AdminService does, but a store that
            // could not take the write (it could not take the entry either).
            if error.code != .unavailable {
                await app.appendAuditEntry(AuditRecord(
                    atMs: app.clock.now().milliseconds, actor: actor, action: action.auditAction, breaker: key,
                    reason: reason, allowed: false, deniedReason: "invalid: \(error.message)", durationMs: askedMs))
            }
            switch error.code {
            case .invalidArgument: return .error(.badRequest, "invalid", error.message)
            case .notFound: return .error(.notFound, "not_found", error.message)
            case .failedPrecondition: return .error(.conflict, "conflict", error.message)
            case .resourceExhausted: return .error(.tooManyRequests, "resource_exhausted", error.message)
            case .unavailable: return .error(.serviceUnavailable, "unavailable", error.message)
            }
        }
    }

    /// One error-rate sample for every breaker (every 5 s).
    func sample() {
        let keys = app.authority.views(BreakerSelector()).map(\.key)
        activity.sample(keys: keys, counts: app.windowCounts(), atMs: app.clock.now().milliseconds)
    }

    // MARK: Policies

    private func policies() -> DashboardResponse {
        let registries = app.registry.registries().sorted { $0.name < $1.name }.map { r in
            RegistryJSON(
                name: r.name, version: r.version,
                policies: r.policies.values.sorted { $0.policy.name < $1.policy.name }.map {
                    PolicyJSON(name: $0.policy.name, version: $0.version, updatedAtMs: $0.updatedAtMs, updatedBy: $0.updatedBy)
                })
        }
        return .json(["registries": registries])
    }

    private func history(_ request: DashboardRequest) async -> Result<[PolicyChangeRecord], DashboardResponse> {
        guard let name = request.query["name"], !name.isEmpty else { return .failure(.error(.badRequest, "invalid", "name is required")) }
        let registry = request.query["registry"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        var records: [PolicyChangeRecord] = []
        var after: UInt64 = 0
        do throws(StoreError) {
            // Pages of 1,000, keeping the newest `maxVersions`; at most 100 pages.
            for _ in 0..<100 {
                let page = try await app.registry.history(registry: registry, name: name, afterVersion: after, limit: 1_000)
                records += page
                if records.count > Self.maxVersions { records.removeFirst(records.count - Self.maxVersions) }
                guard page.count == 1_000, let last = page.last else { break }
                after = last.version
            }
        } catch {
            return .failure(.error(.serviceUnavailable, "unavailable", "the policy history cannot be read: \(error)"))
        }
        guard !records.isEmpty else { return .failure(.error(.notFound, "not_found", "policy \(registry)/\(name) has no history")) }
        return .success(records)
    }

    private static func yaml(_ policy: Policy?) -> String { policy.map { PolicyYAML.value($0).yaml() } ?? "" }

    private static func kindName(_ kind: PolicyChangeRecord.Kind) -> String {
        switch kind {
        case .created: return "CREATED"
        case .updated: return "UPDATED"
        case .deleted: return "DELETED"
        }
    }

    private func versions(_ request: DashboardRequest) async -> DashboardResponse {
        switch await history(request) {
        case .failure(let response): return response
        case .success(let records):
            return .json(["versions": records.reversed().map {
                VersionJSON(registryVersion: $0.version, kind: Self.kindName($0.kind), atMs: $0.atMs, actor: $0.actor, reason: $0.reason, yaml: Self.yaml($0.after))
            }])
        }
    }

    private func diff(_ request: DashboardRequest) async -> DashboardResponse {
        guard let from = request.query["from"].flatMap(UInt64.init), let to = request.query["to"].flatMap(UInt64.init) else {
            return .error(.badRequest, "invalid", "from and to must be registry versions from /api/v1/policy/versions")
        }
        switch await history(request) {
        case .failure(let response): return response
        case .success(let records):
            guard let a = records.first(where: { $0.version == from }), let b = records.first(where: { $0.version == to }) else {
                return .error(.notFound, "not_found", "version \(from) or \(to) is not a version of this policy")
            }
            return .json(DiffJSON(from: from, to: to, lines: PolicyDiff.lines(Self.yaml(a.after), Self.yaml(b.after))))
        }
    }

    // MARK: Audit, clients

    static func actor(_ session: DashboardAuth.Session) -> AuditActor {
        AuditActor(commonName: "dashboard:\(session.name)", roles: Role.allCases.filter { $0 <= session.role }.map(\.rawValue))
    }

    private func audit(_ request: DashboardRequest, _ session: DashboardAuth.Session) async -> DashboardResponse {
        var query = AuditQuery()
        query.limit = 200
        if let text = request.query["limit"], !text.isEmpty {
            guard let limit = Int(text), (1...1_000).contains(limit) else { return .error(.badRequest, "invalid", "limit must be 1-1000") }
            query.limit = limit
        }
        if let text = request.query["sinceMs"], !text.isEmpty {
            guard let since = Int64(text), since >= 0 else { return .error(.badRequest, "invalid", "sinceMs must be milliseconds since the epoch") }
            query.sinceMs = since
        }
        if let name = request.query["action"], !name.isEmpty {
            guard let action = DashboardJSON.auditAction(named: name) else {
                return .error(.badRequest, "invalid", "action (\"\(name)\") must be one of \(DashboardJSON.auditNames.map(\.1).joined(separator: ", "))")
            }
            query.actions = [action]
        }
        query.registry = request.query["registry"] ?? ""
        query.breakerPrefix = request.query["breaker"] ?? ""
        query.deniedOnly = request.query["deniedOnly"] == "true" || request.query["deniedOnly"] == "1"
        do throws(StoreError) {
            let entries = try await app.listAudit(query)
            // After the read, as AdminService audits ListAudit.
            await app.appendAuditEntry(AuditRecord(atMs: app.clock.now().milliseconds, actor: Self.actor(session), action: .listAudit, allowed: true))
            return .json(AuditJSON(entries: entries.prefix(query.limit).map(DashboardJSON.audit), truncated: entries.count > query.limit))
        } catch {
            return .error(.serviceUnavailable, "unavailable", "the audit log cannot be read: \(error)")
        }
    }

    private func clients() -> DashboardResponse {
        let (complete, list) = app.reportingClients()
        return .json(ClientsJSON(
            clients: list.map { ClientJSON(client: $0.client, mode: $0.local ? "LOCAL" : "FLEET", lastReportAtMs: $0.lastReportAt.milliseconds) },
            answeredBy: app.answeredBy, complete: complete))
    }
}
