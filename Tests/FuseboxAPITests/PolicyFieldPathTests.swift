import FuseboxCore
import FuseboxWire
import Testing

@testable import FuseboxAPI

/// The path table against the protobuf-c descriptors, and the validator's
/// output against the table.
@Suite struct PolicyFieldPathTests {
    @Test func everyProtoPathInTheTableIsAFieldOfPolicyWithTheRightShape() throws {
        for field in PolicyFieldPath.fields {
            let resolved = try #require(
                ProtoDescriptors.resolve(field.proto), "\(field.proto) is not a field of fusebox.v1.Policy")
            let expected: ProtoDescriptors.Shape =
                switch field.shape {
                case .single: .singular
                case .list: .repeated
                case .map: .map
                }
            #expect(resolved.shape == expected, "\(field.proto)")
        }
    }

    @Test func theTableNamesEveryFieldOfPolicyOnceInRequestOrder() {
        // Sorting violations by table position is then sorting them in the
        // order the fields appear in the request, as ErrorDetails promises.
        #expect(PolicyFieldPath.fields.map(\.proto) == ProtoDescriptors.allPaths())
        #expect(
            Set(PolicyFieldPath.fields.map(\.domain)).count == PolicyFieldPath.fields.count,
            "a domain path appears twice")
    }

    @Test func subscriptsTranslateBothWays() {
        let cases: [(domain: String, proto: String)] = [
            ("retry.retryOn[2]", "retry.retry_on[2]"),
            ("fallback.triggers[0]", "fallback.on[0]"),
            ("circuitBreaker.ignoredErrors[11]", "circuit_breaker.ignored_errors[11]"),
            ("labels.team", #"labels["team"]"#),
            ("labels.a.b/c", #"labels["a.b/c"]"#),
            (#"labels.say "hi" \o/"#, #"labels["say \"hi\" \\o/"]"#),
            ("labels.", #"labels[""]"#),
        ]
        for c in cases {
            #expect(PolicyFieldPath.proto(fromDomain: c.domain) == c.proto)
            #expect(PolicyFieldPath.domain(fromProto: c.proto) == c.domain)
            #expect(ProtoDescriptors.resolve(c.proto)?.subscripted == true, "\(c.proto)")
        }
        #expect(PolicyFieldPath.proto(fromDomain: "retry.backoff[1]") == nil, "backoff is not repeated")
        #expect(PolicyFieldPath.domain(fromProto: "retry.backoff.maxMs") == nil, "camelCase is not a proto path")
        #expect(PolicyFieldPath.domain(fromProto: #"labels["unterminated]"#) == nil)
        #expect(PolicyFieldPath.domain(fromProto: "registry") == nil)
    }

    /// Random policies with values in and far outside every range: every
    /// path the validator reports must be in the table and, translated, be a
    /// field of fusebox.v1.Policy; no message may keep a camelCase name.
    @Test func everyPathTheValidatorReportsIsAProtoField() throws {
        var random = SplitMix64(seed: 0xF05E_B0C5)
        var seen: Set<String> = []
        for _ in 0..<2_000 {
            let policy = Self.wild(&random)
            for v in PolicyValidator.violations(of: policy) {
                let proto = try #require(
                    PolicyFieldPath.proto(fromDomain: v.field),
                    "validator path \(v.field) is not in PolicyFieldPath.fields")
                #expect(
                    ProtoDescriptors.resolve(proto) != nil, "\(v.field) → \(proto) is not a field of fusebox.v1.Policy")
                let translated = PolicyMapping.protoViolation(v)
                #expect(translated.field == proto)
                for name in Self.camelCaseWords(translated.message) {
                    Issue.record("\(proto): message keeps the domain name \(name): \(translated.message)")
                }
                seen.insert(
                    PolicyFieldPath.resolve(domain: v.field).map { PolicyFieldPath.fields[$0.field].domain } ?? v.field)
            }
        }
        // The generator must reach every check, or the test proves little.
        let unreached = Set(Self.validatorFields).subtracting(seen)
        #expect(unreached.isEmpty, "no random policy triggered \(unreached.sorted())")
    }

    /// Every field `PolicyValidator` checks, by domain path, as listed in the
    /// per-kind cases of `PolicyMappingTests`; here only to measure the
    /// random generator's reach.
    static let validatorFields = [
        "name", "description", "labels", "circuitBreaker", "circuitBreaker.failureRateThreshold",
        "circuitBreaker.slowCallRateThreshold",
        "circuitBreaker.slowCallDurationThresholdMs", "circuitBreaker.minimumCalls",
        "circuitBreaker.consecutiveFailuresThreshold",
        "circuitBreaker.minimumClients", "circuitBreaker.window.size", "circuitBreaker.window.buckets",
        "circuitBreaker.openDuration.baseMs",
        "circuitBreaker.openDuration.multiplier", "circuitBreaker.openDuration.maxMs",
        "circuitBreaker.openDuration.jitterPercent",
        "circuitBreaker.halfOpen.permittedCalls", "circuitBreaker.halfOpen.maxWaitMs",
        "circuitBreaker.halfOpen.successThreshold",
        "circuitBreaker.ignoredErrors", "retry.maxAttempts", "retry.backoff.initialMs", "retry.backoff.maxMs",
        "retry.backoff.multiplier",
        "retry.jitterPercent", "retry.nonRetryableErrors", "retry.budget.maxTokens", "retry.budget.tokenRatio",
        "timeout", "timeout.attemptMs",
        "timeout.totalMs", "bulkhead.maxConcurrent", "bulkhead.maxQueued", "bulkhead.maxWaitMs",
        "rateLimit.limitPerPeriod", "rateLimit.periodMs",
        "rateLimit.burst", "rateLimit.maxWaitMs", "fallback.staticResponse.body", "fallback.staticResponse.contentType",
        "fallback.staleCache",
        "fallback.handler", "cache.ttlMs", "cache.maxEntries", "cache.staleWhileRevalidateMs",
    ]

    static let renamedDomainNames = Set(
        PolicyFieldPath.fields.flatMap { f -> [String] in
            zip(f.domain.split(separator: "."), f.proto.split(separator: ".")).filter { $0 != $1 }.map { String($0.0) }
        })

    /// Words outside double quotes that are domain names with a different proto name.
    static func camelCaseWords(_ message: String) -> [String] {
        var words: [String] = []
        var word = ""
        var quoted = false
        for c in message + " " {
            if !quoted, c.isLetter || c.isNumber || c == "_" {
                word.append(c)
                continue
            }
            if renamedDomainNames.contains(word) { words.append(word) }
            word = ""
            if c == "\"" { quoted.toggle() }
        }
        return words
    }

    // MARK: Random policies

    static func wild(_ r: inout SplitMix64) -> Policy {
        func pick<T>(_ options: [T]) -> T { options[Int(r.next() % UInt64(options.count))] }
        func int(_ typical: Int) -> Int { pick([-1, 0, 1, typical, typical * 3, 100_001, 1_000_001, 2_000_000_000]) }
        func ms(_ typical: Int64) -> Int64 {
            pick([-1, 0, 1, typical, PolicyValidator.maxDurationMs, PolicyValidator.maxDurationMs + 1])
        }
        func double(_ typical: Double) -> Double { pick([-1, 0, 0.5, typical, 100, 101, .nan, .infinity]) }
        func text(_ typical: String) -> String {
            pick(["", typical, "with space", String(repeating: "x", count: 300), String(repeating: "y", count: 1_100)])
        }
        func maybe() -> Bool { Bool.random(using: &r) }

        var p = Policy(name: text("p"))
        p.description = text("what for")
        for i in 0..<pick([0, 2, 40]) { p.labels[i == 0 ? text("team") : "k\(i)"] = text("v") }
        if maybe() {
            var cb = CircuitBreakerPolicy()
            cb.failureRateThreshold = double(50)
            cb.slowCallRateThreshold = double(80)
            cb.slowCallDurationThresholdMs = ms(2_000)
            cb.minimumCalls = int(10)
            cb.consecutiveFailuresThreshold = int(5)
            cb.minimumClients = int(1)
            cb.window = WindowShape(kind: maybe() ? .count : .time, size: int(100), buckets: maybe() ? nil : int(10))
            cb.openDuration.baseMs = ms(30_000)
            cb.openDuration.multiplier = double(2)
            cb.openDuration.maxMs = ms(60_000)
            cb.openDuration.jitterPercent = int(10)
            cb.halfOpen.permittedCalls = int(3)
            cb.halfOpen.maxWaitMs = ms(10_000)
            cb.halfOpen.successThreshold = int(3)
            cb.ignoredErrors = [text("http.404")]
            p.circuitBreaker = cb
        }
        if maybe() {
            var retry = RetryPolicy()
            retry.maxAttempts = int(3)
            retry.backoff.initialMs = ms(100)
            retry.backoff.maxMs = ms(10_000)
            retry.backoff.multiplier = double(2)
            retry.jitterPercent = int(20)
            retry.retryableErrors = [text("http.503")]
            retry.nonRetryableErrors = [text("http.400")]
            if maybe() {
                var budget = RetryBudgetPolicy()
                budget.maxTokens = int(10)
                budget.tokenRatio = double(0.1)
                retry.budget = budget
            }
            p.retry = retry
        }
        if maybe() { p.timeout = TimeoutPolicy(attemptMs: maybe() ? ms(800) : nil, totalMs: maybe() ? ms(3_000) : nil) }
        if maybe() { p.bulkhead = BulkheadPolicy(maxConcurrent: int(10), maxQueued: int(10), maxWaitMs: ms(1_000)) }
        if maybe() {
            p.rateLimit = RateLimitPolicy(
                limitPerPeriod: int(100), periodMs: ms(1_000), burst: maybe() ? nil : int(20), maxWaitMs: ms(0))
        }
        if maybe() { p.cache = CachePolicy(ttlMs: ms(60_000), maxEntries: int(1_000), staleWhileRevalidateMs: ms(0)) }
        if maybe() {
            let action: FallbackPolicy.Action =
                switch pick([0, 1, 2]) {
                case 0:
                    .staticResponse(
                        contentType: text("application/json"),
                        body: maybe() ? [] : Array(repeating: 0x20, count: 65_537))
                case 1: .staleCache
                default: .handler(text("empty"))
                }
            p.fallback = FallbackPolicy(action: action)
        }
        return p
    }
}
