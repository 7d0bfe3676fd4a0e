import NIOCore
import XCTest

@testable import FuseboxRPC

/// Server keepalive enforcement (`ConnectionManagementHandler.PingStrikes`),
/// on a clock the test moves.
final class ConnectionManagementHandlerPingStrikesTests: XCTestCase {
    private typealias PingStrikes = ConnectionManagementHandler.PingStrikes

    private func at(_ seconds: Double) -> NIODeadline {
        .uptimeNanoseconds(UInt64(1_000_000_000 + seconds * 1_000_000_000))
    }

    func testPingsFasterThanTheMinimumWithoutCallsEndInTooManyPings() {
        var strikes = PingStrikes(minimumInterval: .seconds(300), maximumStrikes: 2)
        XCTAssertEqual(
            strikes.pingReceived(at: at(0), callsOpen: false), .allowed, "the first PING has nothing to follow")
        XCTAssertEqual(strikes.pingReceived(at: at(1), callsOpen: false), .strike)
        XCTAssertEqual(strikes.pingReceived(at: at(2), callsOpen: false), .strike)
        XCTAssertEqual(strikes.pingReceived(at: at(3), callsOpen: false), .tooManyPings)
    }

    func testPingsAtTheMinimumIntervalAreAllowed() {
        var strikes = PingStrikes(minimumInterval: .seconds(300), maximumStrikes: 0)
        for i in 0..<5 {
            XCTAssertEqual(strikes.pingReceived(at: at(Double(i) * 300), callsOpen: false), .allowed)
        }
        XCTAssertEqual(strikes.strikes, 0)
    }

    func testPingsWhileCallsAreOpenAreNoStrikes() {
        var strikes = PingStrikes(minimumInterval: .seconds(300), maximumStrikes: 0)
        for i in 0..<10 {
            XCTAssertEqual(strikes.pingReceived(at: at(Double(i) * 0.01), callsOpen: true), .allowed)
        }
        // But they count as the last PING: one right after, with no call, is a strike.
        XCTAssertEqual(strikes.pingReceived(at: at(0.2), callsOpen: false), .tooManyPings)
    }

    /// grpcio's BDP probes: a PING after every response, calls 20 ms apart.
    func testAPingAfterTheServerSentHeadersOrDataIsNeverAStrike() {
        var strikes = PingStrikes(minimumInterval: .seconds(300), maximumStrikes: 2)
        XCTAssertEqual(strikes.pingReceived(at: at(0), callsOpen: false), .allowed)
        for i in 1...200 {
            strikes.headersOrDataSent()  // the response to call i
            XCTAssertEqual(strikes.pingReceived(at: at(Double(i) * 0.02), callsOpen: false), .allowed, "call \(i)")
        }
        XCTAssertEqual(strikes.strikes, 0)
    }

    func testSendingDataClearsStrikesCollectedBefore() {
        var strikes = PingStrikes(minimumInterval: .seconds(1), maximumStrikes: 2)
        _ = strikes.pingReceived(at: at(0), callsOpen: false)
        XCTAssertEqual(strikes.pingReceived(at: at(0.1), callsOpen: false), .strike)
        XCTAssertEqual(strikes.pingReceived(at: at(0.2), callsOpen: false), .strike)
        strikes.headersOrDataSent()
        XCTAssertEqual(strikes.strikes, 0)
        XCTAssertEqual(strikes.pingReceived(at: at(0.3), callsOpen: false), .allowed)
        XCTAssertEqual(strikes.pingReceived(at: at(0.4), callsOpen: false), .strike)
        XCTAssertEqual(strikes.pingReceived(at: at(0.5), callsOpen: false), .strike)
        XCTAssertEqual(strikes.pingReceived(at: at(0.6), callsOpen: false), .tooManyPings)
    }
}
