import Foundation
import FuseboxAlerts
import FuseboxTesting
import XCTest

/// Alert delivery through libcurl to real receivers on loopback
/// (Tests/Support/alert_receivers.py): an HTTPS webhook receiver that
/// verifies the signature, a Slack-shaped payload, an SMTP server that
/// requires STARTTLS and AUTH (aiosmtpd), and sinks that are down.
final class AlertDeliveryTests: XCTestCase {
    static let secret = "whsec-\(UUID().uuidString)"
    static let smtpPassword = "pw-\(UUID().uuidString)"

    private var receivers: AlertReceivers!
    private var https: Int { receivers.httpsPort }
    private var smtp: Int { receivers.smtpPort }
    private var refused: Int { receivers.refusedPort }

    override func setUp() async throws {
        receivers = try AlertReceivers(secret: Self.secret, smtpUser: "alerts", smtpPassword: Self.smtpPassword)
    }

    override func tearDown() {
        receivers?.stop()
    }

    private func events(_ kind: String) -> [[String: Any]] { receivers.events(kind) }

    private func webhook(_ name: String, path: String, timeoutMs: Int = 5_000, attempts: Int = 3, queue: Int = 1_000) throws -> AlertSink {
        AlertSink(
            name: name, kind: .webhook(url: "https://127.0.0.1:\(https)\(path)", secret: Self.secret), caFile: try TestCertificates.path("ca.pem"),
            timeoutMs: timeoutMs, maxAttempts: attempts, queueCapacity: queue)
    }

    private func notification(_ id: UInt64, status: AlertNotification.Status = .firing, sinks: [String]) -> AlertNotification {
        AlertNotification(
            id: id, status: status, rule: "breaker-opened", kind: "breakerOpened", severity: .critical, registry: "default", breaker: "payments",
            summary: "breaker default/payments is OPEN", startedAtMs: 1_700_000_000_000, atMs: 1_700_000_001_000, suppressedTriggers: 0,
            sinks: sinks)
    }

    private func waitFor(_ what: String, seconds: Double = 15, _ done: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while !done(), Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        XCTAssertTrue(done(), "timed out waiting for \(what)")
    }

    private func deliveries(_ dispatcher: AlertDispatcher, sink: String) -> [AlertDelivery] {
        dispatcher.history.records().reversed().compactMap { $0.deliveries[sink] }
    }

    func testWebhookSlackAndEmailEachGetTheirForm() async throws {
        let ca = try TestCertificates.path("ca.pem")
        let dispatcher = AlertDispatcher(sinks: [
            try webhook("hook", path: "/hook"),
            AlertSink(name: "slack", kind: .slack(url: "https://127.0.0.1:\(https)/slack"), caFile: ca),
            AlertSink(
                name: "mail",
                kind: .email(.init(
                    url: "smtp://127.0.0.1:\(smtp)", from: "fusebox@example.com", to: ["oncall@example.com", "lead@example.com"], username: "alerts",
                    password: Self.smtpPassword, requireTLS: true)),
                caFile: ca),
        ], server: "fuseboxd-test")
        let sent = Date()
        dispatcher.send(notification(7, sinks: ["hook", "slack", "mail"]))
        waitFor("the webhook, Slack and e-mail") { events("http").count == 2 && events("smtp").count == 1 }
        XCTAssertLessThan(Date().timeIntervalSince(sent), 10)

        let hook = try XCTUnwrap(events("http").first { $0["path"] as? String == "/hook" })
        XCTAssertEqual(hook["signature_valid"] as? Bool, true, "the receiver verified X-Fusebox-Signature: \(hook)")
        let headers = try XCTUnwrap(hook["headers"] as? [String: String])
        XCTAssertEqual(headers["content-type"], "application/json")
        XCTAssertLessThan(hook["timestamp_skew"] as? Double ?? 99, 30)
        let body = try XCTUnwrap(hook["body"] as? [String: Any])
        XCTAssertEqual(body["status"] as? String, "firing")
        XCTAssertEqual(body["severity"] as? String, "critical")
        XCTAssertEqual(body["rule"] as? String, "breaker-opened")
        XCTAssertEqual(body["id"] as? String, "fuseboxd-test-7")
        XCTAssertEqual(body["subject"] as? [String: String], ["registry": "default", "breaker": "payments"])
        XCTAssertEqual(body["startedAt"] as? String, "2023-11-14T22:13:20.000Z")

        // Slack's documented incoming-webhook shape: "text" (the notification
        // fallback) and Block Kit blocks, each section/context with mrkdwn text.
        let slack = try XCTUnwrap(events("http").first { $0["path"] as? String == "/slack" }?["body"] as? [String: Any])
        XCTAssertEqual(Set(slack.keys), ["text", "blocks"])
        let text = try XCTUnwrap(slack["text"] as? String)
        XCTAssertTrue(text.contains("[CRITICAL] breaker default/payments is OPEN"), text)
        let blocks = try XCTUnwrap(slack["blocks"] as? [[String: Any]])
        XCTAssertEqual(blocks.map { $0["type"] as? String }, ["section", "context"])
        let section = try XCTUnwrap(blocks[0]["text"] as? [String: String])
        XCTAssertEqual(section["type"], "mrkdwn")
        XCTAssertLessThanOrEqual(section["text"]?.count ?? 0, 3_000)
        let elements = try XCTUnwrap(blocks[1]["elements"] as? [[String: String]])
        XCTAssertEqual(elements.first?["type"], "mrkdwn")
        XCTAssertTrue(elements.first?["text"]?.contains("rule `breaker-opened`") ?? false)

        let mail = try XCTUnwrap(events("smtp").first)
        XCTAssertEqual(mail["subject"] as? String, "[Fusebox CRITICAL] breaker default/payments is OPEN")
        XCTAssertEqual(mail["tls"] as? Bool, true, "the submission upgraded with STARTTLS")
        XCTAssertEqual(mail["user"] as? String, "alerts", "the submission logged in with AUTH")
        XCTAssertEqual(mail["mail_from"] as? String, "fusebox@example.com")
        XCTAssertEqual(mail["rcpt_tos"] as? [String], ["oncall@example.com", "lead@example.com"])
        XCTAssertTrue((mail["body"] as? String)?.contains("Severity:  critical") ?? false)

        waitFor("every delivery recorded") { ["hook", "slack", "mail"].allSatisfy { deliveries(dispatcher, sink: $0) == [.delivered(attempts: 1)] } }
        // The history never holds a sink's URL or password.
        XCTAssertFalse("\(dispatcher.history.records())".contains(Self.smtpPassword))
        XCTAssertFalse("\(dispatcher.history.records())".contains("127.0.0.1"))
        await dispatcher.shutdown()
    }

    func testASinkThatIsDownHoldsUpNoOtherAndRetriesAreBounded() async throws {
        let dispatcher = AlertDispatcher(sinks: [
            AlertSink(
                name: "refused", kind: .webhook(url: "https://127.0.0.1:\(refused)/x", secret: nil), caFile: try TestCertificates.path("ca.pem"),
                maxAttempts: 3),
            try webhook("fail500", path: "/fail500", attempts: 3),
            try webhook("slow", path: "/slow", timeoutMs: 500, attempts: 2),
            try webhook("good", path: "/good"),
        ], server: "t")
        let sent = Date()
        for id in 1...4 { dispatcher.send(notification(UInt64(id), sinks: ["refused", "fail500", "slow", "good"])) }
        waitFor("the good sink's 4 alerts", seconds: 10) { events("http").filter { $0["path"] as? String == "/good" }.count == 4 }
        let goodDone = Date().timeIntervalSince(sent)
        print("AlertDeliveryTests: the working sink had all 4 alerts after \(String(format: "%.2f", goodDone)) s, while 3 others were failing")
        XCTAssertLessThan(goodDone, 3, "the working sink waited for the failing ones")

        waitFor("every failing delivery given up", seconds: 40) {
            ["refused", "fail500", "slow"].allSatisfy { sink in
                let d = deliveries(dispatcher, sink: sink)
                return d.count == 4 && d.allSatisfy { if case .failed = $0 { return true } else { return false } }
            }
        }
        for d in deliveries(dispatcher, sink: "refused") {
            guard case .failed(let attempts, let error) = d else { continue }
            XCTAssertEqual(attempts, 3)
            XCTAssertTrue(error.lowercased().contains("connect"), error)
        }
        for d in deliveries(dispatcher, sink: "fail500") {
            guard case .failed(let attempts, let error) = d else { continue }
            XCTAssertEqual(attempts, 3)
            XCTAssertEqual(error, "HTTP 500")
        }
        for d in deliveries(dispatcher, sink: "slow") {
            guard case .failed(let attempts, let error) = d else { continue }
            XCTAssertEqual(attempts, 2)
            XCTAssertTrue(error.lowercased().contains("timed out") || error.lowercased().contains("timeout"), error)
        }
        // Exactly the attempts allowed reached the receiver: 4 alerts × 3.
        XCTAssertEqual(events("http").filter { $0["path"] as? String == "/fail500" }.count, 12)
        XCTAssertEqual(deliveries(dispatcher, sink: "good"), Array(repeating: .delivered(attempts: 1), count: 4))
        await dispatcher.shutdown(grace: .seconds(1))
    }

    func testRetryAfterIsHonoured() async throws {
        let dispatcher = AlertDispatcher(sinks: [try webhook("busy", path: "/retry-after", attempts: 2)], server: "t")
        dispatcher.send(notification(1, sinks: ["busy"]))
        waitFor("two attempts") { events("http").count == 2 }
        let times = events("http").compactMap { $0["at"] as? Double }
        XCTAssertEqual(times.count, 2)
        if times.count == 2 { XCTAssertGreaterThanOrEqual(times[1] - times[0], 0.95, "the second attempt came before Retry-After: 1") }
        waitFor("the delivery given up") { deliveries(dispatcher, sink: "busy") == [.failed(attempts: 2, error: "HTTP 503")] }
        await dispatcher.shutdown(grace: .seconds(1))
    }

    func testAFullQueueDropsWhatDoesNotFitAndKeepsTheRest() async throws {
        let dispatcher = AlertDispatcher(sinks: [try webhook("slow", path: "/slow", timeoutMs: 1_000, attempts: 1, queue: 2)], server: "t")
        for id in 1...6 { dispatcher.send(notification(UInt64(id), sinks: ["slow"])) }
        let states = deliveries(dispatcher, sink: "slow")
        XCTAssertEqual(states.filter { $0 == .dropped }.count, 4, "capacity 2: one being tried and one waiting; \(states)")
        waitFor("the two kept ones tried", seconds: 10) {
            deliveries(dispatcher, sink: "slow").filter { if case .failed = $0 { return true } else { return false } }.count == 2
        }
        XCTAssertEqual(events("http").count, 2, "only the kept alerts reached the receiver")
        await dispatcher.shutdown(grace: .seconds(1))
    }
}
