// Issue 12, the binding: no call may end the process, hang, write to stderr or reach a namespace
// other than the one asked for; failed text batches are reported exactly as the nft CLI reports
// them and leave no more trace in the kernel than `nft -f` does.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Nft, NftError } from '../../ts/index.js'
import { distEntry, ensureDist, repoRoot } from '../support/child.js'
import { thrown } from '../support/errors.js'
import { createNetns, sh, spawnWithInput, type Netns } from '../support/netns.js'

let ns: Netns
beforeAll(() => ensureDist())
beforeEach(() => {
  ns = createNetns()
})
afterEach(() => ns.delete())

interface Child {
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** The JSON the script printed last on stdout. */
  result: unknown
}

/** Runs `node -e script` (under `prefix`; stdin a socket, as Node gives it, or /dev/null) and returns
 *  everything, including its stderr. */
function child(script: string, prefix: string[] = [], timeout = 30_000, stdin: 'pipe' | 'ignore' = 'pipe'): Child {
  const argv = [...prefix, process.execPath, '-e', script]
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: repoRoot, timeout, stdio: [stdin, 'pipe', 'pipe'] })
  const last = r.stdout.trim().split('\n').pop() ?? ''
  let result: unknown
  try {
    result = JSON.parse(last)
  } catch {
    result = undefined
  }
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, result }
}

/** A child script's prologue: the built package and a `code(fn)` that returns 'ok' or the error code. */
const prologue = `
  const { Nft } = require(${JSON.stringify(distEntry)})
  const code = (fn) => { try { fn(); return 'ok' } catch (e) { return e.code ?? String(e) } }
  const acode = (p) => p.then(() => 'ok', (e) => e.code ?? String(e))
`

describe('descriptor exhaustion never ends the process (item 3)', () => {
  it('with the process at its descriptor limit, failed and dry-run batches and new instances work', () => {
    const c = child(
      `${prologue}
      const fs = require('node:fs')
      const nft = new Nft({ netns: ${JSON.stringify(ns.name)} })
      nft.runSync('add table bridge t\\nadd chain bridge t c')
      const held = []
      for (;;) { try { held.push(fs.openSync('/dev/null', 'r')) } catch (e) { if (e.code !== 'EMFILE') throw e; break } }
      const r = {
        failed: code(() => nft.runSync('add rule bridge t nosuch accept')),
        check: code(() => nft.checkSync('add rule bridge t c accept')),
        again: code(() => nft.runSync('add rule bridge t c accept')),
        fresh: code(() => { const n = new Nft({ netns: ${JSON.stringify(ns.name)} }); n.runSync('list tables'); n.close() }),
        stillFull: code(() => fs.openSync('/dev/null', 'r')),
      }
      held.forEach((fd) => fs.closeSync(fd))
      nft.close()
      console.log(JSON.stringify(r))`,
      ['prlimit', '--nofile=256:256'],
    )
    expect(c.stderr).toBe('')
    expect([c.status, c.signal]).toEqual([0, null])
    expect(c.result).toEqual({ failed: 'ENOENT', check: 'ok', again: 'ok', fresh: 'ok', stillFull: 'EMFILE' })
    expect(ns.ruleset()).toContain('accept')
  })

  it('when even its own thread cannot open a netlink socket: a typed EMFILE, other instances unharmed, and recovery', () => {
    // RLIMIT_NOFILE = 3 leaves a worker thread only its stdin/stdout/stderr. A helper started
    // beforehand raises the limit again on request (this process can no longer spawn anything).
    // The process's stdin is /dev/null: text is then read from the thread's fd 0 without opening
    // anything; with a socket there it is opened by name (context.rs), which this limit refuses.
    const c = child(
      `${prologue}
      const { spawn, execFileSync } = require('node:child_process')
      const ns = ${JSON.stringify(ns.name)}
      const renewing = new Nft({ netns: ns })
      const other = new Nft({ netns: ns })
      renewing.runSync('add table bridge t\\nadd chain bridge t c')
      const helper = spawn('sh', ['-c', 'read x; prlimit --pid ' + process.pid + ' --nofile=1024:1024'], { stdio: ['pipe', 'ignore', 'inherit'] })
      execFileSync('prlimit', ['--pid', String(process.pid), '--nofile=3:4096'])
      const r = {}
      try { new Nft({ netns: ns }); r.fresh = 'ok' } catch (e) { r.fresh = e.code + ':' + e.errno }
      r.check = code(() => renewing.checkSync('add rule bridge t c accept'))
      r.afterCheck = code(() => renewing.runSync('list tables'))
      r.failedBatch = code(() => other.runSync('add rule bridge t nosuch accept'))
      r.other = code(() => other.runSync('add rule bridge t c counter accept'))
      helper.on('exit', async () => {
        r.recovered = code(() => renewing.runSync('add rule bridge t c drop'))
        r.freshAfter = code(() => new Nft({ netns: ns }).close())
        renewing.close(); other.close()
        console.log(JSON.stringify(r))
      })
      helper.stdin.end('go\\n')`,
      [],
      30_000,
      'ignore',
    )
    expect(c.stderr).toBe('')
    expect([c.status, c.signal]).toEqual([0, null])
    expect(c.result).toEqual({
      fresh: 'EMFILE:24',
      // The check itself runs; the context it then renews cannot be opened, so the next call says so.
      check: 'ok',
      afterCheck: 'EMFILE',
      failedBatch: 'ENOENT',
      other: 'ok',
      recovered: 'ok',
      freshAfter: 'ok',
    })
    const listed = ns.ruleset()
    expect(listed).toContain('counter')
    expect(listed).toContain('drop')
  })
})

describe('the libnftables thread has a descriptor table of its own', () => {
  it('keeps no copy of the process\'s descriptors: a pipe the process closes reaches its reader at once', async () => {
    const cat = spawn('cat', [], { stdio: ['pipe', 'ignore', 'ignore'] })
    const exited = new Promise<number | null>((r) => cat.once('exit', r))
    const nft = new Nft({ netns: ns.name })
    try {
      nft.runSync('list tables')
      cat.stdin.end()
      const timeout = new Promise<string>((r) => setTimeout(() => r('still open'), 5000))
      expect(await Promise.race([exited, timeout])).toBe(0)
    } finally {
      cat.kill()
      nft.close()
    }
  })

  it('instances add no descriptors to the process, however many are opened and closed', async () => {
    const count = () => readdirSync('/proc/self/fd').length
    const before = count()
    const open = Array.from({ length: 20 }, () => new Nft({ netns: ns.name }))
    await Promise.all(open.map((n) => n.run('list tables')))
    expect(count()).toBe(before)
    open.forEach((n) => n.close())
    expect(count()).toBe(before)
  })
})

/**
 * Runs `argv` with unshare(2) refused (EPERM) by a seccomp filter, as some container policies do: the
 * binding then keeps libnftables on the process's descriptor table (its fallback).
 */
const NO_UNSHARE = `
import ctypes, os, struct, sys
nr = {'x86_64': 272, 'aarch64': 97}[os.uname().machine]
prog = b''.join(struct.pack('HBBI', *i) for i in [(0x20, 0, 0, 0), (0x15, 0, 1, nr), (0x06, 0, 0, 0x50001), (0x06, 0, 0, 0x7fff0000)])
class Fprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.byref(Fprog(4, prog)), 0, 0) == 0
os.execvp(sys.argv[1], sys.argv[1:])
`

describe('where unshare(2) is refused (the shared-table fallback)', () => {
  it('no exit at the descriptor limit (typed EMFILE instead), and text errors still read as nft prints them', () => {
    const texts = ['add rule bridge t c jump', 'add chain bridge t c1\nadd rule bridge t nosuch accept', 'add table bridge t\nadd chain bridge t fwd']
    const c = child(
      `${prologue}
      const fs = require('node:fs')
      const { spawnSync } = require('node:child_process')
      const unshare = spawnSync('unshare', ['--uts', 'true']).status
      const nft = new Nft({ netns: ${JSON.stringify(ns.name)} })
      nft.runSync('add table bridge t\\nadd chain bridge t c')
      const details = ${JSON.stringify(texts)}.map((t) => { try { nft.runSync(t) } catch (e) { return e.detail } })
      const held = []
      for (;;) { try { held.push(fs.openSync('/dev/null', 'r')) } catch (e) { if (e.code !== 'EMFILE') throw e; break } }
      const r = {
        unshare,
        failed: code(() => nft.runSync('add rule bridge t nosuch accept')),
        check: code(() => nft.checkSync('add rule bridge t c accept')),
        afterCheck: code(() => nft.runSync('list tables')),
        fresh: code(() => new Nft({ netns: ${JSON.stringify(ns.name)} })),
      }
      held.forEach((fd) => fs.closeSync(fd))
      r.recovered = code(() => nft.runSync('add rule bridge t c accept'))
      nft.close()
      console.log(JSON.stringify({ r, details }))`,
      ['python3', '-c', NO_UNSHARE],
    )
    expect(c.stderr).toBe('')
    expect([c.status, c.signal]).toEqual([0, null])
    const { r, details } = c.result as { r: Record<string, unknown>; details: string[] }
    // unshare(1) failing shows the filter is in force; the instance works without a private table.
    // Renewing after the check frees the old context's socket first, which leaves room for the new one.
    expect(r).toEqual({ unshare: 1, failed: 'ENOENT', check: 'ok', afterCheck: 'ok', fresh: 'EMFILE', recovered: 'ok' })
    const nft = new Nft({ netns: ns.name })
    try {
      texts.forEach((text, i) => {
        const cli = spawnWithInput('ip', ['netns', 'exec', ns.name, 'nft', '-f', '-'], `${text}\n`)
        expect(details[i], text).toBe(cli.stderr.trimEnd())
      })
    } finally {
      nft.close()
    }
  })

  it('without CAP_NET_ADMIN: EPERM for text and JSON, and nothing on stderr', () => {
    const c = child(
      `${prologue}
      const nft = new Nft()
      const r = [
        code(() => nft.runSync('add table bridge t')),
        code(() => nft.runJsonSync({ nftables: [{ add: { table: { family: 'bridge', name: 't' } } }] })),
        code(() => nft.listRulesetSync()),
      ]
      nft.close()
      console.log(JSON.stringify(r))`,
      ['ip', 'netns', 'exec', ns.name, 'unshare', '--user', 'python3', '-c', NO_UNSHARE],
    )
    expect(c.stderr).toBe('')
    expect(c.result).toEqual(['EPERM', 'EPERM', 'EPERM'])
  })
})

describe('namespace files (items 4 and 5)', () => {
  let dir: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nftn-ns-'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('a FIFO, a device, a regular file, a directory, another kind of namespace: NETNS at once, never a hang', () => {
    const fifo = join(dir, 'fifo')
    sh('mkfifo', [fifo])
    writeFileSync(join(dir, 'file'), 'x')
    // In a child: a blocking open would hang the constructor (and the child, until the timeout).
    const c = child(
      `${prologue}
      const r = {}
      for (const p of ${JSON.stringify([fifo, '/dev/null', join(dir, 'file'), dir, '/proc/self/ns/uts'])}) {
        const t0 = Date.now()
        r[p] = code(() => new Nft({ netns: p }))
        if (Date.now() - t0 > 1000) r[p] += ' (slow)'
      }
      console.log(JSON.stringify(r))`,
      [],
      10_000,
    )
    expect(c.signal).toBeNull()
    expect(c.stderr).toBe('')
    expect(Object.values(c.result as object)).toEqual(['NETNS', 'NETNS', 'NETNS', 'NETNS', 'NETNS'])
    expect(thrown(() => new Nft({ netns: fifo })).message).toContain('not a namespace file')
    expect(thrown(() => new Nft({ netns: '/proc/self/ns/uts' })).message).toContain('not a network namespace')
  })

  it('relative paths are refused, whatever the working directory; bare names must be valid names', () => {
    const viaCwd = relative(process.cwd(), '/proc/self/ns/net')
    expect(viaCwd.startsWith('..')).toBe(true)
    for (const netns of [viaCwd, `./${ns.name}`, `netns/${ns.name}`, `../netns/${ns.name}`]) {
      const e = thrown(() => new Nft({ netns }))
      expect(e.code).toBe('NETNS')
      expect(e.message).toContain('relative')
    }
    for (const netns of ['.', '..', 'x'.repeat(256)]) expect(thrown(() => new Nft({ netns })).code).toBe('NETNS')
    // The same namespace by name and by absolute path.
    for (const netns of [ns.name, `/var/run/netns/${ns.name}`, `/run/netns/${ns.name}`]) {
      const n = new Nft({ netns })
      n.runSync('add table bridge t')
      n.close()
    }
    expect(ns.ruleset()).toContain('table bridge t')
  })

  it('the process\'s own namespace is reachable on purpose by an absolute path (read-only here)', async () => {
    // The README's advice for the host's namespace is /proc/1/ns/net; this container's pid 1 is out
    // of reach, so the same kind of path to this process's namespace stands in.
    const own = new Nft({ netns: '/proc/self/ns/net' })
    try {
      expect(Array.isArray((await own.listRuleset()).nftables)).toBe(true)
    } finally {
      own.close()
    }
  })
})

describe('no call hangs', () => {
  it('`monitor`, which libnftables answers by listening forever, is refused and the instance keeps working', async () => {
    const nft = new Nft({ netns: ns.name })
    try {
      for (const text of ['monitor', 'monitor new tables', 'add table bridge x; monitor', 'add table bridge x\n  monitor trace']) {
        const e = await nft.run(text).then(
          () => undefined,
          (err: unknown) => err as NftError,
        )
        expect([e?.code, e?.errno]).toEqual(['EINVAL', undefined])
        expect(e?.message).toContain('monitor')
      }
      expect(ns.ruleset()).toBe('')
      await nft.run('add table bridge t\nadd chain bridge t c\nadd rule bridge t c counter comment "monitor; monitor"')
      expect(ns.ruleset()).toContain('comment "monitor; monitor"')
    } finally {
      nft.close()
    }
  })
})

describe('a deleted or replaced namespace (item 6)', () => {
  it('every call fails with NETNS once the name is deleted, and after a new namespace takes the name', async () => {
    const nft = new Nft({ netns: ns.name })
    const byPath = new Nft({ netns: `/var/run/netns/${ns.name}` })
    try {
      await nft.run('add table bridge before')
      sh('ip', ['netns', 'delete', ns.name])
      for (const n of [nft, byPath]) {
        const e = await n.run('add table bridge after').then(
          () => undefined,
          (err: unknown) => err as NftError,
        )
        expect(e?.code).toBe('NETNS')
        expect(e?.message).toContain('deleted or replaced')
        expect(() => n.listRulesetSync()).toThrow(expect.objectContaining({ code: 'NETNS' }))
      }
      sh('ip', ['netns', 'add', ns.name])
      expect(() => nft.runSync('add table bridge after')).toThrow(expect.objectContaining({ code: 'NETNS' }))
      expect(() => nft.runJsonSync({ nftables: [{ add: { table: { family: 'bridge', name: 'after' } } }] })).toThrow(
        expect.objectContaining({ code: 'NETNS' }),
      )
      expect(ns.ruleset()).toBe('')
      // A new instance works in the namespace that now has the name.
      const fresh = new Nft({ netns: ns.name })
      fresh.runSync('add table bridge fresh')
      fresh.close()
      expect(ns.ruleset()).toContain('table bridge fresh')
    } finally {
      nft.close()
      byPath.close()
    }
  })

  it('a /proc/PID/ns/net path fails with NETNS once that process is gone', async () => {
    // `ip netns exec` execs sleep (same pid) once it has entered the namespace.
    const sleeper = spawn('ip', ['netns', 'exec', ns.name, 'sleep', '30'], { stdio: 'ignore' })
    const exited = new Promise((r) => sleeper.once('exit', r))
    const link = `/proc/${sleeper.pid}/ns/net`
    for (let i = 0; i < 200 && readlinkSync(link) === readlinkSync('/proc/self/ns/net'); i++) await new Promise((r) => setTimeout(r, 10))
    const nft = new Nft({ netns: link })
    try {
      await nft.run('add table bridge viapid')
      expect(ns.ruleset()).toContain('table bridge viapid')
      sleeper.kill('SIGKILL')
      await exited
      expect(() => nft.runSync('list tables')).toThrow(expect.objectContaining({ code: 'NETNS' }))
    } finally {
      sleeper.kill('SIGKILL')
      nft.close()
    }
  })
})

describe('stderr stays the service\'s (item 7)', () => {
  it('without CAP_NET_ADMIN every call throws EPERM, libnftables\' own prints are in the error, stderr stays empty', () => {
    const c = child(
      `${prologue}
      const nft = new Nft()
      const details = []
      const keep = (fn) => { try { fn(); return 'ok' } catch (e) { details.push(e.detail); return e.code + ':' + e.errno } }
      const r = [
        keep(() => nft.runSync('add table bridge t')),
        keep(() => nft.runSync('list ruleset')),
        keep(() => nft.runJsonSync({ nftables: [{ add: { table: { family: 'bridge', name: 't' } } }] })),
        keep(() => nft.listRulesetSync()),
        keep(() => nft.checkSync('add table bridge t')),
      ]
      acode(nft.run('add table bridge t')).then((a) => {
        r.push(a)
        nft.close()
        console.log(JSON.stringify({ r, details }))
      })`,
      ['ip', 'netns', 'exec', ns.name, 'unshare', '--user'],
    )
    expect(c.stderr).toBe('')
    expect(c.status).toBe(0)
    const { r, details } = c.result as { r: string[]; details: string[] }
    expect(r).toEqual(['EPERM:1', 'EPERM:1', 'EPERM:1', 'EPERM:1', 'EPERM:1', 'EPERM'])
    // What libnftables 1.0.x prints straight to stderr for buffer input is captured into the error.
    expect(details.some((d) => d.includes('(you must be root)'))).toBe(true)
  })
})

describe('failed text batches read exactly as the nft CLI reports them (item 8)', () => {
  /** What `nft -f -` prints in the namespace for `text` followed by a newline (as the binding reads it). */
  const cli = (text: string, check = false): string => {
    const r = spawnWithInput('ip', ['netns', 'exec', ns.name, 'nft', ...(check ? ['-c'] : []), '-f', '-'], `${text}\n`)
    expect(r.status).not.toBe(0)
    return r.stderr.trimEnd()
  }
  const setup = 'add table bridge t\nadd chain bridge t c { type filter hook forward priority 0; }\nadd rule bridge t c accept'

  it('same text, same line and caret, for parse, evaluation and kernel errors, run and check', () => {
    const nft = new Nft({ netns: ns.name })
    try {
      nft.runSync(setup)
      const cases = [
        'add rule bridge t c jump',
        'add rule bridge t c ip saddr',
        'add rule bridge t c counter\nadd rule bridge t c jump',
        'add chain bridge t c1\nadd rule bridge t c1 accept\nadd rule bridge t nosuch accept\nadd chain bridge t c2',
        'add table bridge t\nadd chain bridge t fwd',
        'add rule bridge t c tcp dport 99999 accept',
        'add rule bridge t c jump nonexist',
        'add rule bridge t c\tmeta mark 1\tjump nonexist',
        '# a comment\n\nadd rule bridge t c { accept',
        'add rule bridge t c jump # trailing comment',
        'add rule bridge t c jump\n',
        'add rule bridge t c {',
        'delete table bridge nope\ndelete table bridge nope2',
        'add rule bridge t c ether saddr 00:11:22:33:44 accept\nadd rule bridge t c ether type ip6 ip saddr 1.2.3.4 accept',
        "add chain bridge t 'x\nadd rule bridge t c accept",
      ]
      for (const text of cases) {
        for (const check of [false, true]) {
          const e = thrown(() => (check ? nft.checkSync(text) : nft.runSync(text)))
          expect(e.detail, JSON.stringify(text)).toBe(cli(text, check))
        }
      }
      expect(thrown(() => nft.runSync('add rule bridge t c jump')).message).toBe("SYNTAX: syntax error, unexpected newline, expecting '{' (line 1)")
    } finally {
      nft.close()
    }
  })

  it('every truncation of valid commands fails with the text nft prints for it', () => {
    const nft = new Nft({ netns: ns.name })
    try {
      nft.runSync(setup)
      const commands = [
        'add rule bridge t c ether type ip ip saddr 10.0.0.0/8 tcp dport { 22, 80 } counter accept',
        'add chain bridge t d { type filter hook input priority -10; policy drop; }',
        'add set bridge t s { type ether_addr; flags interval; elements = { 00:11:22:33:44:55 } }',
      ]
      let compared = 0
      for (const command of commands) {
        const cuts = [...command.matchAll(/ /g)].map((m) => m.index)
        for (const cut of cuts) {
          const text = `add table bridge t\n${command.slice(0, cut)}`
          let e: NftError
          try {
            nft.checkSync(text)
            continue // a prefix that is itself valid
          } catch (err) {
            e = err as NftError
          }
          expect(e.detail, JSON.stringify(text)).toBe(cli(text, true))
          expect(e.line).toBeGreaterThanOrEqual(2)
          compared++
        }
      }
      expect(compared).toBeGreaterThan(30)
    } finally {
      nft.close()
    }
  })

  it('a failed batch consumes the same rule handles as nft -f, and a later rule gets the same handle as through nft', () => {
    const nft = new Nft({ netns: ns.name, handles: true })
    try {
      nft.runSync(setup)
      const lastHandle = () => Math.max(...[...nft.runSync('list chain bridge t c').matchAll(/# handle (\d+)/g)].map((m) => Number(m[1])))
      const bad = 'add rule bridge t c counter accept\nadd rule bridge t c counter drop\nadd rule bridge t c jump nonexist'
      nft.runSync('add rule bridge t c drop')
      const h0 = lastHandle()
      expect(thrown(() => nft.runSync(bad)).code).toBe('ENOENT')
      nft.runSync('add rule bridge t c drop')
      const h1 = lastHandle()
      cli(bad)
      nft.runSync('add rule bridge t c drop')
      const h2 = lastHandle()
      expect(h1 - h0).toBe(h2 - h1)
    } finally {
      nft.close()
    }
  })
})

describe("the process's own fd 0 plays no part in a call (text input is this thread's)", () => {
  // libnftables >= 1.0.7 stat()s `/dev/stdin` (= the process's fd 0) before reading input by that name and
  // refuses anything but a file, a pipe or a terminal: a service started with a socket as stdin (as Node
  // starts its children) could not run text at all. The binding names its input by this thread's fd 0 instead.
  const texts = ['add table bridge t\nadd chain bridge t c', 'add chain bridge t c1\nadd rule bridge t nosuch accept']
  const script = () => `${prologue}
    const fs = require('node:fs')
    const st = fs.fstatSync(0)
    const stdin = st.isSocket() ? 'socket' : st.isDirectory() ? 'directory' : 'other'
    ;(async () => {
      const nft = new Nft({ netns: ${JSON.stringify(ns.name)} })
      const ran = await acode(nft.run(${JSON.stringify(texts[0])}))
      const detail = await nft.run(${JSON.stringify(texts[1])}).then(() => 'ok', (e) => e.detail)
      const checked = code(() => nft.checkSync('add rule bridge t c accept'))
      nft.close()
      console.log(JSON.stringify({ stdin, ran, detail, checked }))
    })()`
  const cli = (text: string) => spawnWithInput('ip', ['netns', 'exec', ns.name, 'nft', '-f', '-'], `${text}\n`).stderr.trimEnd()

  it.each([
    ['socket', [] as string[]],
    ['directory', ['sh', '-c', 'exec "$0" "$@" < /']],
  ])('fd 0 a %s: text runs, and its errors read as nft -f - prints them', (kind, prefix) => {
    const c = child(script(), prefix)
    expect(c.stderr).toBe('')
    expect([c.status, c.signal]).toEqual([0, null])
    const r = c.result as { stdin: string; ran: string; detail: string; checked: string }
    expect(r.stdin).toBe(kind)
    expect(r).toMatchObject({ ran: 'ok', checked: 'ok' })
    expect(r.detail).toBe(cli(texts[1]!))
  })
})
