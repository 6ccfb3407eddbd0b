import { loadConfig } from '../config.js'
import { migrateToLatest, openDatabase } from '../db/connection.js'

/** `npm run migrate`: brings the database of `MINIGATE_DB` to the newest schema. */
async function migrate(): Promise<void> {
  const config = loadConfig(process.env)
  const db = openDatabase(config.dbFile)
  try {
    const { results = [] } = await migrateToLatest(db)
    for (const result of results) process.stdout.write(`${result.status === 'Success' ? 'applied' : result.status}: ${result.migrationName}\n`)
    process.stdout.write(results.length === 0 ? `${config.dbFile} is up to date\n` : `${config.dbFile} migrated\n`)
  } finally {
    await db.destroy()
  }
}

migrate().catch((error: Error) => {
  process.stderr.write(`minigate migrate: ${error.message}\n`)
  process.exit(1)
})
