import Foundation
import FuseboxCore
import Yams

/// Walks one YAML document into a policy, recording every key's position
/// and every problem.
struct PolicyDocumentReader {
    let file: String
    var problems: [PolicyFileProblem] = []
    var marks: [String: Mark] = [:]

    init(file: String) {
        self.file = file
    }

    func mark(for field: String) -> Mark? {
        nearest(field, in: marks)
    }

    mutating func problem(_ node: Node?, _ field: String, _ message: String) {
        let m = node?.mark ?? mark(for: field)
        problems.append(PolicyFileProblem(file: file, line: m?.line, column: m?.column, field: field, message: message))
    }

    /// The keys of a mapping, checked against `known`.
    mutating func fields(_ node: Node, _ path: String, known: [String]) -> [String: Node] {
        guard let mapping = node.mapping else {
            problem(node, path, "must be a mapping of \(known.joined(separator: ", "))")
            return [:]
        }
        var out: [String: Node] = [:]
        for (k, v) in mapping {
            let key = k.string ?? ""
            let full = path.isEmpty ? key : "\(path).\(key)"
            if let m = k.mark { marks[full] = m }
            guard known.contains(key) else {
                let hint = known.min { editDistance($0, key) < editDistance($1, key) }.flatMap { editDistance($0, key) <= 3 ? " (did you mean \"\($0)\"?)" : nil } ?? ""
                problem(k, full, "unknown field\(hint); known here: \(known.joined(separator: ", "))")
                continue
            }
            out[key] = v
        }
        return out
    }

    mutating func string(_ node: Node?, _ path: String) -> String? {
        guard let node else { return nil }
        guard let s = node.scalar?.string else {
            problem(node, path, "must be a string")
            return nil
        }
        return s
    }

    mutating func int(_ node: Node?, _ path: String) -> Int64? {
        guard let node else { return nil }
        guard node.scalar != nil, let i = node.int else {
            problem(node, path, "must be a whole number, not \"\(node.scalar?.string ?? "a collection")\"")
            return nil
        }
        return Int64(i)
    }

    mutating func double(_ node: Node?, _ path: String) -> Double? {
        guard let node else { return nil }
        guard node.scalar != nil, let d = node.float ?? node.int.map(Double.init) else {
            problem(node, path, "must be a number, not \"\(node.scalar?.string ?? "a collection")\"")
            return nil
        }
        return d
    }

    mutating func bool(_ node: Node?, _ path: String) -> Bool? {
        guard let node else { return nil }
        guard node.scalar != nil, let b = node.bool else {
            problem(node, path, "must be true or false")
            return nil
        }
        return b
    }

    mutating func strings(_ node: Node?, _ path: String) -> [String]? {
        guard let node else { return nil }
        guard let seq = node.sequence else {
            problem(node, path, "must be a list")
            return nil
        }
        return seq.enumerated().compactMap { item in
            if let m = item.element.mark { marks["\(path)[\(item.offset)]"] = m }
            return string(item.element, "\(path)[\(item.offset)]")
        }
    }

    mutating func choice<T>(_ node: Node?, _ path: String, _ options: [(String, T)]) -> T? {
        guard let raw = string(node, path) else { return nil }
        guard let found = options.first(where: { $0.0 == raw }) else {
            problem(node, path, "(\"\(raw)\") must be one of \(options.map(\.0).joined(separator: ", "))")
            return nil
        }
        return found.1
    }

    mutating func policy(_ node: Node) -> Policy {
        let f = fields(node, "", known: ["name", "description", "labels", "circuitBreaker", "retry", "timeout", "bulkhead", "rateLimit", "fallback", "cache"])
        if let m = node.mark { marks["name"] = marks["name"] ?? m }
        var p = Policy(name: string(f["name"], "name") ?? "")
        if f["name"] == nil { problem(node, "name", "is required") }
        p.description = string(f["description"], "description") ?? ""
        if let labels = f["labels"] {
            if let mapping = labels.mapping {
                for (k, v) in mapping {
                    let key = k.string ?? ""
                    if let m = k.mark { marks["labels.\(key)"] = m }
                    p.labels[key] = string(v, "labels.\(key)")
                }
            } else {
                problem(labels, "labels", "must be a mapping of label names to values")
            }
        }
        if let n = f["circuitBreaker"] { p.circuitBreaker = circuitBreaker(n) }
        if let n = f["retry"] { p.retry = retry(n) }
        if let n = f["timeout"] {
            let t = fields(n, "timeout", known: ["attemptMs", "totalMs"])
            p.timeout = TimeoutPolicy(attemptMs: int(t["attemptMs"], "timeout.attemptMs"), totalMs: int(t["totalMs"], "timeout.totalMs"))
        }
        if let n = f["bulkhead"] {
            let b = fields(n, "bulkhead", known: ["maxConcurrent", "maxQueued", "maxWaitMs"])
            if b["maxConcurrent"] == nil { problem(n, "bulkhead.maxConcurrent", "is required") }
            var bulkhead = BulkheadPolicy(maxConcurrent: Int(int(b["maxConcurrent"], "bulkhead.maxConcurrent") ?? 1))
            if let q = int(b["maxQueued"], "bulkhead.maxQueued") { bulkhead.maxQueued = Int(q) }
            if let w = int(b["maxWaitMs"], "bulkhead.maxWaitMs") { bulkhead.maxWaitMs = w }
            p.bulkhead = bulkhead
        }
        if let n = f["rateLimit"] {
            let r = fields(n, "rateLimit", known: ["limitPerPeriod", "periodMs", "burst", "maxWaitMs"])
            if r["limitPerPeriod"] == nil { problem(n, "rateLimit.limitPerPeriod", "is required") }
            let limit = Int(int(r["limitPerPeriod"], "rateLimit.limitPerPeriod") ?? 1)
            p.rateLimit = RateLimitPolicy(
                limitPerPeriod: limit, periodMs: int(r["periodMs"], "rateLimit.periodMs") ?? 1_000,
                burst: int(r["burst"], "rateLimit.burst").map { Int($0) }, maxWaitMs: int(r["maxWaitMs"], "rateLimit.maxWaitMs") ?? 0)
        }
        if let n = f["fallback"] { p.fallback = fallback(n) }
        if let n = f["cache"] {
            let c = fields(n, "cache", known: ["ttlMs", "maxEntries", "staleWhileRevalidateMs"])
            if c["ttlMs"] == nil { problem(n, "cache.ttlMs", "is required") }
            var cache = CachePolicy(ttlMs: int(c["ttlMs"], "cache.ttlMs") ?? 1)
            if let m = int(c["maxEntries"], "cache.maxEntries") { cache.maxEntries = Int(m) }
            if let s = int(c["staleWhileRevalidateMs"], "cache.staleWhileRevalidateMs") { cache.staleWhileRevalidateMs = s }
            p.cache = cache
        }
        return p
    }

    mutating func circuitBreaker(_ node: Node) -> CircuitBreakerPolicy {
        let p = "circuitBreaker"
        let f = fields(node, p, known: [
            "window", "failureRateThreshold", "slowCallRateThreshold", "slowCallDurationThresholdMs", "minimumCalls",
            "consecutiveFailuresThreshold", "minimumClients", "openDuration", "halfOpen", "ignoredErrors",
        ])
        var cb = CircuitBreakerPolicy()
        if let n = f["window"] {
            let w = fields(n, "\(p).window", known: ["kind", "size", "buckets"])
            let kind = choice(w["kind"], "\(p).window.kind", [("count", WindowShape.Kind.count), ("time", .time)]) ?? .count
            let size = Int(int(w["size"], "\(p).window.size") ?? 100)
            cb.window = WindowShape(kind: kind, size: size, buckets: int(w["buckets"], "\(p).window.buckets").map { Int($0) })
        }
        if let v = double(f["failureRateThreshold"], "\(p).failureRateThreshold") { cb.failureRateThreshold = v }
        if let v = double(f["slowCallRateThreshold"], "\(p).slowCallRateThreshold") { cb.slowCallRateThreshold = v }
        if let v = int(f["slowCallDurationThresholdMs"], "\(p).slowCallDurationThresholdMs") { cb.slowCallDurationThresholdMs = v }
        if let v = int(f["minimumCalls"], "\(p).minimumCalls") { cb.minimumCalls = Int(v) }
        if let v = int(f["consecutiveFailuresThreshold"], "\(p).consecutiveFailuresThreshold") { cb.consecutiveFailuresThreshold = Int(v) }
        if let v = int(f["minimumClients"], "\(p).minimumClients") { cb.minimumClients = Int(v) }
        if let n = f["openDuration"] {
            let o = fields(n, "\(p).openDuration", known: ["baseMs", "multiplier", "maxMs", "jitterPercent"])
            if let v = int(o["baseMs"], "\(p).openDuration.baseMs") { cb.openDuration.baseMs = v }
            if let v = double(o["multiplier"], "\(p).openDuration.multiplier") { cb.openDuration.multiplier = v }
            if let v = int(o["maxMs"], "\(p).openDuration.maxMs") { cb.openDuration.maxMs = v }
            if let v = int(o["jitterPercent"], "\(p).openDuration.jitterPercent") { cb.openDuration.jitterPercent = Int(v) }
        }
        if let n = f["halfOpen"] {
            let h = fields(n, "\(p).halfOpen", known: ["permittedCalls", "maxWaitMs", "successThreshold"])
            if let v = int(h["permittedCalls"], "\(p).halfOpen.permittedCalls") { cb.halfOpen.permittedCalls = Int(v) }
            if let v = int(h["maxWaitMs"], "\(p).halfOpen.maxWaitMs") { cb.halfOpen.maxWaitMs = v }
            if let v = int(h["successThreshold"], "\(p).halfOpen.successThreshold") { cb.halfOpen.successThreshold = Int(v) }
        }
        if let v = strings(f["ignoredErrors"], "\(p).ignoredErrors") { cb.ignoredErrors = Set(v) }
        return cb
    }

    mutating func retry(_ node: Node) -> RetryPolicy {
        let p = "retry"
        let f = fields(node, p, known: [
            "maxAttempts", "backoff", "jitter", "jitterPercent", "retryOn", "retryableErrors", "nonRetryableErrors", "honorPushback", "budget",
        ])
        var r = RetryPolicy()
        if let v = int(f["maxAttempts"], "\(p).maxAttempts") { r.maxAttempts = Int(v) }
        if let n = f["backoff"] {
            let b = fields(n, "\(p).backoff", known: ["kind", "initialMs", "maxMs", "multiplier"])
            if let k = choice(b["kind"], "\(p).backoff.kind", BackoffKind.allCases.map { ($0.rawValue, $0) }) { r.backoff.kind = k }
            if let v = int(b["initialMs"], "\(p).backoff.initialMs") { r.backoff.initialMs = v }
            if let v = int(b["maxMs"], "\(p).backoff.maxMs") { r.backoff.maxMs = v }
            if let v = double(b["multiplier"], "\(p).backoff.multiplier") { r.backoff.multiplier = v }
        }
        if let j = choice(f["jitter"], "\(p).jitter", JitterKind.allCases.map { ($0.rawValue, $0) }) { r.jitter = j }
        if let v = int(f["jitterPercent"], "\(p).jitterPercent") { r.jitterPercent = Int(v) }
        if let seq = f["retryOn"] {
            if let items = seq.sequence {
                r.retryOn = Set(items.enumerated().compactMap { item in
                    if let m = item.element.mark { marks["\(p).retryOn[\(item.offset)]"] = m }
                    return choice(item.element, "\(p).retryOn[\(item.offset)]", RetryCondition.allCases.map { ($0.rawValue, $0) })
                })
            } else {
                problem(seq, "\(p).retryOn", "must be a list of \(RetryCondition.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        if let v = strings(f["retryableErrors"], "\(p).retryableErrors") { r.retryableErrors = Set(v) }
        if let v = strings(f["nonRetryableErrors"], "\(p).nonRetryableErrors") { r.nonRetryableErrors = Set(v) }
        if let v = bool(f["honorPushback"], "\(p).honorPushback") { r.honorPushback = v }
        if let n = f["budget"] {
            let b = fields(n, "\(p).budget", known: ["maxTokens", "tokenRatio"])
            var budget = RetryBudgetPolicy()
            if let v = int(b["maxTokens"], "\(p).budget.maxTokens") { budget.maxTokens = Int(v) }
            if let v = double(b["tokenRatio"], "\(p).budget.tokenRatio") { budget.tokenRatio = v }
            r.budget = budget
        }
        return r
    }

    mutating func fallback(_ node: Node) -> FallbackPolicy? {
        let f = fields(node, "fallback", known: ["triggers", "action"])
        var triggers: Set<FallbackTrigger> = []
        if let seq = f["triggers"] {
            if let items = seq.sequence {
                triggers = Set(items.enumerated().compactMap { item in
                    if let m = item.element.mark { marks["fallback.triggers[\(item.offset)]"] = m }
                    return choice(item.element, "fallback.triggers[\(item.offset)]", FallbackTrigger.allCases.map { ($0.rawValue, $0) })
                })
            } else {
                problem(seq, "fallback.triggers", "must be a list")
            }
        }
        guard let actionNode = f["action"] else {
            problem(node, "fallback.action", "is required: staleCache, {staticResponse: {contentType, body}} or {handler: NAME}")
            return nil
        }
        if actionNode.scalar?.string == "staleCache" { return FallbackPolicy(triggers: triggers, action: .staleCache) }
        let a = fields(actionNode, "fallback", known: ["staticResponse", "handler", "staleCache"])
        if let h = a["handler"] { return FallbackPolicy(triggers: triggers, action: .handler(string(h, "fallback.handler") ?? "")) }
        if let s = a["staticResponse"] {
            let r = fields(s, "fallback.staticResponse", known: ["contentType", "body"])
            let body = string(r["body"], "fallback.staticResponse.body") ?? ""
            return FallbackPolicy(
                triggers: triggers,
                action: .staticResponse(contentType: string(r["contentType"], "fallback.staticResponse.contentType") ?? "text/plain", body: Array(body.utf8)))
        }
        if a["staleCache"] != nil { return FallbackPolicy(triggers: triggers, action: .staleCache) }
        if problems.isEmpty { problem(actionNode, "fallback.action", "must be staleCache, {staticResponse: {contentType, body}} or {handler: NAME}") }
        return nil
    }
}

/// The value for `field` or, failing that, for the nearest field that holds
/// it: `retry.retryOn[2]`, then `retry.retryOn`, then `retry`.
func nearest<T>(_ field: String, in values: [String: T]) -> T? {
    var path = field
    while !path.isEmpty {
        if let v = values[path] { return v }
        if path.hasSuffix("]"), let open = path.lastIndex(of: "[") {
            path = String(path[..<open])
        } else if let dot = path.lastIndex(of: ".") {
            path = String(path[..<dot])
        } else {
            break
        }
    }
    return nil
}

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.lowercased()), b = Array(b.lowercased())
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var row = Array(0...b.count)
    for i in 1...a.count {
        var previous = row[0]
        row[0] = i
        for j in 1...b.count {
            let current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = current
        }
    }
    return row[b.count]
}
