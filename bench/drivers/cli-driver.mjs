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

/** Runs `run(path, fd)` with `text` in a temporary file (open for reading as `fd`); removes it after. */
async function withInputFile(text, run) {
  const dir = mkdtempSync(path.join(tmpdir(), 'nftb-'))
  const file = path.join(dir, 'in.nft')
  writeFileSync(file, text)
  const fd = openSync(file, 'r')
  try {
    return await run(file, fd)
  } finally {
    closeSync(fd)
    rmSync(dir, { recursive: true, force: true })
  }
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
  } else if (req.mode === 'stdin') {
    // The text from a file, never the socketpair Node gives a child: nft 1.0.6 with -j opens /dev/stdin, which
    // fails on a socket, and nft 1.0.7-1.0.9 (Ubuntu 24.04) refuses `-f -` from one ("Not a regular file:
    // /dev/stdin"). What a VM manager's shell pipe gives is a pipe; a file reads the same way. Without -j it
    // is the file as stdin (`-f -`, the path being replaced); with -j its path. The write is microseconds.
    const json = flags.includes('-j')
    const r = await withInputFile(req.text, (file, fd) => (json ? runNft([...flags, '-f', file]) : runNft([...flags, '-f', '-'], fd)))
    outBytes += r.out
    if (r.code !== 0) return { id: req.id, ok: false, error: `nft -f${json ? '' : ' -'}: ${r.err.trim().slice(0, 2000)}` }
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
