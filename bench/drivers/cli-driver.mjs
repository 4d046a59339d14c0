// Runs inside the benchmark's network namespace (started with `ip netns exec NS node cli-driver.mjs`), so
// the `nft` processes it spawns program that namespace exactly as a VM manager on the host would program
// the host: `nft` spawned directly with an argv array, no shell, output collected, exit awaited.
// Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
//   { id, mode: 'argv', argvs: string[][], flags?: string[] }  -> one `nft` per argv, in order
//   { id, mode: 'stdin', text: string, flags?: string[] }      -> one `nft -f -` fed `text`
// Reply: { id, ms, ok, error?, outBytes } where ms is the wall time of all the spawns (ms, float).
import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'

const NFT = process.env.BENCH_NFT || 'nft'

/** Spawns nft; `stdin`: a descriptor for its stdin (else none). */
function runNft(args, stdin) {
  return new Promise((resolve) => {
    const child = spawn(NFT, args, { stdio: [stdin ?? 'ignore', 'pipe', 'pipe'] })
    let out = 0
    let err = ''
    child.stdout.on('data', (d) => (out += d.length))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', (e) => resolve({ code: -1, out, err: String(e) }))
    child.on('close', (code) => resolve({ code, out, err }))
  })
}

async function handle(req) {
  const flags = req.flags ?? []
  const t0 = process.hrtime.bigint()
  let outBytes = 0
  if (req.mode === 'argv') {
    for (const argv of req.argvs) {
      const r = await runNft([...flags, ...argv])
      outBytes += r.out
      if (r.code !== 0) return { id: req.id, ok: false, error: `nft ${argv.join(' ')}: ${r.err.trim()}` }
    }
  } else if (req.mode === 'stdin' && flags.includes('-j')) {
    // nft 1.0.6 buffers stdin only for text output; with -j it opens /dev/stdin, which fails on the
    // socketpair Node gives a child. Use a file (written before the clock starts would be fairer, but
    // the write is microseconds).
    const dir = mkdtempSync(path.join(tmpdir(), 'nftb-'))
    const file = path.join(dir, 'in.nft')
    writeFileSync(file, req.text)
    try {
      const r = await runNft([...flags, '-f', file])
      outBytes += r.out
      if (r.code !== 0) return { id: req.id, ok: false, error: `nft -f: ${r.err.trim().slice(0, 2000)}` }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  } else if (req.mode === 'stdin') {
    // stdin is a file, not the socket Node would give: nft 1.0.7-1.0.9 (Ubuntu 24.04) refuses `-f -` from a
    // socket ("Not a regular file: /dev/stdin"). What a VM manager's shell pipe would give is a pipe; a file
    // reads the same way (the write is microseconds).
    const dir = mkdtempSync(path.join(tmpdir(), 'nftb-'))
    const file = path.join(dir, 'in.nft')
    writeFileSync(file, req.text)
    const fd = openSync(file, 'r')
    rmSync(dir, { recursive: true, force: true })
    let r
    try {
      r = await runNft([...flags, '-f', '-'], fd)
    } finally {
      closeSync(fd)
    }
    outBytes += r.out
    if (r.code !== 0) return { id: req.id, ok: false, error: `nft -f -: ${r.err.trim().slice(0, 2000)}` }
  } else {
    return { id: req.id, ok: false, error: `unknown mode ${req.mode}` }
  }
  return { id: req.id, ok: true, ms: Number(process.hrtime.bigint() - t0) / 1e6, outBytes }
}

const rl = createInterface({ input: process.stdin })
let chain = Promise.resolve()
rl.on('line', (line) => {
  if (!line.trim()) return
  chain = chain.then(async () => {
    let reply
    try {
      reply = await handle(JSON.parse(line))
    } catch (e) {
      reply = { id: null, ok: false, error: String(e) }
    }
    process.stdout.write(JSON.stringify(reply) + '\n')
  })
})
rl.on('close', () => chain.then(() => process.exit(0)))
process.stdout.write(JSON.stringify({ ready: true }) + '\n')
