import CSQLite
import FuseboxAuthority

/// A thin, typed wrapper over one sqlite3 connection. The store uses it from
/// its one database thread only (hence the unchecked Sendable).
final class SQLiteDatabase: @unchecked Sendable {
    /// A value bound to or read from a statement.
    enum Value: Equatable {
        case integer(Int64)
        case text(String)
        case blob([UInt8])
        case null
    }

    private let handle: OpaquePointer
    let path: String
    /// Prepared statements by their SQL, reused (reset after each run):
    /// preparing cost more than running the store's small statements. Bounded:
    /// the few queries built from filters (audit listing) cannot grow it.
    private var statements: [String: OpaquePointer] = [:]
    private static let maximumStatements = 64

    init(path: String) throws(StoreError) {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX
        guard sqlite3_open_v2(path, &db, flags, nil) == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close(db) }
            throw StoreError(.unavailable, "cannot open the database \(path): \(message)")
        }
        handle = db
        self.path = path
        sqlite3_busy_timeout(db, 5_000)
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    /// The prepared statement for `sql`, from the cache or prepared now.
    private func prepared(_ sql: String) throws(StoreError) -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw StoreError(code(for: sqlite3_errcode(handle)), "\(lastError) (preparing \(sql.prefix(60))…)")
        }
        if statements.count >= Self.maximumStatements {
            for old in statements.values { sqlite3_finalize(old) }
            statements = [:]
        }
        statements[sql] = statement
        return statement
    }

    /// Runs statements without results.
    func execute(_ sql: String) throws(StoreError) {
        var error: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &error) == SQLITE_OK else {
            let message = error.map { String(cString: $0) } ?? lastError
            sqlite3_free(error)
            let rc = sqlite3_errcode(handle)
            throw StoreError(code(for: rc), explained(rc, "\(message) (in \(sql.prefix(60))…)"))
        }
    }

    /// Runs one statement with parameters; returns its rows.
    @discardableResult
    func query(_ sql: String, _ parameters: [Value] = []) throws(StoreError) -> [[Value]] {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (i, value) in parameters.enumerated() {
            let index = Int32(i + 1)
            switch value {
            case .integer(let v): sqlite3_bind_int64(statement, index, v)
            case .text(let v): sqlite3_bind_text(statement, index, v, -1, sqliteTransient)
            case .blob(let v):
                _ = v.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), sqliteTransient) }
            case .null: sqlite3_bind_null(statement, index)
            }
        }
        var rows: [[Value]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return rows }
            guard rc == SQLITE_ROW else {
                throw StoreError(code(for: rc), explained(rc, "\(lastError) (running \(sql.prefix(60))…)"))
            }
            rows.append((0..<sqlite3_column_count(statement)).map { column(statement, $0) })
        }
    }

    /// Runs `body` in a transaction; commits (and, in WAL mode with
    /// synchronous=FULL, fsyncs) before returning.
    func transaction<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Runs `body` inside an open transaction as a savepoint: if it throws,
    /// what it did is undone and the rest of the transaction stays.
    func savepoint<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try execute("SAVEPOINT one_write")
        do {
            let result = try body()
            try execute("RELEASE one_write")
            return result
        } catch {
            try? execute("ROLLBACK TO one_write")
            try? execute("RELEASE one_write")
            throw error
        }
    }

    var lastInsertID: Int64 { sqlite3_last_insert_rowid(handle) }

    private var lastError: String { String(cString: sqlite3_errmsg(handle)) }

    private func column(_ statement: OpaquePointer, _ index: Int32) -> Value {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, index))
        case SQLITE_TEXT: return .text(sqlite3_column_text(statement, index).map { String(cString: $0) } ?? "")
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let bytes = sqlite3_column_blob(statement, index) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default: return .null
        }
    }

    /// SQLite's message, with what to do when the disk is full: the
    /// operator's cue, since fuseboxd recovers by itself once there is room.
    private func explained(_ rc: Int32, _ message: String) -> String {
        guard rc & 0xff == SQLITE_FULL else { return message }
        return "the disk holding the database \(path) is full (\(message)); free space there: "
            + "fuseboxd takes writes again by itself, without a restart"
    }

    private func code(for rc: Int32) -> StoreError.Code {
        switch rc & 0xff {
        case SQLITE_CORRUPT, SQLITE_NOTADB: return .corrupt
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_FULL, SQLITE_READONLY: return .unavailable
        default: return .internal
        }
    }
}

/// SQLITE_TRANSIENT: SQLite copies bound values.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

extension SQLiteDatabase.Value {
    var int: Int64? { if case .integer(let v) = self { return v } else { return nil } }
    var string: String? { if case .text(let v) = self { return v } else { return nil } }
    var bytes: [UInt8]? {
        switch self {
        case .blob(let v): return v
        case .null: return nil
        default: return nil
        }
    }
}
