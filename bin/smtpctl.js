#!/usr/bin/env node
'use strict';
// Entry point of `smtpctl`: runs the JavaScript that `npm ci` (the `prepare` script) or `npm run build` put in dist/,
// so no TypeScript is compiled at run time. The CLI sets process.exitCode and lets stdout drain; it never exits early.
const path = require('node:path');

const entry = path.join(__dirname, '..', 'dist', 'client', 'smtpctl.js');
let cli;
try {
  cli = require(entry);
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(entry)) {
    process.stderr.write('smtpctl: not built yet: run `npm run build` (npm ci does it) in the managed-smtp checkout\n');
    process.exitCode = 1;
    return;
  }
  throw err;
}
cli.main(process.argv.slice(2));
