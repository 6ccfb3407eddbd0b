import type { ColumnDefinitionBuilder, CreateTableBuilder, Kysely } from 'kysely'
import { PostgresAdapter } from '../kysely.js'

/**
 * The column types whose names differ between SQLite and PostgreSQL, for migrations (which must not
 * import application code, so this reads the dialect from Kysely itself). On SQLite they compile to
 * exactly what the first migrations always created.
 */
export function columnTypes(db: Kysely<any>) {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter
  return {
    /** Epoch seconds and counters: SQLite's integer is 64-bit, PostgreSQL's is 32 (it ends in 2038). */
    integer: postgres ? ('bigint' as const) : ('integer' as const),
    /** Binary data. */
    bytes: postgres ? ('bytea' as const) : ('blob' as const),
    /** Adds an auto-incrementing integer primary key named `name`. */
    autoId<T extends string>(table: CreateTableBuilder<T, any>, name: string): CreateTableBuilder<T, any> {
      return postgres
        ? table.addColumn(name, 'bigserial', (column: ColumnDefinitionBuilder) => column.primaryKey())
        : table.addColumn(name, 'integer', (column: ColumnDefinitionBuilder) => column.primaryKey().autoIncrement())
    },
  }
}
