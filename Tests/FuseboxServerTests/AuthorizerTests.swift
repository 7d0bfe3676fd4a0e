import FuseboxServer
import FuseboxTLS
import XCTest

/// Roles from certificate identities, as every call checks them.
final class AuthorizerTests: XCTestCase {
    private func peer(cn: String?, uris: [String] = [], fingerprint: String) -> TLSPeerIdentity {
        TLSPeerIdentity(commonName: cn, dnsNames: [], uris: uris, ipAddresses: [], fingerprintSHA256: fingerprint)
    }

    func testDevelopmentRulesMapCommonNamesAndSpiffeIDs() {
        let authorizer = Authorizer(rules: Authorizer.developmentRules)
        XCTAssertEqual(authorizer.role(of: peer(cn: "fusebox-reporter", fingerprint: "aa")), .reporter)
        XCTAssertEqual(authorizer.role(of: peer(cn: nil, uris: ["spiffe://fusebox.local/role/admin"], fingerprint: "bb")), .admin)
        XCTAssertNil(authorizer.role(of: peer(cn: "someone-else", fingerprint: "cc")))
        XCTAssertNil(authorizer.role(of: nil), "no anonymous role unless development mode grants one")
        // Asked again (now from the cache), the answers are the same.
        XCTAssertEqual(authorizer.role(of: peer(cn: "fusebox-reporter", fingerprint: "aa")), .reporter)
        XCTAssertNil(authorizer.role(of: peer(cn: "someone-else", fingerprint: "cc")))
    }

    /// `replica` is the highest role: it satisfies every `require`, and the
    /// development rules give it to gen-certs' replica certificate only.
    func testReplicaIsAboveAdminAndMappedFromTheDevelopmentIdentities() {
        XCTAssertEqual(Role.allCases, [.reader, .reporter, .admin, .replica])
        XCTAssertTrue(Role.allCases.allSatisfy { $0 <= .replica })
        XCTAssertGreaterThan(Role.replica, .admin)
        let authorizer = Authorizer(rules: Authorizer.developmentRules)
        XCTAssertEqual(authorizer.role(of: peer(cn: "fusebox-replica", fingerprint: "r1")), .replica)
        XCTAssertEqual(authorizer.role(of: peer(cn: nil, uris: ["spiffe://fusebox.local/role/replica"], fingerprint: "r2")), .replica)
        XCTAssertEqual(authorizer.role(of: peer(cn: "fusebox-admin", fingerprint: "r3")), .admin, "admins do not become replicas")
    }

    func testTheHighestGrantedRoleWins() {
        let authorizer = Authorizer(rules: [
            RoleRule(field: .commonName, pattern: "svc-*", role: .reader),
            RoleRule(field: .commonName, pattern: "svc-payments", role: .reporter),
        ])
        XCTAssertEqual(authorizer.role(of: peer(cn: "svc-payments", fingerprint: "11")), .reporter)
        XCTAssertEqual(authorizer.role(of: peer(cn: "svc-search", fingerprint: "22")), .reader)
    }

    func testChangedRulesAreNotAnsweredFromTheCache() {
        var authorizer = Authorizer(rules: [RoleRule(field: .commonName, pattern: "svc-*", role: .reader)])
        let caller = peer(cn: "svc-a", fingerprint: "33")
        XCTAssertEqual(authorizer.role(of: caller), .reader)
        authorizer.rules = [RoleRule(field: .commonName, pattern: "svc-*", role: .admin)]
        XCTAssertEqual(authorizer.role(of: caller), .admin)
        authorizer.rules = []
        XCTAssertNil(authorizer.role(of: caller))
    }
}
