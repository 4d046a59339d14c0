// Printing for the CLI: aligned tables for people, JSON for scripts.
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/** Renders rows as an aligned text table (numbers right-aligned). */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))]
  const widths = headers.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)))
  const numeric = headers.map((_, c) => rows.length > 0 && rows.every((r) => typeof r[c] === 'number'))
  const line = (r: string[]) =>
    r.map((v, c) => (numeric[c] ? v.padStart(widths[c]!) : v.padEnd(widths[c]!))).join('  ').trimEnd()
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n')
}

/** A one-line progress counter on stderr, only when stderr is a terminal. */
export function progress(label: string, total: number): { tick(): void; done(): void } {
  const tty = process.stderr.isTTY === true && total > 1
  let n = 0
  return {
    tick() {
      n++
      if (tty) process.stderr.write(`\r${label} ${n}/${total}`)
    },
    done() {
      if (tty) process.stderr.write('\n')
    },
  }
}
