// Re-renders the Markdown report and the SVG chart from a results JSON (after changing the report code,
// or to view an older run): `npx tsx bench/render.ts [bench/results/latest.json]`.
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { buildMarkdown, buildSvg, evaluateTargets } from './lib/report.js'
import type { BenchResults } from './lib/types.js'

const file = path.resolve(process.argv[2] ?? path.join(__dirname, 'results', 'latest.json'))
const results = JSON.parse(readFileSync(file, 'utf8')) as BenchResults
results.targets = evaluateTargets(results)
const base = file.replace(/\.json$/, '')
writeFileSync(`${base}.json`, JSON.stringify(results, null, 2) + '\n')
writeFileSync(`${base}.md`, buildMarkdown(results, `${path.basename(base)}.svg`))
writeFileSync(`${base}.svg`, buildSvg(results))
process.stdout.write(`wrote ${base}.{md,svg}\n`)
