import Foundation
import FuseboxAPI
import FuseboxAuthority
import FuseboxCore
@testable import FuseboxDashboard
import FuseboxRPC
import FuseboxServer
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import XCTest

/// The dashboard over real HTTPS (curl as the browser): sign-in, sessions,
/// roles, CSRF, the API, the event stream. The browser itself is in
/// FuseboxServerTests.DashboardBrowserTests.
final class DashboardTests: XCTestCase {
    var harness: DashboardHarness!

    override func setUp() async throws {
        harness = try await DashboardHarness.start()
    }

    override func tearDown() async throws {
        try await harness?.stop()
    }

    /// Trips breaker `name` in `default` through gRPC as a reporter would.
    private func trip(_ name: String, failures: UInt64 = 100) async throws {
        let client = try harness.server.client("admin", group: harness.group)
        defer { Task { await client.close() } }
        var batch = Fusebox_V1_OutcomeBatch()
        batch.clientId = "orders-1"
        var report = Fusebox_V1_BreakerOutcomes()
        report.breaker = BreakerMapping.ref("default", name)
        report.policy = "api"
        var counts = Fusebox_V1_OutcomeCounts()
        counts.failure = failures
        report.counts = counts
        report.trailingConsecutiveFailures = UInt32(failures)
        batch.breakers = [report]
        _ = try await client.unary("fusebox.v1.BreakerService", "ReportOutcomes", batch, as: Fusebox_V1_ReportOutcomesResponse.self)
    }

    func testSignInWithAHashedTokenSetsAStrictSessionCookieAndAWrongTokenIsRefused() async throws {
        let wrong = try await harness.request("POST", "/login", form: "token=fbx_not-a-token")
        XCTAssertEqual(wrong.status, 401)
        XCTAssertTrue(wrong.body.contains("That token was not accepted."), wrong.body)
        XCTAssertNil(wrong.header("set-cookie"))

        // A page without a session goes to the sign-in form; the API says 401.
        let answer1 = try await harness.request("GET", "/breakers")
        XCTAssertEqual(answer1.header("location"), "/login")
        let answer2 = try await harness.request("GET", "/api/v1/breakers")
        XCTAssertEqual(answer2.status, 401)

        let right = try await harness.request("POST", "/login", form: "token=\(DashboardHarness.adminToken)")
        XCTAssertEqual(right.status, 303)
        XCTAssertEqual(right.header("location"), "/breakers")
        let cookie = try XCTUnwrap(right.header("set-cookie"))
        for attribute in ["__Host-fusebox_session=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            XCTAssertTrue(cookie.contains(attribute), "cookie lacks \(attribute): \(cookie)")
        }
        let session = try await harness.request("GET", "/api/v1/session").json()
        XCTAssertEqual(session["name"] as? String, "alice")
        XCTAssertEqual(session["role"] as? String, "admin")
        let page = try await harness.request("GET", "/breakers")
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.body.contains(try XCTUnwrap(session["csrf"] as? String)), "the page carries the CSRF token")
        XCTAssertNotNil(page.header("content-security-policy"))

        // Logging out needs the CSRF token, and ends the session.
        let answer3 = try await harness.request("POST", "/logout", form: "csrf=wrong")
        XCTAssertEqual(answer3.status, 403)
        let answer4 = try await harness.request("POST", "/logout", form: "csrf=\(try XCTUnwrap(session["csrf"] as? String))")
        XCTAssertEqual(answer4.status, 303)
        let answer5 = try await harness.request("GET", "/api/v1/session")
        XCTAssertEqual(answer5.status, 401)
    }

    func testFailedSignInsAreSlowedDownAndRefusedWhileWaiting() async throws {
        let first = ContinuousClock.now
        let answer6 = try await harness.request("POST", "/login", form: "token=wrong-1")
        XCTAssertEqual(answer6.status, 401)
        XCTAssertLessThan(ContinuousClock.now - first, .seconds(1), "the first failure is answered at once")
        // The second attempt waits 1 s before it is answered; one sent meanwhile is refused.
        let harness = self.harness!
        let second = Task { () throws -> (Int, Duration) in
            let start = ContinuousClock.now
            let status = try await harness.request("POST", "/login", jar: nil, form: "token=wrong-2").status
            return (status, ContinuousClock.now - start)
        }
        try await Task.sleep(for: .milliseconds(300))
        let during = try await harness.request("POST", "/login", jar: nil, form: "token=\(DashboardHarness.adminToken)")
        XCTAssertEqual(during.status, 429, "an attempt while the address waits is refused, even with the right token")
        XCTAssertNotNil(during.header("retry-after"))
        let (status, waited) = try await second.value
        XCTAssertEqual(status, 401)
        XCTAssertGreaterThanOrEqual(waited, Duration.milliseconds(950), "the second failure's answer was delayed")
        // After the wait the right token is accepted, and success clears the count.
        try await Task.sleep(for: .milliseconds(2_100))
        let answer7 = try await harness.request("POST", "/login", form: "token=\(DashboardHarness.adminToken)")
        XCTAssertEqual(answer7.status, 303)
        let next = ContinuousClock.now
        let answer8 = try await harness.request("POST", "/login", jar: nil, form: "token=wrong-3")
        XCTAssertEqual(answer8.status, 401)
        XCTAssertLessThan(ContinuousClock.now - next, .seconds(1))
    }

    func testAReaderSeesButCannotActAndEveryChangeNeedsTheCSRFToken() async throws {
        try await trip("payments-api")
        let readerCSRF = try await harness.signIn(DashboardHarness.readerToken)
        let list = try await harness.request("GET", "/api/v1/breakers?registry=default&state=OPEN").json()
        let names = (list["breakers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        XCTAssertEqual(names, ["payments-api"])

        let path = "/api/v1/breaker/action?registry=default&name=payments-api"
        let body = #"{"action":"force_open","reason":"incident 42","durationSeconds":600}"#
        let refused = try await harness.request("POST", path, headers: ["X-CSRF-Token": readerCSRF], json: body)
        XCTAssertEqual(refused.status, 403)
        XCTAssertEqual((try refused.json()["error"] as? [String: Any])?["code"] as? String, "forbidden")

        // The admin: without the token, refused; with it, the breaker is forced open.
        let adminCSRF = try await harness.signIn(DashboardHarness.adminToken)
        let noToken = try await harness.request("POST", path, json: body)
        XCTAssertEqual(noToken.status, 403)
        XCTAssertEqual((try noToken.json()["error"] as? [String: Any])?["code"] as? String, "csrf")
        let otherToken = try await harness.request("POST", path, headers: ["X-CSRF-Token": readerCSRF], json: body)
        XCTAssertEqual(otherToken.status, 403, "another session's token does not do")
        let done = try await harness.request("POST", path, headers: ["X-CSRF-Token": adminCSRF], json: body)
        XCTAssertEqual(done.status, 200, done.body)
        let after = try XCTUnwrap(try done.json()["after"] as? [String: Any])
        XCTAssertEqual(after["state"] as? String, "FORCED_OPEN")
        XCTAssertEqual(harness.server.app.authority.views(of: [BreakerKey(registry: "default", name: "payments-api")]).first?.status.state, .forcedOpen)

        // The audit log names the token's owner for the action and the refusal.
        let audit = try await harness.request("GET", "/api/v1/audit?action=FORCE_OPEN&registry=default").json()
        let entries = try XCTUnwrap(audit["entries"] as? [[String: Any]])
        let allowed = entries.first { $0["allowed"] as? Bool == true }
        XCTAssertEqual(allowed?["actor"] as? String, "dashboard:alice")
        XCTAssertEqual(allowed?["reason"] as? String, "incident 42")
        XCTAssertEqual(allowed?["durationMs"] as? Int, 600_000)
        let denied = entries.first { $0["allowed"] as? Bool == false }
        XCTAssertEqual(denied?["actor"] as? String, "dashboard:wallboard")
        XCTAssertEqual(denied?["durationMs"] as? Int, 600_000, "a refused override's entry keeps the duration asked for")

        // Bad requests are refused with a reason, and audited as invalid.
        let noReason = try await harness.request("POST", path, headers: ["X-CSRF-Token": adminCSRF], json: #"{"action":"force_open"}"#)
        XCTAssertEqual(noReason.status, 400)
        XCTAssertTrue(noReason.body.contains("reason is required"), noReason.body)
        let answer9 = try await harness.request("POST", path, headers: ["X-CSRF-Token": adminCSRF], json: #"{"action":"explode"}"#)
        XCTAssertEqual(answer9.status, 400)
        let unknown = "/api/v1/breaker/action?registry=default&name=nope"
        let answer10 = try await harness.request("POST", unknown, headers: ["X-CSRF-Token": adminCSRF], json: #"{"action":"reset"}"#)
        XCTAssertEqual(answer10.status, 404)
    }

    func testTheAPIDescribesBreakersPoliciesClientsAndHealth() async throws {
        try await trip("inventory")
        try await harness.signIn(DashboardHarness.readerToken)
        let detail = try await harness.request("GET", "/api/v1/breaker?registry=default&name=inventory").json()
        XCTAssertEqual((detail["breaker"] as? [String: Any])?["state"] as? String, "OPEN")
        // A breaker's window: the trip cleared inventory's; cart's has 3 failures of orders-1.
        try await trip("cart", failures: 3)
        let cartAnswer = try await harness.request("GET", "/api/v1/breaker?registry=default&name=cart")
        let cart = try cartAnswer.json()
        XCTAssertEqual((cart["breaker"] as? [String: Any])?["state"] as? String, "CLOSED")
        XCTAssertEqual((cart["window"] as? [String: Any])?["failures"] as? Int, 3)
        XCTAssertEqual((cart["contributions"] as? [[String: Any]])?.first?["client"] as? String, "orders-1")
        XCTAssertEqual((cart["contributions"] as? [[String: Any]])?.first?["failures"] as? Int, 3)
        let transitions = try XCTUnwrap(detail["transitions"] as? [[String: Any]])
        XCTAssertEqual(transitions.first?["to"] as? String, "OPEN", "the history has the trip")
        XCTAssertEqual(transitions.first?["from"] as? String, "CLOSED")
        let answer11 = try await harness.request("GET", "/api/v1/breaker?registry=default&name=missing")
        XCTAssertEqual(answer11.status, 404)

        let clients = try await harness.request("GET", "/api/v1/clients").json()
        XCTAssertEqual((clients["clients"] as? [[String: Any]])?.first?["client"] as? String, "orders-1")
        XCTAssertEqual((clients["clients"] as? [[String: Any]])?.first?["mode"] as? String, "FLEET")

        let health = try await harness.request("GET", "/api/v1/health").json()
        XCTAssertEqual(health["status"] as? String, "critical", "an OPEN breaker makes the fleet critical")

        // Two versions of a policy, and the difference between them.
        let admin = try harness.server.client("admin", group: harness.group)
        var policy = try XCTUnwrap(Presets.named("api"))
        policy.name = "checkout"
        try await ServerHarness.put(policy, with: admin)
        policy.circuitBreaker?.minimumCalls = 7
        try await ServerHarness.put(policy, with: admin)
        await admin.close()
        let policies = try await harness.request("GET", "/api/v1/policies").json()
        let registry = (policies["registries"] as? [[String: Any]])?.first { $0["name"] as? String == "default" }
        XCTAssertTrue(((registry?["policies"] as? [[String: Any]]) ?? []).contains { $0["name"] as? String == "checkout" }, "\(policies)")
        let versionsAnswer = try await harness.request("GET", "/api/v1/policy/versions?registry=default&name=checkout")
        let versions = try XCTUnwrap(try versionsAnswer.json()["versions"] as? [[String: Any]])
        XCTAssertEqual(versions.map { $0["kind"] as? String }, ["UPDATED", "CREATED"])
        let to = try XCTUnwrap(versions[0]["registryVersion"] as? Int)
        let from = try XCTUnwrap(versions[1]["registryVersion"] as? Int)
        let diff = try await harness.request("GET", "/api/v1/policy/diff?registry=default&name=checkout&from=\(from)&to=\(to)").json()
        let lines = try XCTUnwrap(diff["lines"] as? [[String: String]])
        XCTAssertEqual(lines.filter { $0["op"] == "+" }.map { $0["text"]?.trimmingCharacters(in: .whitespaces) }, ["minimumCalls: 7"])
        XCTAssertEqual(lines.filter { $0["op"] == "-" }.count, 1)
    }

    func testTheEventStreamSendsASnapshotThenEachTransition() async throws {
        let csrf = try await harness.signIn(DashboardHarness.adminToken)
        try await trip("search")
        let harness = self.harness!
        let stream = Task { try await harness.request("GET", "/api/v1/events?registry=default", upTo: 3, allowTimeout: true) }
        try await Task.sleep(for: .milliseconds(700))
        let path = "/api/v1/breaker/action?registry=default&name=search"
        let answer12 = try await harness.request("POST", path, headers: ["X-CSRF-Token": csrf], json: #"{"action":"force_close","reason":"drill"}"#)
        XCTAssertEqual(answer12.status, 200)
        // curl gives up after 3 s (exit 28) with what it read so far.
        let text = try await stream.value.body
        XCTAssertTrue(text.contains("event: snapshot"), text)
        XCTAssertTrue(text.contains("\"name\":\"search\""), text)
        XCTAssertTrue(text.contains("event: transition"), text)
        XCTAssertTrue(text.contains("\"state\":\"FORCED_CLOSED\""), text)
    }

    func testEveryAssetIsEmbeddedAndNamesNothingElsewhere() async throws {
        let answer13 = try await harness.request("GET", "/assets/app.js", jar: nil)
        XCTAssertEqual(answer13.status, 200)
        for (name, bytes) in [("app.js", Assets.appJS), ("app.css", Assets.appCSS), ("index.html", Array(Assets.indexHTML.utf8)), ("login.html", Array(Assets.loginHTML.utf8))] {
            // The SVG namespace is a name, not an address the page loads.
            let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "")
            XCTAssertFalse(text.isEmpty, name)
            for external in ["http://", "https://", "//cdn", "@import url("] {
                XCTAssertFalse(text.contains(external), "\(name) names something outside fuseboxd (\(external))")
            }
        }
        let total = Assets.appJS.count + Assets.appCSS.count + Assets.indexHTML.utf8.count
        XCTAssertLessThan(total, 200_000, "the page weighs \(total) bytes")
    }

    func testRefusalsForForeignOriginsLargeBodiesTooManyStreamsAndReaders() async throws {
        // A sign-in form posted from another site is refused (login CSRF).
        let foreign = try await harness.request("POST", "/login", headers: ["Origin": "https://evil.example"], form: "token=\(DashboardHarness.adminToken)")
        XCTAssertEqual(foreign.status, 403)
        XCTAssertNil(foreign.header("set-cookie"))
        // Logging out without a session goes to the sign-in page.
        let loggedOut = try await harness.request("POST", "/logout", form: "csrf=x")
        XCTAssertEqual(loggedOut.header("location"), "/login")

        let csrf = try await harness.signIn(DashboardHarness.readerToken)
        // A body over 64 KiB is refused before anything reads it.
        let big = String(repeating: "x", count: 70_000)
        let tooLarge = try await harness.request("POST", "/api/v1/breaker/action?name=a", headers: ["X-CSRF-Token": csrf], json: big)
        XCTAssertEqual(tooLarge.status, 413)
        // A reader is refused for the role whatever the body holds.
        let garbled = try await harness.request("POST", "/api/v1/breaker/action?name=a", headers: ["X-CSRF-Token": csrf], json: "{not json")
        XCTAssertEqual(garbled.status, 403)

        // Four event streams per session; the fifth is refused, and a slot is free again once one ends.
        let harness = self.harness!
        let streams = (0..<4).map { _ in Task { try await harness.request("GET", "/api/v1/events", upTo: 3, allowTimeout: true) } }
        try await Task.sleep(for: .milliseconds(1_200))
        let fifth = try await harness.request("GET", "/api/v1/events", upTo: 3, allowTimeout: true)
        XCTAssertEqual(fifth.status, 503, fifth.body)
        XCTAssertTrue(fifth.body.contains("4 event streams"), fifth.body)
        for stream in streams {
            let answer = try await stream.value
            XCTAssertEqual(answer.status, 200)
        }
        try await Task.sleep(for: .milliseconds(300))
        let again = try await harness.request("GET", "/api/v1/events", upTo: 1, allowTimeout: true)
        XCTAssertEqual(again.status, 200)

        // Reading the audit log is audited, as AdminService audits ListAudit.
        _ = try await harness.request("GET", "/api/v1/audit")
        let audit = try await harness.request("GET", "/api/v1/audit?action=LIST_AUDIT").json()
        let reads = (audit["entries"] as? [[String: Any]] ?? []).filter { $0["actor"] as? String == "dashboard:wallboard" }
        XCTAssertGreaterThanOrEqual(reads.count, 1)
    }

    func testIPv6AddressesAreThrottledByTheirSlash64() {
        XCTAssertEqual(DashboardAuth.throttleKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64")
        XCTAssertEqual(DashboardAuth.throttleKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64")
        XCTAssertEqual(DashboardAuth.throttleKey("2001:db8::7"), "2001:db8:0:0::/64")
        XCTAssertEqual(DashboardAuth.throttleKey("::1"), "0:0:0:0::/64")
        XCTAssertEqual(DashboardAuth.throttleKey("192.0.2.7"), "192.0.2.7")
    }

    func testPolicyDiffMarksLines() {
        let lines = PolicyDiff.lines("a\nb\nc\n", "a\nc\nd\n")
        XCTAssertEqual(lines.map { "\($0.op)\($0.text)" }, [" a", "-b", " c", "+d"])
    }
}

final class DashboardConfigurationTests: XCTestCase {
    private func parse(_ yaml: String) throws -> ServerConfiguration {
        var settings = ServerConfiguration()
        try settings.apply(yaml: yaml, source: "test.yaml")
        return settings
    }

    func testTokensAreKeptAsHashesOnly() throws {
        let (token, digest) = DashboardServer.makeToken()
        XCTAssertTrue(token.hasPrefix("fbx_"))
        let settings = try parse("""
            dashboard:
              port: 0
              tokens:
                - name: alice
                  role: admin
                  sha256: \(digest)
            """)
        XCTAssertTrue(settings.dashboard.enabled)
        XCTAssertEqual(settings.dashboard.tokens.first?.sha256, DashboardAuth.sha256(Array(token.utf8)))
        XCTAssertFalse(try parse("listen:\n  port: 0\n").dashboard.enabled, "off unless configured")
    }

    func testBrokenTokenEntriesNameTheKeyAndLine() {
        let cases: [(String, String)] = [
            ("    - name: alice\n      role: admin\n      token: fbx_x\n", "dashboard.tokens[0].token"),
            ("    - name: alice\n      role: root\n      sha256: \(String(repeating: "a", count: 64))\n", "dashboard.tokens[0].role"),
            ("    - name: alice\n      role: admin\n      sha256: abc\n", "dashboard.tokens[0].sha256"),
            ("    - name: a b\n      role: admin\n      sha256: \(String(repeating: "a", count: 64))\n", "dashboard.tokens[0].name"),
        ]
        for (entry, key) in cases {
            XCTAssertThrowsError(try parse("dashboard:\n  tokens:\n" + entry)) { error in
                XCTAssertTrue("\(error)".contains(key), "\(error) should name \(key)")
                XCTAssertTrue("\(error)".contains("test.yaml"), "\(error)")
            }
        }
    }
}
