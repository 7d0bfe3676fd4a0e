import Foundation
public import FuseboxAlerts
import Yams

/// The `alerts` section (docs/ALERTS.md): sinks, rules and the history's size.
public struct AlertsConfiguration: Sendable, Hashable {
    public var sinks: [AlertSink] = []
    public var rules: [AlertRule] = AlertsConfiguration.defaultRules
    /// Notifications kept for `fusebox alerts list`. Default 1,000.
    public var historySize = 1_000

    public init() {}

    /// The rules used when the section names sinks but no rules.
    public static let defaultRules: [AlertRule] = [
        AlertRule(name: "breaker-opened", condition: .breakerOpened, severity: .warning),
        AlertRule(name: "open-too-long", condition: .openLongerThan(ms: 900_000), severity: .critical),
        AlertRule(name: "flapping", condition: .flapping(trips: 5, withinMs: 600_000), severity: .warning),
        AlertRule(name: "error-rate", condition: .errorRateAbove(percent: 50, minimumCalls: 20), severity: .warning),
        AlertRule(name: "local-mode-clients", condition: .localModeClientsAbove(0), severity: .warning),
        AlertRule(name: "override-expiring", condition: .overrideExpiringWithin(ms: 300_000), severity: .info),
        AlertRule(name: "store-unavailable", condition: .storeUnavailable, severity: .emergency, cooldownMs: 60_000),
    ]

    /// Whether alerts are configured at all.
    public var enabled: Bool { !sinks.isEmpty }
}

extension ServerConfiguration {
    /// Parses the `alerts` mapping. Secrets are read here, from the files and
    /// environment variables the section names, and never logged.
    static func parseAlerts(
        _ node: Node, source: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> AlertsConfiguration {
        guard let map = node.mapping else {
            throw ConfigurationError(key: "alerts", source: source, line: node.mark?.line, "must be a mapping with sinks, rules and historySize")
        }
        var result = AlertsConfiguration()
        var rulesGiven = false
        for (keyNode, value) in map {
            let name = keyNode.string ?? ""
            let line = keyNode.mark?.line
            switch name {
            case "sinks":
                guard let list = value.sequence else { throw ConfigurationError(key: "alerts.sinks", source: source, line: line, "must be a list of sinks") }
                for (i, item) in list.enumerated() {
                    result.sinks.append(try parseSink(item, key: "alerts.sinks[\(i)]", source: source, environment: environment))
                }
            case "rules":
                guard let list = value.sequence else { throw ConfigurationError(key: "alerts.rules", source: source, line: line, "must be a list of rules") }
                rulesGiven = true
                result.rules = []
                for (i, item) in list.enumerated() { result.rules.append(try parseRule(item, key: "alerts.rules[\(i)]", source: source)) }
            case "historySize":
                result.historySize = try Fields.int(value, key: "alerts.historySize", source: source, range: 1...1_000_000)
            default:
                throw ConfigurationError(key: "alerts.\(name)", source: source, line: line, "is not a setting; alerts has sinks, rules and historySize")
            }
        }
        var names = Set<String>()
        for (i, sink) in result.sinks.enumerated() where !names.insert(sink.name).inserted {
            throw ConfigurationError(key: "alerts.sinks[\(i)].name", source: source, line: node.mark?.line, "(\"\(sink.name)\") names a second sink; names must be unique")
        }
        var ruleNames = Set<String>()
        for (i, rule) in result.rules.enumerated() {
            guard ruleNames.insert(rule.name).inserted else {
                throw ConfigurationError(key: "alerts.rules[\(i)].name", source: source, line: node.mark?.line, "(\"\(rule.name)\") names a second rule; names must be unique")
            }
            for sink in rule.sinks where !names.contains(sink) {
                throw ConfigurationError(
                    key: "alerts.rules[\(i)].sinks", source: source, line: node.mark?.line,
                    "names sink \"\(sink)\", which alerts.sinks does not define (defined: \(names.sorted().joined(separator: ", ")))")
            }
        }
        if rulesGiven, result.rules.isEmpty {
            throw ConfigurationError(key: "alerts.rules", source: source, line: node.mark?.line, "is empty; leave it out for the default rules")
        }
        return result
    }

    private static func parseSink(_ node: Node, key: String, source: String, environment: [String: String]) throws(ConfigurationError) -> AlertSink {
        let f = try Fields(node, key: key, source: source, allowed: [
            "name", "kind", "urlFile", "urlEnv", "secretFile", "secretEnv", "caFile", "timeoutMs", "maxAttempts", "queueCapacity",
            "url", "from", "to", "username", "passwordFile", "passwordEnv", "requireTLS",
        ])
        let name = try f.required("name")
        guard name.range(of: #"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"#, options: .regularExpression) != nil else {
            throw f.error("name", "(\"\(name)\") must be 1-63 letters, digits, \".\", \"_\" or \"-\"")
        }
        let kindName = try f.required("kind")
        let kind: AlertSink.Kind
        switch kindName {
        case "webhook", "slack":
            if f.string("url") != nil {
                throw f.error("url", "would put a secret in the configuration file: give urlFile or urlEnv")
            }
            let url = try secret(f, file: "urlFile", env: "urlEnv", environment: environment, required: true) ?? ""
            guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
                throw f.error(f.string("urlFile") != nil ? "urlFile" : "urlEnv", "must hold an http:// or https:// URL")
            }
            kind = kindName == "slack" ? .slack(url: url) : .webhook(url: url, secret: try secret(f, file: "secretFile", env: "secretEnv", environment: environment, required: false))
        case "email":
            let url = try f.required("url")
            guard url.hasPrefix("smtp://") || url.hasPrefix("smtps://") else { throw f.error("url", "(\"\(url)\") must be smtp://host:port or smtps://host:port") }
            let from = try f.required("from")
            let to: [String]
            if let list = f.map["to"]?.sequence {
                to = list.compactMap { $0.string }
            } else {
                to = (f.string("to") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            }
            guard !to.isEmpty else { throw f.error("to", "needs at least one address") }
            for address in [from] + to where !address.contains("@") || address.contains(where: { $0 == "<" || $0 == ">" || $0 == "\n" || $0 == "\r" }) {
                throw f.error(address == from ? "from" : "to", "(\"\(address)\") is not an e-mail address")
            }
            let password = try secret(f, file: "passwordFile", env: "passwordEnv", environment: environment, required: false)
            kind = .email(AlertSink.Email(
                url: url, from: from, to: to, username: f.string("username"), password: password, requireTLS: try f.bool("requireTLS") ?? true))
        default:
            throw f.error("kind", "(\"\(kindName)\") must be webhook, slack or email")
        }
        var sink = AlertSink(name: name, kind: kind)
        sink.caFile = f.string("caFile")
        if let ca = sink.caFile, !FileManager.default.isReadableFile(atPath: ca) { throw f.error("caFile", "(\"\(ca)\") cannot be read") }
        if let v = try f.int("timeoutMs", 100...120_000) { sink.timeoutMs = v }
        if let v = try f.int("maxAttempts", 1...20) { sink.maxAttempts = v }
        if let v = try f.int("queueCapacity", 1...1_000_000) { sink.queueCapacity = v }
        return sink
    }

    /// A secret from a file (its content without the trailing newline) or an
    /// environment variable. Errors name the key, the file or the variable, never the value.
    private static func secret(_ f: Fields, file: String, env: String, environment: [String: String], required: Bool) throws(ConfigurationError) -> String? {
        switch (f.string(file), f.string(env)) {
        case (.some, .some):
            throw f.error(file, "and \(env) are both given; give one")
        case (.some(let path), nil):
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw f.error(file, "(\"\(path)\") cannot be read")
            }
            let value = text.trimmingCharacters(in: .newlines)
            guard !value.isEmpty else { throw f.error(file, "(\"\(path)\") is empty") }
            return value
        case (nil, .some(let variable)):
            guard let value = environment[variable], !value.isEmpty else { throw f.error(env, "names variable \(variable), which is not set") }
            return value
        case (nil, nil):
            if required { throw f.error(file, "or \(env) is required") }
            return nil
        }
    }

    private static func parseRule(_ node: Node, key: String, source: String) throws(ConfigurationError) -> AlertRule {
        let f = try Fields(node, key: key, source: source, allowed: [
            "name", "kind", "severity", "cooldownSeconds", "registries", "sinks", "openForSeconds", "trips", "windowMinutes", "percent",
            "minimumCalls", "above", "withinSeconds",
        ])
        let name = try f.required("name")
        let severityName = f.string("severity") ?? "warning"
        guard let severity = AlertSeverity(rawValue: severityName) else {
            throw f.error("severity", "(\"\(severityName)\") must be info, warning, critical or emergency")
        }
        let kind = try f.required("kind")
        let condition: AlertRule.Condition
        switch kind {
        case "breakerOpened": condition = .breakerOpened
        case "openTooLong": condition = .openLongerThan(ms: Int64(try f.int("openForSeconds", 1...604_800) ?? 900) * 1000)
        case "flapping":
            condition = .flapping(trips: try f.int("trips", 2...10_000) ?? 5, withinMs: Int64(try f.int("windowMinutes", 1...10_080) ?? 10) * 60_000)
        case "errorRate":
            let percent = try f.double("percent", 0...100) ?? 50
            condition = .errorRateAbove(percent: percent, minimumCalls: try f.int("minimumCalls", 1...1_000_000_000) ?? 20)
        case "localModeClients": condition = .localModeClientsAbove(try f.int("above", 0...10_000_000) ?? 0)
        case "overrideExpiring": condition = .overrideExpiringWithin(ms: Int64(try f.int("withinSeconds", 1...604_800) ?? 300) * 1000)
        case "storeUnavailable": condition = .storeUnavailable
        default:
            throw f.error("kind", "(\"\(kind)\") must be breakerOpened, openTooLong, flapping, errorRate, localModeClients, overrideExpiring or storeUnavailable")
        }
        return AlertRule(
            name: name, condition: condition, severity: severity, cooldownMs: Int64(try f.int("cooldownSeconds", 0...604_800) ?? 300) * 1000,
            registries: try f.list("registries"), sinks: try f.list("sinks"))
    }
}

/// The fields of one mapping in a list, with errors that name the key and line.
struct Fields {
    let map: Node.Mapping
    let key: String
    let source: String
    let line: Int?

    init(_ node: Node, key: String, source: String, allowed: Set<String>) throws(ConfigurationError) {
        guard let map = node.mapping else { throw ConfigurationError(key: key, source: source, line: node.mark?.line, "must be a mapping") }
        self.map = map
        self.key = key
        self.source = source
        self.line = node.mark?.line
        for (k, _) in map {
            let name = k.string ?? ""
            guard allowed.contains(name) else {
                throw ConfigurationError(key: "\(key).\(name)", source: source, line: k.mark?.line, "is not a setting; known: \(allowed.sorted().joined(separator: ", "))")
            }
        }
    }

    func error(_ field: String, _ message: String) -> ConfigurationError {
        ConfigurationError(key: "\(key).\(field)", source: source, line: map[Node(field)]?.mark?.line ?? line, message)
    }

    func string(_ field: String) -> String? { map[field]?.scalar?.string }

    func required(_ field: String) throws(ConfigurationError) -> String {
        guard let v = string(field), !v.isEmpty else { throw error(field, "is required") }
        return v
    }

    func int(_ field: String, _ range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let text = string(field) else { return nil }
        guard let v = Int(text), range.contains(v) else {
            throw error(field, "(\"\(text)\") must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return v
    }

    static func int(_ node: Node, key: String, source: String, range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let text = node.scalar?.string, let v = Int(text), range.contains(v) else {
            throw ConfigurationError(key: key, source: source, line: node.mark?.line, "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return v
    }

    func double(_ field: String, _ range: ClosedRange<Double>) throws(ConfigurationError) -> Double? {
        guard let text = string(field) else { return nil }
        guard let v = Double(text), v.isFinite, range.contains(v) else {
            throw error(field, "(\"\(text)\") must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return v
    }

    func bool(_ field: String) throws(ConfigurationError) -> Bool? {
        guard let text = string(field) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(field, "(\"\(text)\") must be true or false")
        }
    }

    func list(_ field: String) throws(ConfigurationError) -> [String] {
        guard let node = map[field] else { return [] }
        if let sequence = node.sequence {
            var out: [String] = []
            for item in sequence {
                guard let s = item.scalar?.string, !s.isEmpty else { throw error(field, "must be a list of names") }
                out.append(s)
            }
            return out
        }
        guard let s = node.scalar?.string else { throw error(field, "must be a list of names") }
        return s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
