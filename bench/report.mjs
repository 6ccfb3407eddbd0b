// What `npm run bench` prints and writes: the table (markdown, so it pastes into the README), the
// issue's targets checked against the figures, and the chart (hand-written SVG).

/** The issue's targets (issue 12), judged by the benchmark, never by timed tests. */
export const TARGETS = {
  efficiency: { refresh: 0.75, login: 0.6 },
  p99Ms: 25,
  scaleP99Ratio: 1.25,
  peakRssMB: 150,
}

const round = (value, digits = 0) => (value === null || value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits))

const users = (n) => `${n.toLocaleString('en-US')} users`

/**
 * The groups of rows of a configuration, each with its label: the scenarios, then at scale the base
 * database measured again beside the big one (each endpoint on one, then right after on the other).
 */
export function seriesOf(config) {
  const series = [{ label: `${config.label}, ${users(config.users)}`, rows: config.scenarios }]
  if (config.scale) {
    series.push({ label: `${config.label}, ${users(config.users)}, beside ${config.scale.users.toLocaleString('en-US')}`, rows: config.scale.base })
    series.push({ label: `${config.label}, ${users(config.scale.users)}`, rows: config.scale.scenarios })
  }
  return series
}

/** The rows of the table, each with its configuration's label. */
export function rowsOf(results) {
  return results.configurations.flatMap((config) => seriesOf(config).flatMap((series) => series.rows.map((row) => ({ config: series.label, ...row }))))
}

/** The table as markdown. */
export function formatTable(results) {
  const header = ['configuration', 'endpoint', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'CPU ms/req', 'peak RSS MB', 'efficiency']
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`]
  for (const row of rowsOf(results)) {
    lines.push(
      `| ${[
        row.config,
        row.endpoint,
        round(row.rps),
        round(row.p50),
        round(row.p99),
        String(row.errors),
        round(row.cpuMsPerRequest, 2),
        round(row.peakRssMB),
        row.efficiency === null ? '-' : round(row.efficiency, 2),
      ].join(' | ')} |`,
    )
  }
  return lines.join('\n')
}

/**
 * Each target of the issue, met or not, with the figure that decides it: `kind` names the target,
 * `config` the configuration it was measured on.
 */
export function checkTargets(results) {
  const checks = []
  for (const config of results.configurations) {
    const add = (kind, target, value, met, extra = {}) => checks.push({ config: config.label, kind, target: `${config.label}: ${target}`, value, met, ...extra })
    for (const row of config.scenarios) {
      const floor = TARGETS.efficiency[row.scenario]
      if (floor !== undefined) add(`${row.scenario} efficiency >= ${floor}`, `${row.scenario} efficiency >= ${floor}`, round(row.efficiency, 2), row.efficiency >= floor)
    }
    for (const row of config.scenarios) {
      add(`p99 < ${TARGETS.p99Ms} ms at ${results.settings.connections} connections, every endpoint`, `${row.endpoint} p99 < ${TARGETS.p99Ms} ms`, `${round(row.p99)} ms`, row.p99 < TARGETS.p99Ms, { endpoint: row.endpoint, p99: row.p99 })
    }
    if (config.scale) {
      for (const row of config.scale.scenarios) {
        const base = config.scale.base.find((other) => other.scenario === row.scenario)
        if (!base) continue
        const ratio = row.p99 / base.p99
        add(
          `${row.scenario} p99 at ${config.scale.users.toLocaleString('en-US')} users <= ${TARGETS.scaleP99Ratio} x at ${config.users.toLocaleString('en-US')}`,
          `${row.scenario} p99 at ${config.scale.users.toLocaleString('en-US')} users <= ${TARGETS.scaleP99Ratio} x at ${config.users.toLocaleString('en-US')}`,
          `${round(row.p99)} / ${round(base.p99)} ms = ${round(ratio, 2)} x`,
          ratio <= TARGETS.scaleP99Ratio,
        )
      }
    }
    const peak = Math.max(...seriesOf(config).flatMap((series) => series.rows.map((row) => row.peakRssMB)))
    add(`server peak RSS < ${TARGETS.peakRssMB} MB`, `server peak RSS < ${TARGETS.peakRssMB} MB`, `${round(peak)} MB`, peak < TARGETS.peakRssMB)
  }
  return checks
}

/** The targets as a markdown table: one row per target, one column per configuration. */
export function targetsTable(results) {
  const checks = checkTargets(results)
  const configs = results.configurations.map((config) => config.label)
  const kinds = [...new Set(checks.map((check) => check.kind))]
  const lines = [`| target | ${configs.join(' | ')} |`, `|---|${configs.map(() => '---').join('|')}|`]
  for (const kind of kinds) {
    const cells = configs.map((config) => {
      const mine = checks.filter((check) => check.kind === kind && check.config === config)
      if (mine.length === 0) return '-'
      if (mine.length === 1) return `${mine[0].value}${mine[0].met ? '' : ' (not met)'}`
      // Several endpoints: the ones over the target, else the worst one.
      const missed = mine.filter((check) => !check.met)
      if (missed.length > 0) return `not met: ${missed.map((check) => `${check.endpoint.replace(/^(GET|POST) /, '')} ${check.value}`).join(', ')}`
      const worst = mine.reduce((a, b) => (b.p99 > a.p99 ? b : a))
      return `met (worst ${worst.value})`
    })
    lines.push(`| ${kind} | ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

/** How a run was made, in one paragraph: the machine, its load, the settings, the ceiling. */
export function describeRun(results) {
  const m = results.machine
  const s = results.settings
  const near = rowsOf(results)
    .map((row) => row.ceilingInFlight)
    .filter((value) => typeof value === 'number')
  return (
    `One run on ${m.date.slice(0, 10)} on ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, Linux ${m.kernel}; a machine shared with ` +
    `other work (load average ${m.loadAverageAtStart[0]} at the start, ${m.loadAverageAtEnd?.[0] ?? '?'} at the end). ${s.connections} connections, ` +
    `${s.duration} s per endpoint after ${s.warmup} s of warm-up, scope \`${s.scope}\` (${s.signaturesPerLoginAndRefresh} signatures per login and refresh). ` +
    `Signing ceiling at the start: ${Math.round(results.ceiling.sequential)} RS256 signatures/s one at a time, ${Math.round(results.ceiling.inFlight)}/s with ` +
    `${results.ceiling.inFlightWidth} in flight${near.length > 0 ? `; around each login and refresh row (the mean of a measurement just before and one just after, against which that row's efficiency is computed), from ${Math.round(Math.min(...near))} to ${Math.round(Math.max(...near))}/s in flight` : ''}.`
  )
}

/** Database sizes, one line per configuration. */
export function describeSizes(results) {
  const size = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`
  return results.configurations
    .map((config) => {
      const base = `${config.label}: ${size(config.databaseSize.bytes)} at ${users(config.users)}`
      if (!config.scale) return base
      return `${base}, ${size(config.scale.databaseSize.bytes)} at ${users(config.scale.users)} (seeded in ${config.scale.seedSeconds.toFixed(0)} s)`
    })
    .join('; ')
}

// --- chart ------------------------------------------------------------------------------------------

const PALETTES = [
  ['#2f6fb0', '#8fb3d9', '#173f6b'],
  ['#3a9a4b', '#9fd3a8', '#1d5428'],
  ['#e07b27', '#f3b98a', '#8a4510'],
  ['#7d5ba6', '#c3b1dc', '#47306a'],
]

/** 20182 -> 20k: five-digit labels would overlap over narrow bars. */
const compact = (v) => (v >= 10_000 ? `${Math.round(v / 1000)}k` : String(Math.round(v)))

const escape = (text) => String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** Round tick steps (1, 2, 5 x 10^n) giving about `count` ticks up to `max`. */
function ticks(max, count = 5) {
  if (!(max > 0)) return [0, 1]
  const raw = max / count
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= raw)
  const result = []
  for (let value = 0; value <= max + step * 0.999; value += step) result.push(Number(value.toPrecision(12)))
  return result
}

/** Log-scale ticks (1, 2, 5 x 10^n) from the decade below `min` to the one above `max`. */
function logTicks(min, max) {
  const result = []
  for (let decade = 10 ** Math.floor(Math.log10(Math.max(1, min))); decade <= max * 10; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const value = m * decade
      result.push(value)
      if (value >= max) return result
    }
  }
  return result
}

function panel({ x, y, width, height, title, endpoints, series, value, format, line, log = false }) {
  const parts = []
  const values = series.flatMap((s) => endpoints.map((endpoint) => value(s.rows[endpoint]))).filter((v) => v !== undefined && v !== null)
  const max = Math.max(line?.value ?? 0, ...values)
  const scale = log ? logTicks(Math.min(...values.filter((v) => v > 0)), max) : ticks(max)
  const bottom = log ? scale[0] : 0
  const top = scale[scale.length - 1]
  const plotLeft = x + 56
  const plotWidth = width - 66
  const plotTop = y + 28
  const plotHeight = height - 70
  const fraction = (v) => (log ? (Math.log10(Math.max(v, bottom)) - Math.log10(bottom)) / (Math.log10(top) - Math.log10(bottom)) : v / top)
  const yOf = (v) => plotTop + plotHeight - fraction(v) * plotHeight
  parts.push(`<text x="${x}" y="${y + 14}" class="title">${escape(title)}</text>`)
  for (const tick of scale) {
    parts.push(`<line x1="${plotLeft}" x2="${plotLeft + plotWidth}" y1="${yOf(tick)}" y2="${yOf(tick)}" class="grid"/>`)
    parts.push(`<text x="${plotLeft - 6}" y="${yOf(tick) + 4}" class="tick" text-anchor="end">${format(tick)}</text>`)
  }
  const groupWidth = plotWidth / endpoints.length
  const barWidth = Math.min(28, (groupWidth - 16) / series.length)
  endpoints.forEach((endpoint, e) => {
    // Only the series measured at this endpoint, centred in its group.
    const present = series.filter((s) => value(s.rows[endpoint]) !== undefined && value(s.rows[endpoint]) !== null)
    const groupLeft = plotLeft + e * groupWidth + (groupWidth - barWidth * present.length) / 2
    present.forEach((s, i) => {
      const v = value(s.rows[endpoint])
      const bx = groupLeft + i * barWidth
      parts.push(`<rect x="${bx.toFixed(1)}" y="${yOf(v).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(plotTop + plotHeight - yOf(v)).toFixed(1)}" fill="${s.color}"><title>${escape(`${s.label}, ${endpoint}: ${format(v)}`)}</title></rect>`)
      parts.push(`<text x="${(bx + (barWidth - 2) / 2).toFixed(1)}" y="${(yOf(v) - 3).toFixed(1)}" class="value" text-anchor="middle">${format(v)}</text>`)
    })
    parts.push(`<text x="${(plotLeft + (e + 0.5) * groupWidth).toFixed(1)}" y="${plotTop + plotHeight + 16}" class="label" text-anchor="middle">${escape(endpoint)}</text>`)
  })
  if (line && line.value <= top) {
    parts.push(`<line x1="${plotLeft}" x2="${plotLeft + plotWidth}" y1="${yOf(line.value)}" y2="${yOf(line.value)}" class="target"/>`)
    parts.push(`<text x="${plotLeft + 4}" y="${yOf(line.value) - 4}" class="target-label">${escape(line.label)}</text>`)
  }
  parts.push(`<line x1="${plotLeft}" x2="${plotLeft + plotWidth}" y1="${plotTop + plotHeight}" y2="${plotTop + plotHeight}" class="axis"/>`)
  return parts.join('\n')
}

/** The chart: req/s and p99 per endpoint, one bar per configuration (and per scale, when measured). */
export function renderChart(results) {
  // One hue per configuration, one shade per group of its rows; one legend line per configuration.
  const series = results.configurations.flatMap((config, c) =>
    seriesOf(config).map((s, i) => ({ label: s.label, line: c, column: i, color: PALETTES[c % PALETTES.length][i], rows: Object.fromEntries(s.rows.map((row) => [row.endpoint, row])) })),
  )
  const endpoints = [...new Set(results.configurations.flatMap((config) => config.scenarios.map((row) => row.endpoint)))]
  const width = 980
  const panelHeight = 300
  const legendTop = 58
  const legendRows = results.configurations.length
  const firstPanel = legendTop + legendRows * 18 + 10
  const height = firstPanel + 2 * panelHeight + 10
  const m = results.machine
  const subtitle = `${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date.slice(0, 10)}; ${results.settings.connections} connections, ${results.settings.duration} s per endpoint; signing ceiling ${Math.round(results.ceiling.inFlight)} RS256/s`
  const legend = series
    .map((s, i) => {
      const lx = 20 + s.column * 320
      const ly = legendTop + s.line * 18
      return `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${s.color}"/><text x="${lx + 18}" y="${ly}" class="label">${escape(s.label)}</text>`
    })
    .join('\n')
  const body = [
    panel({ x: 20, y: firstPanel, width: width - 40, height: panelHeight, title: 'Requests per second, log scale (higher is better)', endpoints, series, value: (row) => row?.rps, format: compact, log: true }),
    panel({
      x: 20,
      y: firstPanel + panelHeight,
      width: width - 40,
      height: panelHeight,
      title: 'p99 latency, ms (lower is better)',
      endpoints,
      series,
      value: (row) => row?.p99,
      format: (v) => String(Math.round(v)),
      line: { value: TARGETS.p99Ms, label: `target ${TARGETS.p99Ms} ms` },
    }),
  ]
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">
<style>
  .heading { font-size: 17px; font-weight: bold; fill: #222; }
  .sub { font-size: 12px; fill: #555; }
  .title { font-size: 14px; font-weight: bold; fill: #222; }
  .label { font-size: 12px; fill: #333; }
  .tick { font-size: 11px; fill: #666; }
  .value { font-size: 9px; fill: #333; }
  .grid { stroke: #e3e3e3; stroke-width: 1; }
  .axis { stroke: #888; stroke-width: 1; }
  .target { stroke: #b8413d; stroke-width: 1; stroke-dasharray: 5 4; }
  .target-label { font-size: 11px; fill: #b8413d; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="20" y="24" class="heading">minigate: npm run bench</text>
<text x="20" y="42" class="sub">${escape(subtitle)}</text>
${legend}
${body.join('\n')}
</svg>
`
}
