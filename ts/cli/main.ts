#!/usr/bin/env node
// Entry point of the `nftables-node` command.
import { buildProgram, explain } from './program.js'

buildProgram()
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    const { code, message } = explain(e)
    if (message) console.error(`nftables-node: ${message}`)
    process.exitCode = code
  })
