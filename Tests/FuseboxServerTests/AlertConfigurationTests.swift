import Foundation
import FuseboxAlerts
import FuseboxServer
import FuseboxTesting
import XCTest

/// The `alerts` section of fuseboxd's configuration (docs/ALERTS.md).
final class AlertConfigurationTests: XCTestCase {
    private let environment = [
        "FUSEBOX_OPS_WEBHOOK_SECRET": "s3cret", "FUSEBOX_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "FUSEBOX_SMTP_PASSWORD": "pw",
    ]

    /// The example of docs/ALERTS.md, with its URL file in a temp dir.
    func testTheDocumentedExampleParses() throws {
        let doc = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/ALERTS.md"), encoding: .utf8)
        let block = try XCTUnwrap(doc.components(separatedBy: "```yaml\n").dropFirst().first?.components(separatedBy: "```").first)
        let urlFile = FileManager.default.temporaryDirectory.appendingPathComponent("ops-webhook-url-\(UUID().uuidString)").path
        try "https://ops.example.com/hooks/fusebox\n".write(toFile: urlFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: urlFile) }
        var c = ServerConfiguration()
        try c.apply(yaml: block.replacingOccurrences(of: "/etc/fusebox/secrets/ops-webhook-url", with: urlFile), source: "ALERTS.md", environment: environment)
        guard c.alerts.sinks.map(\.name) == ["ops-webhook", "platform-slack", "oncall-mail"] else { return XCTFail("sinks: \(c.alerts.sinks)") }
        XCTAssertEqual(c.alerts.sinks[0].kind, .webhook(url: "https://ops.example.com/hooks/fusebox", secret: "s3cret"))
        XCTAssertEqual(c.alerts.sinks[0].maxAttempts, 4)
        XCTAssertEqual(c.alerts.sinks[1].kind, .slack(url: "https://hooks.slack.com/services/T0/B0/x"))
        XCTAssertEqual(
            c.alerts.sinks[2].kind,
            .email(.init(
                url: "smtp://smtp.example.com:587", from: "fusebox@example.com", to: ["oncall@example.com", "platform-leads@example.com"],
                username: "fusebox@example.com", password: "pw", requireTLS: true)))
        guard c.alerts.rules.count == 8 else { return XCTFail("rules: \(c.alerts.rules.map(\.name))") }
        XCTAssertEqual(c.alerts.rules[1], AlertRule(
            name: "payments-opened", condition: .breakerOpened, severity: .critical, registries: ["payments"], sinks: ["oncall-mail", "ops-webhook"]))
        XCTAssertEqual(c.alerts.rules[3].condition, .flapping(trips: 5, withinMs: 600_000))
        XCTAssertEqual(c.alerts.rules[4].condition, .errorRateAbove(percent: 25, minimumCalls: 50))
        XCTAssertEqual(c.alerts.rules[7].severity, .emergency)
        XCTAssertEqual(c.alerts.rules[7].cooldownMs, 60_000)
        // A sink's description never shows its URL or secrets.
        XCTAssertEqual("\(c.alerts.sinks[0])", "webhook sink ops-webhook")
    }

    func testSinksWithoutRulesGetTheDefaultRules() throws {
        var c = ServerConfiguration()
        try c.apply(yaml: "alerts:\n  sinks:\n    - {name: s, kind: slack, urlEnv: U}\n", source: "f.yaml", environment: ["U": "https://x.example/hook"])
        XCTAssertEqual(c.alerts.rules, AlertsConfiguration.defaultRules)
        XCTAssertTrue(c.alerts.enabled)
        XCTAssertFalse(ServerConfiguration().alerts.enabled, "no sinks, no alerts")
    }

    private func assertError(_ yaml: String, _ expected: String, environment: [String: String] = [:], line: UInt = #line) {
        var c = ServerConfiguration()
        XCTAssertThrowsError(try c.apply(yaml: yaml, source: "fusebox.yaml", environment: environment), line: line) { error in
            XCTAssertEqual("\(error)", expected, line: line)
        }
    }

    func testErrorsNameTheKeyAndLineAndNeverTheSecret() {
        assertError(
            "alerts:\n  sinks:\n    - name: s\n      kind: webhook\n      url: https://hooks.example/secret-token\n",
            "fusebox.yaml:5: alerts.sinks[0].url would put a secret in the configuration file: give urlFile or urlEnv")
        assertError(
            "alerts:\n  sinks:\n    - name: s\n      kind: slack\n      urlEnv: SLACK_URL\n",
            "fusebox.yaml:5: alerts.sinks[0].urlEnv names variable SLACK_URL, which is not set")
        assertError(
            "alerts:\n  sinks:\n    - name: s\n      kind: slack\n      urlFile: /nonexistent/url\n",
            #"fusebox.yaml:5: alerts.sinks[0].urlFile ("/nonexistent/url") cannot be read"#)
        assertError(
            "alerts:\n  sinks:\n    - name: s\n      kind: pager\n",
            #"fusebox.yaml:4: alerts.sinks[0].kind ("pager") must be webhook, slack or email"#)
        assertError(
            "alerts:\n  sinks:\n    - {name: s, kind: slack, urlEnv: U}\n  rules:\n    - {name: r, kind: breakerOpened, severity: page}\n",
            #"fusebox.yaml:5: alerts.rules[0].severity ("page") must be info, warning, critical or emergency"#, environment: ["U": "https://x/y"])
        assertError(
            "alerts:\n  sinks:\n    - {name: s, kind: slack, urlEnv: U}\n  rules:\n    - {name: r, kind: breakerOpened, sinks: [pagerduty]}\n",
            "fusebox.yaml:2: alerts.rules[0].sinks names sink \"pagerduty\", which alerts.sinks does not define (defined: s)",
            environment: ["U": "https://x/y"])
        assertError(
            "alerts:\n  sinks:\n    - {name: s, kind: slack, urlEnv: U}\n    - {name: s, kind: slack, urlEnv: U}\n",
            #"fusebox.yaml:2: alerts.sinks[1].name ("s") names a second sink; names must be unique"#, environment: ["U": "https://x/y"])
        assertError(
            "alerts:\n  sinks:\n    - {name: s, kind: email, url: smtp://m:587, from: a@b, to: c@d, passwordEnv: P}\n",
            "fusebox.yaml:3: alerts.sinks[0].passwordEnv names variable P, which is not set")
        assertError(
            "alerts:\n  rules:\n    - {name: r, kind: flapping, trips: 1}\n",
            #"fusebox.yaml:3: alerts.rules[0].trips ("1") must be a whole number from 2 to 10000"#)
        assertError("alerts:\n  sink: []\n", "fusebox.yaml:2: alerts.sink is not a setting; alerts has sinks, rules and historySize")
    }
}
