// Writing exportRuleset() to a file atomically (temp file + rename), for `nft -f` at boot.
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

export interface PersistResult {
  success: boolean
  filePath: string
  error?: string
}

export async function writeRulesetFile(filePath: string, text: string): Promise<PersistResult> {
  try {
    await mkdir(dirname(filePath), { recursive: true, mode: 0o755 })
    const tmp = `${filePath}.${process.pid}.tmp`
    await writeFile(tmp, text, { mode: 0o644 })
    await rename(tmp, filePath)
    return { success: true, filePath }
  } catch (e) {
    return { success: false, filePath, error: e instanceof Error ? e.message : String(e) }
  }
}
