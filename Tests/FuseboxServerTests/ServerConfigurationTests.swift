import FuseboxServer
import XCTest

/// The replicated mode's settings (docs/REPLICATION.md): from YAML, the
/// environment and flags, each overriding the one before, and errors that
/// name the key, where it came from and what was wrong.
final class ServerConfigurationTests: XCTestCase {
    func testDefaultsAreStandaloneSQLite() throws {
        let c = ServerConfiguration()
        XCTAssertEqual(c.storeKind, .sqlite)
        XCTAssertEqual(c.etcdEndpoints, [])
        XCTAssertEqual(c.etcdPrefix, "/fusebox")
        XCTAssertNil(c.etcdCAPath)
        XCTAssertEqual(c.etcdLeaseSeconds, 5)
        XCTAssertEqual(c.etcdAuditRetention, 100_000)
        XCTAssertNil(c.replicaId)
        XCTAssertNil(c.advertise)
        XCTAssertEqual(c.peerCertificatePath, ".fusebox/certs/replica.pem")
        XCTAssertEqual(c.peerKeyPath, ".fusebox/certs/replica.key")
        XCTAssertNoThrow(try c.validate())
    }

    func testYAMLWithEndpointsAsAScalar() throws {
        var c = ServerConfiguration()
        try c.apply(
            yaml: """
                store:
                  kind: etcd
                  etcd:
                    endpoints: https://10.0.0.1:2379, http://10.0.0.2:2379,etcd-3:2379
                    prefix: /fusebox-prod
                    ca: /etc/etcd/ca.pem
                    certificate: /etc/etcd/client.pem
                    key: /etc/etcd/client.key
                    leaseSeconds: 10
                    auditRetention: 5000
                cluster:
                  replicaId: fb-1.eu_west
                  advertise: fb-1.internal:7443
                  peerCertificate: /certs/replica.pem
                  peerKey: /certs/replica.key
                """, source: "fusebox.yaml")
        XCTAssertEqual(c.storeKind, .etcd)
        XCTAssertEqual(c.etcdEndpoints, ["https://10.0.0.1:2379", "http://10.0.0.2:2379", "etcd-3:2379"])
        XCTAssertEqual(c.etcdPrefix, "/fusebox-prod")
        XCTAssertEqual(c.etcdCAPath, "/etc/etcd/ca.pem")
        XCTAssertEqual(c.etcdCertificatePath, "/etc/etcd/client.pem")
        XCTAssertEqual(c.etcdKeyPath, "/etc/etcd/client.key")
        XCTAssertEqual(c.etcdLeaseSeconds, 10)
        XCTAssertEqual(c.etcdAuditRetention, 5_000)
        XCTAssertEqual(c.replicaId, "fb-1.eu_west")
        XCTAssertEqual(c.effectiveReplicaId, "fb-1.eu_west")
        XCTAssertEqual(c.advertise, "fb-1.internal:7443")
        XCTAssertEqual(c.peerCertificatePath, "/certs/replica.pem")
        XCTAssertEqual(c.peerKeyPath, "/certs/replica.key")
        XCTAssertNoThrow(try c.validate())
    }

    func testYAMLWithEndpointsAsAList() throws {
        var c = ServerConfiguration()
        try c.apply(
            yaml: """
                store:
                  kind: etcd
                  etcd:
                    endpoints:
                      - https://10.0.0.1:2379
                      - "[::1]:2379"
                """, source: "fusebox.yaml")
        XCTAssertEqual(c.etcdEndpoints, ["https://10.0.0.1:2379", "[::1]:2379"])
        var flow = ServerConfiguration()
        try flow.apply(yaml: "store: {etcd: {endpoints: [a:1, b:2]}}", source: "f.yaml")
        XCTAssertEqual(flow.etcdEndpoints, ["a:1", "b:2"])
    }

    func testEnvironmentVariables() throws {
        var c = ServerConfiguration()
        try c.apply(environment: [
            "FUSEBOX_STORE_KIND": "etcd", "FUSEBOX_ETCD_ENDPOINTS": "https://e1:2379,https://e2:2379",
            "FUSEBOX_ETCD_PREFIX": "/fb",
            "FUSEBOX_ETCD_CA": "ca.pem", "FUSEBOX_ETCD_CERT": "c.pem", "FUSEBOX_ETCD_KEY": "c.key",
            "FUSEBOX_REPLICA_ID": "r2",
            "FUSEBOX_ADVERTISE": "10.1.2.3:7443", "FUSEBOX_PEER_CERT": "p.pem", "FUSEBOX_PEER_KEY": "p.key",
        ])
        XCTAssertEqual(c.storeKind, .etcd)
        XCTAssertEqual(c.etcdEndpoints, ["https://e1:2379", "https://e2:2379"])
        XCTAssertEqual(c.etcdPrefix, "/fb")
        XCTAssertEqual([c.etcdCAPath, c.etcdCertificatePath, c.etcdKeyPath], ["ca.pem", "c.pem", "c.key"])
        XCTAssertEqual(c.replicaId, "r2")
        XCTAssertEqual(c.advertise, "10.1.2.3:7443")
        XCTAssertEqual([c.peerCertificatePath, c.peerKeyPath], ["p.pem", "p.key"])
        // Every variable sets a key the file knows too.
        for key in ServerConfiguration.environmentVariables.values {
            XCTAssertNotNil(ServerConfiguration.keys[key], key)
        }
    }

    /// File, then environment, then flags: each overrides the one before.
    func testFlagsOverrideTheEnvironmentWhichOverridesTheFile() throws {
        var c = ServerConfiguration()
        try c.apply(
            yaml: """
                store:
                  kind: sqlite
                  etcd: {endpoints: file:2379, prefix: /from-file}
                cluster: {replicaId: from-file, advertise: file:7443}
                """, source: "fusebox.yaml")
        try c.apply(environment: [
            "FUSEBOX_ETCD_ENDPOINTS": "env:2379", "FUSEBOX_REPLICA_ID": "from-env", "FUSEBOX_STORE_KIND": "etcd",
        ])
        try c.apply(flags: [
            ("store.kind", nil), ("store.etcd.endpoints", "flag-1:2379,flag-2:2379"), ("store.etcd.prefix", nil),
            ("cluster.replicaId", "from-flag"), ("cluster.advertise", nil),
        ])
        XCTAssertEqual(c.storeKind, .etcd, "from the environment; the flag was not given")
        XCTAssertEqual(c.etcdEndpoints, ["flag-1:2379", "flag-2:2379"])
        XCTAssertEqual(c.etcdPrefix, "/from-file")
        XCTAssertEqual(c.replicaId, "from-flag")
        XCTAssertEqual(c.advertise, "file:7443")
    }

    func testEffectiveReplicaIdFallsBackToTheSanitizedHostName() {
        XCTAssertEqual(ServerConfiguration.replicaId(fromHostName: "node-1.example.com"), "node-1.example.com")
        XCTAssertEqual(ServerConfiguration.replicaId(fromHostName: "my host/ü"), "my-host--")
        XCTAssertEqual(
            ServerConfiguration.replicaId(fromHostName: String(repeating: "a", count: 80)),
            String(repeating: "a", count: 63))
        XCTAssertEqual(ServerConfiguration.replicaId(fromHostName: ""), "fuseboxd")
        let id = ServerConfiguration().effectiveReplicaId
        XCTAssertTrue((1...63).contains(id.count), id)
        var explicit = ServerConfiguration()
        XCTAssertNoThrow(
            try explicit.apply(environment: ["FUSEBOX_REPLICA_ID": id]), "the fallback is itself a valid replica id")
    }

    private func assertError(
        _ yaml: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        var c = ServerConfiguration()
        XCTAssertThrowsError(try c.apply(yaml: yaml, source: "fusebox.yaml"), file: file, line: line) { error in
            XCTAssertEqual("\(error)", expected, file: file, line: line)
        }
    }

    func testErrorsNameTheKeyTheLineAndTheBadValue() {
        assertError("store:\n  kind: postgres\n", #"fusebox.yaml:2: store.kind ("postgres") must be sqlite or etcd"#)
        assertError(
            "store:\n  etcd:\n    endpoints: https://a:2379,ftp://b:2379\n",
            #"fusebox.yaml:3: store.etcd.endpoints item "ftp://b:2379" must be https://host:port, http://host:port or host:port with a port from 1 to 65535, e.g. https://10.0.0.1:2379"#
        )
        assertError(
            "store:\n  etcd:\n    endpoints:\n      - a:2379\n      - b\n",
            #"fusebox.yaml:5: store.etcd.endpoints item "b" must be https://host:port, http://host:port or host:port with a port from 1 to 65535, e.g. https://10.0.0.1:2379"#
        )
        assertError(
            "store:\n  etcd:\n    endpoints: a:2379,,b:2379\n",
            "fusebox.yaml:3: store.etcd.endpoints has an empty item (number 2); list endpoints like https://10.0.0.1:2379,https://10.0.0.2:2379"
        )
        assertError(
            "store:\n  etcd:\n    endpoints: [a:1, {b: 2}]\n",
            "fusebox.yaml:3: store.etcd.endpoints must be a list of endpoints, each a single value")
        assertError(
            "store:\n  etcd:\n    prefix: /fusebox/\n",
            #"fusebox.yaml:3: store.etcd.prefix ("/fusebox/") must start with "/" and not end with one, e.g. /fusebox"#)
        assertError(
            "store:\n  etcd:\n    prefix: fusebox\n",
            #"fusebox.yaml:3: store.etcd.prefix ("fusebox") must start with "/" and not end with one, e.g. /fusebox"#)
        assertError(
            "store:\n  etcd:\n    leaseSeconds: 1\n",
            #"fusebox.yaml:3: store.etcd.leaseSeconds ("1") must be a whole number from 2 to 60"#)
        assertError(
            "store:\n  etcd:\n    auditRetention: 999\n",
            #"fusebox.yaml:3: store.etcd.auditRetention ("999") must be a whole number from 1000 to 10000000"#)
        assertError(
            "cluster:\n  replicaId: fb 1\n",
            #"fusebox.yaml:2: cluster.replicaId ("fb 1") must be 1 to 63 characters of letters, digits, ".", "_" and "-""#
        )
        assertError(
            "cluster:\n  replicaId: \(String(repeating: "r", count: 64))\n",
            #"fusebox.yaml:2: cluster.replicaId (""# + String(repeating: "r", count: 64)
                + #"") must be 1 to 63 characters of letters, digits, ".", "_" and "-""#)
        assertError(
            "cluster:\n  advertise: fb-1\n",
            #"fusebox.yaml:2: cluster.advertise ("fb-1") must be host:port, e.g. fusebox-1.internal:7443"#)
        assertError(
            "cluster:\n  leader: fb-1\n",
            "fusebox.yaml:2: cluster.leader is not a setting; known keys: "
                + ServerConfiguration.keys.keys.sorted().joined(separator: ", "))
    }

    func testEnvironmentAndFlagErrorsNameTheirSource() {
        var c = ServerConfiguration()
        XCTAssertThrowsError(try c.apply(environment: ["FUSEBOX_ETCD_ENDPOINTS": "https://a:2379,b:99999"])) { error in
            XCTAssertEqual(
                "\(error)",
                #"environment variable FUSEBOX_ETCD_ENDPOINTS: store.etcd.endpoints item "b:99999" must be https://host:port, http://host:port or host:port with a port from 1 to 65535, e.g. https://10.0.0.1:2379"#
            )
        }
        XCTAssertThrowsError(try c.apply(flags: [("store.kind", "Etcd")])) { error in
            XCTAssertEqual("\(error)", #"flag: store.kind ("Etcd") must be sqlite or etcd"#)
        }
    }

    func testTheEtcdStoreNeedsEndpointsAndCertificateWithKey() throws {
        // No endpoints at all is the default, fine for SQLite.
        var empty = ServerConfiguration()
        try empty.apply(yaml: "store:\n  etcd:\n    endpoints: []\n", source: "fusebox.yaml")
        try empty.apply(environment: ["FUSEBOX_ETCD_ENDPOINTS": " "])
        XCTAssertEqual(empty, ServerConfiguration())
        XCTAssertNoThrow(try empty.validate())
        var c = ServerConfiguration()
        try c.apply(environment: ["FUSEBOX_STORE_KIND": "etcd"])
        XCTAssertThrowsError(try c.validate()) { error in
            XCTAssertEqual((error as? ConfigurationError)?.key, "store.etcd.endpoints")
            XCTAssertTrue("\(error)".contains("store.etcd.endpoints is required when store.kind is etcd"), "\(error)")
        }
        try c.apply(environment: ["FUSEBOX_ETCD_ENDPOINTS": "https://e:2379", "FUSEBOX_ETCD_CERT": "c.pem"])
        XCTAssertThrowsError(try c.validate()) { error in
            XCTAssertEqual("\(error)", "configuration: store.etcd.key is required when store.etcd.certificate is set")
        }
        try c.apply(environment: ["FUSEBOX_ETCD_KEY": "c.key"])
        XCTAssertNoThrow(try c.validate())
    }
}
