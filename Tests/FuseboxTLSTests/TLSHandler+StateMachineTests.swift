import XCTest

@testable import FuseboxTLS

final class TLSHandlerStateMachineTests: XCTestCase {
    typealias Machine = TLSHandler.StateMachine

    func testHappyPathToActiveThenCloseNotify() {
        var m = Machine(role: .client, handshakeTimeoutMilliseconds: 10_000)
        XCTAssertEqual(m.channelActive(), .startHandshake(timeoutMilliseconds: 10_000))
        XCTAssertEqual(m.channelActive(), .none, "a second activation starts nothing")
        XCTAssertEqual(m.handshakeCompleted(negotiated: "h2", required: "h2"), .becomeActive)
        XCTAssertTrue(m.isActive)
        XCTAssertNil(m.handshakeTimedOut(), "a late timer does nothing")
        XCTAssertEqual(m.closeRequested(), .sendCloseNotifyThenClose)
        XCTAssertEqual(m.closeRequested(), .closeNow)
        XCTAssertNil(m.channelInactive(), "closing cleanly is not an error")
    }

    func testServerSniffsPlaintextAndGarbage() {
        var plain = Machine(role: .server, handshakeTimeoutMilliseconds: 1)
        _ = plain.channelActive()
        guard case .reject(let error) = plain.firstBytes(UInt8(ascii: "G")) else { return XCTFail("GET must be rejected") }
        XCTAssertEqual(error.code, .plaintextOnTLSPort)
        var preface = Machine(role: .server, handshakeTimeoutMilliseconds: 1)
        guard case .reject(let h2c) = preface.firstBytes(UInt8(ascii: "P")) else { return XCTFail("PRI must be rejected") }
        XCTAssertEqual(h2c.code, .plaintextOnTLSPort)
        var garbage = Machine(role: .server, handshakeTimeoutMilliseconds: 1)
        guard case .reject(let junk) = garbage.firstBytes(0x00) else { return XCTFail("0x00 must be rejected") }
        XCTAssertEqual(junk.code, .malformedInput)
        var tls = Machine(role: .server, handshakeTimeoutMilliseconds: 1)
        XCTAssertEqual(tls.firstBytes(0x16), .proceed)
        XCTAssertEqual(tls.firstBytes(0x00), .proceed, "only the first byte of the connection is sniffed")
        var client = Machine(role: .client, handshakeTimeoutMilliseconds: 1)
        XCTAssertEqual(client.firstBytes(0x00), .proceed, "clients leave it to OpenSSL")
    }

    func testALPNMismatchFailsTheClient() {
        var m = Machine(role: .client, handshakeTimeoutMilliseconds: 1)
        _ = m.channelActive()
        guard case .failAndClose(let error) = m.handshakeCompleted(negotiated: nil, required: "h2") else { return XCTFail() }
        XCTAssertEqual(error.code, .alpnMismatch)
        XCTAssertFalse(m.isActive)
    }

    func testTimeoutOnlyWhileHandshaking() {
        var m = Machine(role: .server, handshakeTimeoutMilliseconds: 250)
        _ = m.channelActive()
        XCTAssertEqual(m.handshakeTimedOut()?.code, .handshakeTimeout)
        XCTAssertEqual(m.closeRequested(), .alreadyClosed)
    }

    func testPeerVanishingIsReportedByState() {
        var active = Machine(role: .server, handshakeTimeoutMilliseconds: 1)
        _ = active.channelActive()
        _ = active.handshakeCompleted(negotiated: "h2", required: nil)
        XCTAssertEqual(active.channelInactive()?.code, .uncleanShutdown)
        var handshaking = Machine(role: .server, handshakeTimeoutMilliseconds: 1)
        _ = handshaking.channelActive()
        XCTAssertEqual(handshaking.channelInactive()?.code, .handshakeFailed)
        var peerClosed = Machine(role: .server, handshakeTimeoutMilliseconds: 1)
        _ = peerClosed.channelActive()
        _ = peerClosed.handshakeCompleted(negotiated: "h2", required: nil)
        XCTAssertEqual(peerClosed.closeNotifyReceived(), .replyAndClose)
        XCTAssertNil(peerClosed.channelInactive())
    }

    func testFailureClassification() {
        func classify(_ role: TLSConfiguration.Role, reason: Int32? = nil, verify: Int32 = 0) -> TLSError.Code {
            TLSFailure.classify(
                role: role, sslError: 1, reason: reason, verifyResult: verify, verifyText: "v", openSSLText: "o",
                expectedHost: "localhost"
            ).code
        }
        XCTAssertEqual(classify(.client, verify: 10), .certificateExpired)
        XCTAssertEqual(classify(.server, verify: 9), .certificateNotYetValid)
        XCTAssertEqual(classify(.client, verify: 62), .hostnameMismatch)
        XCTAssertEqual(classify(.client, verify: 20), .untrustedCertificate)
        XCTAssertEqual(classify(.server, reason: 199), .missingClientCertificate)  // SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE
        XCTAssertEqual(classify(.server, reason: 156), .plaintextOnTLSPort)  // SSL_R_HTTP_REQUEST
        XCTAssertEqual(classify(.server, reason: 267), .malformedInput)  // SSL_R_WRONG_VERSION_NUMBER
        XCTAssertEqual(classify(.client, reason: 1120), .alpnMismatch)  // alert no_application_protocol
        XCTAssertEqual(classify(.client, reason: 1048), .peerRejectedCertificate)  // alert unknown_ca
        XCTAssertEqual(classify(.client, reason: 1), .handshakeFailed)
    }
}
