/// Field paths of a policy in two spellings, translated through one table:
/// the domain's camelCase names (what `PolicyValidator` reports and policy
/// files use, e.g. `circuitBreaker.failureRateThreshold`) and the proto names
/// of `fusebox.v1.Policy` (what `FieldViolation.field` carries, e.g.
/// `circuit_breaker.failure_rate_threshold_percent`).
///
/// Proto paths follow the convention documented on `FieldViolation` in
/// `common.proto`: proto field names joined by `.`; an element of a repeated
/// field as `retry.retry_on[2]` (0-based); a map entry as `labels["team"]`,
/// the key quoted with `"` and `\` escaped by a `\`. Domain paths name a list
/// element the same way (`retry.retryOn[2]`) and a label as `labels.team`.
public enum PolicyFieldPath {
    /// What a field holds, which decides how a path continues past it.
    enum Shape: Sendable {
        /// One value or message: nothing follows but its own fields.
        case single
        /// A repeated field: `[index]` in both spellings.
        case list
        /// A map: `.key` in the domain, `["key"]` in proto.
        case map
    }

    /// One field of the policy in both spellings.
    struct Field: Sendable {
        let domain: String
        let proto: String
        let shape: Shape
    }

    /// Every field of `fusebox.v1.Policy` and of the messages under it, in the
    /// order the fields appear in the messages (a message before its fields).
    /// `PolicyFieldPathTests` walks the protobuf-c descriptors to check that
    /// each proto path exists, that none is missing and that the order holds.
    static let fields: [Field] = {
        func f(_ domain: String, _ proto: String, _ shape: Shape = .single) -> Field {
            Field(domain: domain, proto: proto, shape: shape)
        }
        return [
            f("name", "name"),
            f("description", "description"),
            f("labels", "labels", .map),
            f("circuitBreaker", "circuit_breaker"),
            f("circuitBreaker.window", "circuit_breaker.window"),
            f("circuitBreaker.window.kind", "circuit_breaker.window.type"),
            f("circuitBreaker.window.size", "circuit_breaker.window.size"),
            f("circuitBreaker.window.buckets", "circuit_breaker.window.buckets"),
            f("circuitBreaker.failureRateThreshold", "circuit_breaker.failure_rate_threshold_percent"),
            f("circuitBreaker.slowCallRateThreshold", "circuit_breaker.slow_call_rate_threshold_percent"),
            f("circuitBreaker.slowCallDurationThresholdMs", "circuit_breaker.slow_call_duration_threshold_ms"),
            f("circuitBreaker.minimumCalls", "circuit_breaker.minimum_calls"),
            f("circuitBreaker.consecutiveFailuresThreshold", "circuit_breaker.consecutive_failures_threshold"),
            f("circuitBreaker.minimumClients", "circuit_breaker.minimum_clients"),
            f("circuitBreaker.openDuration", "circuit_breaker.open_duration"),
            f("circuitBreaker.openDuration.baseMs", "circuit_breaker.open_duration.base_ms"),
            f("circuitBreaker.openDuration.multiplier", "circuit_breaker.open_duration.multiplier"),
            f("circuitBreaker.openDuration.maxMs", "circuit_breaker.open_duration.max_ms"),
            f("circuitBreaker.openDuration.jitterPercent", "circuit_breaker.open_duration.jitter_percent"),
            f("circuitBreaker.halfOpen", "circuit_breaker.half_open"),
            f("circuitBreaker.halfOpen.permittedCalls", "circuit_breaker.half_open.permitted_calls"),
            f("circuitBreaker.halfOpen.maxWaitMs", "circuit_breaker.half_open.max_wait_ms"),
            f("circuitBreaker.halfOpen.successThreshold", "circuit_breaker.half_open.success_threshold"),
            f("circuitBreaker.ignoredErrors", "circuit_breaker.ignored_errors", .list),
            f("retry", "retry"),
            f("retry.maxAttempts", "retry.max_attempts"),
            f("retry.backoff", "retry.backoff"),
            f("retry.backoff.kind", "retry.backoff.type"),
            f("retry.backoff.initialMs", "retry.backoff.initial_ms"),
            f("retry.backoff.maxMs", "retry.backoff.max_ms"),
            f("retry.backoff.multiplier", "retry.backoff.multiplier"),
            f("retry.jitter", "retry.jitter"),
            f("retry.jitterPercent", "retry.jitter_percent"),
            f("retry.retryOn", "retry.retry_on", .list),
            f("retry.retryableErrors", "retry.retryable_errors", .list),
            f("retry.nonRetryableErrors", "retry.non_retryable_errors", .list),
            f("retry.honorPushback", "retry.honor_pushback"),
            f("retry.budget", "retry.budget"),
            f("retry.budget.maxTokens", "retry.budget.max_tokens"),
            f("retry.budget.tokenRatio", "retry.budget.token_ratio"),
            f("timeout", "timeout"),
            f("timeout.attemptMs", "timeout.attempt_ms"),
            f("timeout.totalMs", "timeout.total_ms"),
            f("bulkhead", "bulkhead"),
            f("bulkhead.maxConcurrent", "bulkhead.max_concurrent"),
            f("bulkhead.maxQueued", "bulkhead.max_queued"),
            f("bulkhead.maxWaitMs", "bulkhead.max_wait_ms"),
            f("rateLimit", "rate_limit"),
            f("rateLimit.limitPerPeriod", "rate_limit.limit_per_period"),
            f("rateLimit.periodMs", "rate_limit.period_ms"),
            f("rateLimit.burst", "rate_limit.burst"),
            f("rateLimit.maxWaitMs", "rate_limit.max_wait_ms"),
            f("fallback", "fallback"),
            f("fallback.triggers", "fallback.on", .list),
            f("fallback.staticResponse", "fallback.static_response"),
            f("fallback.staticResponse.contentType", "fallback.static_response.content_type"),
            f("fallback.staticResponse.body", "fallback.static_response.body"),
            f("fallback.staleCache", "fallback.stale_cache"),
            f("fallback.handler", "fallback.handler"),
            f("cache", "cache"),
            f("cache.ttlMs", "cache.ttl_ms"),
            f("cache.maxEntries", "cache.max_entries"),
            f("cache.staleWhileRevalidateMs", "cache.stale_while_revalidate_ms"),
        ]
    }()

    private static let byDomain: [String: Int] = Dictionary(
        uniqueKeysWithValues: fields.enumerated().map { ($1.domain, $0) })
    private static let byProto: [String: Int] = Dictionary(
        uniqueKeysWithValues: fields.enumerated().map { ($1.proto, $0) })

    /// A path split into the table's field and what follows it.
    struct Resolved: Sendable, Equatable {
        /// Index of the field in `fields`.
        let field: Int
        /// The list index or map key after the field, if any.
        let element: Element?
    }

    /// An element of a repeated field or map.
    enum Element: Sendable, Equatable {
        case index(Int)
        case key(String)
    }

    // MARK: Paths

    /// The proto path for a domain path, e.g. `retry.backoff.max_ms` for
    /// `retry.backoff.maxMs`, `labels["team"]` for `labels.team`. Nil when the
    /// table does not know the field.
    public static func proto(fromDomain path: String) -> String? {
        guard let r = resolve(domain: path) else { return nil }
        return spell(r, proto: true)
    }

    /// The domain path for a proto path relative to the policy, e.g.
    /// `retry.backoff.maxMs` for `retry.backoff.max_ms`. Nil when the path is
    /// not a field of `fusebox.v1.Policy`. The empty path stays empty.
    public static func domain(fromProto path: String) -> String? {
        if path.isEmpty { return "" }
        guard let r = resolve(proto: path) else { return nil }
        return spell(r, proto: false)
    }

    static func resolve(domain path: String) -> Resolved? {
        if let i = byDomain[path] { return Resolved(field: i, element: nil) }
        if let (base, index) = splitIndex(path), let i = byDomain[base], fields[i].shape == .list {
            return Resolved(field: i, element: .index(index))
        }
        // Map keys may hold dots: the first dot after a map field starts the key.
        for (i, field) in fields.enumerated() where field.shape == .map && path.hasPrefix(field.domain + ".") {
            return Resolved(field: i, element: .key(String(path.dropFirst(field.domain.count + 1))))
        }
        return nil
    }

    static func resolve(proto path: String) -> Resolved? {
        if let i = byProto[path] { return Resolved(field: i, element: nil) }
        if let (base, index) = splitIndex(path), let i = byProto[base], fields[i].shape == .list {
            return Resolved(field: i, element: .index(index))
        }
        for (i, field) in fields.enumerated()
        where field.shape == .map && path.hasPrefix(field.proto + "[\"") && path.hasSuffix("\"]") {
            let quoted = path.dropFirst(field.proto.count + 2).dropLast(2)
            guard let key = unescape(quoted) else { return nil }
            return Resolved(field: i, element: .key(key))
        }
        return nil
    }

    static func spell(_ r: Resolved, proto: Bool) -> String {
        let field = fields[r.field]
        let base = proto ? field.proto : field.domain
        switch r.element {
        case nil: return base
        case .index(let i)?: return "\(base)[\(i)]"
        case .key(let k)?: return proto ? "\(base)[\"\(escape(k))\"]" : "\(base).\(k)"
        }
    }

    /// `("a.b", 2)` for `a.b[2]`.
    private static func splitIndex(_ path: String) -> (String, Int)? {
        guard path.hasSuffix("]"), let open = path.lastIndex(of: "[") else { return nil }
        guard let index = Int(path[path.index(after: open)..<path.index(before: path.endIndex)]), index >= 0 else {
            return nil
        }
        return (String(path[..<open]), index)
    }

    private static func escape(_ key: String) -> String {
        var out = ""
        for c in key {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    private static func unescape(_ quoted: Substring) -> String? {
        var out = ""
        var escaping = false
        for c in quoted {
            if escaping {
                out.append(c)
                escaping = false
            } else if c == "\\" {
                escaping = true
            } else if c == "\"" {
                return nil
            } else {
                out.append(c)
            }
        }
        return escaping ? nil : out
    }

    /// The position of a proto path in request order, for sorting violations
    /// the way `ErrorDetails` promises; unknown paths last.
    static func order(ofProto path: String) -> Int {
        resolve(proto: path)?.field ?? fields.count
    }

    // MARK: Messages

    /// `message` with the field names it mentions in proto spelling. A name is
    /// translated when it is a whole domain path (`retry.backoff.initialMs`)
    /// or a field of the violation's own section (`failureRateThreshold` in a
    /// message about `circuitBreaker`). Text in double quotes is a value the
    /// user sent and is left alone.
    public static func protoMessage(_ message: String, field domainPath: String) -> String {
        rewrite(message) { word in
            if let i = byDomain[word] { return fields[i].proto }
            if !domainPath.isEmpty, let i = byDomain["\(domainPath).\(word)"],
                let parent = proto(fromDomain: domainPath)
            {
                return String(fields[i].proto.dropFirst(parent.count + 1))
            }
            return nil
        }
    }

    /// The inverse of `protoMessage(_:field:)`: the names a server's message
    /// mentions in domain spelling, for people editing a policy file.
    public static func domainMessage(_ message: String, field protoPath: String) -> String {
        rewrite(message) { word in
            if let i = byProto[word] { return fields[i].domain }
            if !protoPath.isEmpty, let i = byProto["\(protoPath).\(word)"], let parent = domain(fromProto: protoPath) {
                return String(fields[i].domain.dropFirst(parent.count + 1))
            }
            return nil
        }
    }

    /// Applies `translate` to every word (a run of letters, digits, `_` and
    /// inner `.`) outside double quotes; nil keeps the word.
    private static func rewrite(_ message: String, _ translate: (String) -> String?) -> String {
        var out = ""
        var word = ""
        var quoted = false
        func flush() {
            guard !word.isEmpty else { return }
            var trailing = ""
            while word.hasSuffix(".") {
                word.removeLast()
                trailing += "."
            }
            out += (translate(word) ?? word) + trailing
            word = ""
        }
        for c in message {
            if !quoted, c.isASCII, c.isLetter || c.isNumber || c == "_" || c == "." {
                word.append(c)
                continue
            }
            flush()
            if c == "\"" { quoted.toggle() }
            out.append(c)
        }
        flush()
        return out
    }
}
