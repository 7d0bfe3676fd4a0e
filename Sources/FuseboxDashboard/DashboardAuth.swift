import COpenSSL
import Foundation
import FuseboxServer
import NIOConcurrencyHelpers

/// Who may sign in, the sessions that are signed in, and the slow-down of
/// failed sign-ins (docs/DASHBOARD.md).
final class DashboardAuth: Sendable {
    /// A signed-in browser.
    struct Session: Sendable {
        var id: String
        var name: String
        var role: Role
        var csrf: String
        var expiresAtMs: Int64
    }

    /// What a sign-in attempt got.
    enum LoginResult: Sendable {
        case signedIn(Session)
        /// The token matched no entry (after `waited`).
        case refused
        /// The address must wait this many seconds before trying again.
        case tooSoon(seconds: Int)
    }

    private struct Failures {
        var count: Int
        var lastAtMs: Int64
        var busyUntilMs: Int64
    }

    private struct State {
        var sessions: [String: Session] = [:]
        var failures: [String: Failures] = [:]
    }

    static let maxSessions = 10_000
    static let failureMemoryMs: Int64 = 15 * 60_000
    static let maxDelaySeconds = 30

    private let tokens: [DashboardSettings.Token]
    private let sessionMs: Int64
    private let state = NIOLockedValueBox(State())
    private let now: @Sendable () -> Int64

    init(settings: DashboardSettings, now: @escaping @Sendable () -> Int64) {
        tokens = settings.tokens
        sessionMs = Int64(settings.sessionMinutes) * 60_000
        self.now = now
    }

    /// Checks `token` for a sign-in from `address`. After a failure from an
    /// address, each further attempt within 15 minutes waits 1, 2, 4 … (at most
    /// 30) seconds before it is answered; attempts while one waits are refused.
    func login(token: String, from address: String) async -> LoginResult {
        let t = now()
        let delay: Int? = state.withLockedValue { s in
            guard var f = s.failures[address], t - f.lastAtMs < Self.failureMemoryMs else {
                s.failures[address] = nil
                return 0
            }
            if t < f.busyUntilMs { return nil }
            let seconds = min(Self.maxDelaySeconds, 1 << min(f.count - 1, 5))
            f.busyUntilMs = t + Int64(seconds) * 1_000
            s.failures[address] = f
            return seconds
        }
        guard let delay else {
            let wait = state.withLockedValue { s in s.failures[address].map { max(1, Int(($0.busyUntilMs - t + 999) / 1_000)) } ?? 1 }
            return .tooSoon(seconds: wait)
        }
        if delay > 0 { try? await Task.sleep(for: .seconds(delay)) }
        let digest = Self.sha256(Array(token.utf8))
        // Every entry is compared, in constant time, whatever matches.
        var match: DashboardSettings.Token?
        for entry in tokens where Self.constantTimeEqual(entry.sha256, digest) && match == nil { match = entry }
        let at = now()
        guard let match, !token.isEmpty else {
            state.withLockedValue { s in
                if s.failures.count >= 10_000 { s.failures.removeAll() }
                var f = s.failures[address] ?? Failures(count: 0, lastAtMs: at, busyUntilMs: 0)
                f.count += 1
                f.lastAtMs = at
                s.failures[address] = f
            }
            return .refused
        }
        let session = Session(id: Self.randomHex(32), name: match.name, role: match.role, csrf: Self.randomHex(32), expiresAtMs: at + sessionMs)
        state.withLockedValue { s in
            s.failures[address] = nil
            if s.sessions.count >= Self.maxSessions {
                s.sessions = s.sessions.filter { $0.value.expiresAtMs > at }
                if s.sessions.count >= Self.maxSessions, let oldest = s.sessions.min(by: { $0.value.expiresAtMs < $1.value.expiresAtMs }) {
                    s.sessions[oldest.key] = nil
                }
            }
            s.sessions[session.id] = session
        }
        return .signedIn(session)
    }

    /// The live session `id` names, if any.
    func session(_ id: String?) -> Session? {
        guard let id else { return nil }
        let t = now()
        return state.withLockedValue { s in
            guard let session = s.sessions[id] else { return nil }
            guard session.expiresAtMs > t else {
                s.sessions[id] = nil
                return nil
            }
            return session
        }
    }

    /// Ends session `id`.
    func logout(_ id: String) {
        _ = state.withLockedValue { $0.sessions.removeValue(forKey: id) }
    }

    /// Sessions held now.
    var sessionCount: Int { state.withLockedValue { $0.sessions.count } }

    var sessionSeconds: Int64 { sessionMs / 1_000 }

    // MARK: Cryptography

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBytes { out in
                EVP_Digest(input.baseAddress, input.count, out.baseAddress?.assumingMemoryBound(to: UInt8.self), &length, EVP_sha256(), nil)
            }
        }
        return digest
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool { constantTimeEqual(Array(a.utf8), Array(b.utf8)) }

    /// `count` random bytes from OpenSSL's generator, as lowercase hex.
    static func randomHex(_ count: Int) -> String {
        var bytes = [UInt8](repeating: 0, count: count)
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) } == 1
        if !ok {
            // OpenSSL's generator failed (it practically cannot): the system's.
            for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        }
        return hex(bytes)
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
