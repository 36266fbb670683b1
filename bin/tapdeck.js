#!/usr/bin/env node
// The `tapdeck` CLI. In a source checkout it runs the TypeScript sources directly
// (Node >= 22.12 strips types); in a package it runs the compiled dist/.
import { existsSync } from 'node:fs';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(
    `tapdeck: Node ${process.versions.node} is too old: Tapdeck needs Node 22.12 or newer (run scripts/bootstrap, or install node@22).\n`,
  );
  process.exit(2);
}
const source = new URL('../main/cli/index.ts', import.meta.url);
const built = new URL('../dist/main/cli/index.js', import.meta.url);
const entry = existsSync(source) ? source : built;
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
