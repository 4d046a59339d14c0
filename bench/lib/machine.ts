import { readFileSync } from 'node:fs'
import os from 'node:os'
import { sh } from './netns.js'
import { PYTHON } from './drivers.js'
import type { Machine } from './types.js'

function tryRun(f: () => string, fallback = 'unknown'): string {
  try {
    return f().trim() || fallback
  } catch {
    return fallback
  }
}

export function machineInfo(): Machine {
  const cpuinfo = tryRun(() => readFileSync('/proc/cpuinfo', 'utf8'), '')
  const cpu = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown'
  const osRelease = tryRun(() => readFileSync('/etc/os-release', 'utf8'), '')
  return {
    cpu,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    kernel: os.release(),
    os: /PRETTY_NAME="?([^"\n]*)"?/.exec(osRelease)?.[1] ?? os.type(),
    node: process.version,
    libnftables: tryRun(() => sh('dpkg-query', ['-W', '-f=${Version}', 'libnftables1'])),
    nft: tryRun(() => sh('nft', ['--version'])),
    python3Nftables: tryRun(() => sh('dpkg-query', ['-W', '-f=${Version}', 'python3-nftables']), tryRun(() => sh(PYTHON, ['-c', 'import nftables; print("installed")']), 'not installed')),
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
  }
}
