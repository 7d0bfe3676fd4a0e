import NIOCore
import XCTest

@testable import FuseboxRPC

/// `ClientKeepaliveHandler.StateMachine` on a clock the test moves.
final class ClientKeepaliveHandlerStateMachineTests: XCTestCase {
    private typealias Machine = ClientKeepaliveHandler.StateMachine

    private func at(_ ms: Int64) -> NIODeadline { .uptimeNanoseconds(UInt64(1_000_000_000 + ms * 1_000_000)) }

    private func machine() -> Machine {
        Machine(interval: .milliseconds(1_000), timeout: .milliseconds(500))
    }

    func testNoCallsNoPings() {
        var m = machine()
        XCTAssertEqual(m.checkDue(at: at(60_000)), .none)
    }

    func testASilentConnectionWithACallIsPingedAndClosedWhenThePingGoesUnanswered() {
        var m = machine()
        XCTAssertEqual(
            m.callOpened(at: at(5_000)), .scheduleCheck(at: at(6_000)), "silence without calls does not count")
        XCTAssertEqual(m.checkDue(at: at(6_000)), .sendPing(answerBy: at(6_500)))
        XCTAssertEqual(m.checkDue(at: at(6_500)), .closeConnection)
        XCTAssertEqual(m.checkDue(at: at(7_000)), .none, "closed once")
    }

    func testAnythingReceivedAnswersThePing() {
        var m = machine()
        _ = m.callOpened(at: at(0))
        XCTAssertEqual(m.checkDue(at: at(1_000)), .sendPing(answerBy: at(1_500)))
        m.received(at: at(1_200))
        XCTAssertEqual(
            m.checkDue(at: at(1_500)), .scheduleCheck(at: at(2_200)),
            "the next PING is due an interval after the answer")
        XCTAssertEqual(m.checkDue(at: at(2_200)), .sendPing(answerBy: at(2_700)))
    }

    func testTrafficPostponesThePing() {
        var m = machine()
        _ = m.callOpened(at: at(0))
        m.received(at: at(900))
        XCTAssertEqual(m.checkDue(at: at(1_000)), .scheduleCheck(at: at(1_900)))
        m.received(at: at(1_800))
        XCTAssertEqual(m.checkDue(at: at(1_900)), .scheduleCheck(at: at(2_800)))
    }

    func testNoPingOnceTheCallsHaveClosed() {
        var m = machine()
        _ = m.callOpened(at: at(0))
        XCTAssertEqual(m.callOpened(at: at(100)), .none, "one check at a time")
        m.callClosed()
        m.callClosed()
        XCTAssertEqual(m.checkDue(at: at(1_000)), .none)
        // A new call schedules again, from its own start.
        XCTAssertEqual(m.callOpened(at: at(3_000)), .scheduleCheck(at: at(4_000)))
    }

    func testAPingSentBeforeTheLastCallClosedStillHasToBeAnswered() {
        var m = machine()
        _ = m.callOpened(at: at(0))
        XCTAssertEqual(m.checkDue(at: at(1_000)), .sendPing(answerBy: at(1_500)))
        m.callClosed()
        XCTAssertEqual(m.checkDue(at: at(1_500)), .closeConnection)
    }

    func testAnEarlyCheckWaitsForTheTimeout() {
        var m = machine()
        _ = m.callOpened(at: at(0))
        XCTAssertEqual(m.checkDue(at: at(1_000)), .sendPing(answerBy: at(1_500)))
        XCTAssertEqual(m.checkDue(at: at(1_200)), .scheduleCheck(at: at(1_500)))
    }
}
